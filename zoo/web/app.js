// The page: choose a model, an artifact and a photo; run it; draw the keypoints.
import { checkGolden, cropMatrix, decode, decodeMultiPose, draw, found, imageData, load, loadManifest, warp } from "./posezoo.js";

const $ = (id) => document.getElementById(id);
const tensors = (outputs) => Object.fromEntries(
  Object.entries(outputs).map(([k, v]) => [k, { data: Float32Array.from(v.data), shape: v.shape }]));
const base = new URL("/zoo/", location.href);
const predictors = new Map();
let manifest, samples, own = null;

function option(select, value, text) {
  const o = document.createElement("option");
  o.value = value;
  o.textContent = text;
  select.append(o);
}

const model = () => manifest.models.find((m) => m.id === $("model").value);

function fillArtifacts() {
  $("artifact").replaceChildren();
  if (!model()) return; // a manifest without models
  for (const a of model().artifacts) option($("artifact"), a.path, `${a.format} ${a.precision}${a.origin === "vendor" ? " (publisher's file)" : ""} — ${(a.bytes / 1e6).toFixed(2)} MB`);
}

function fillPeople() {
  $("person").replaceChildren();
  const people = own ? [{ box: [0, 0, own.width, own.height], keypoints: {} }] : samples[$("image").value].people;
  people.forEach((p, i) => option($("person"), i, own ? "whole photo" : `person ${i + 1}`));
}

async function predictorOf(modelId, artifactPath) {
  const key = `${modelId}|${artifactPath}`;
  if (!predictors.has(key)) predictors.set(key, await load(manifest, base, modelId, artifactPath));
  return predictors.get(key);
}

// Run one artifact on one person of a sample (or on the user's photo); used by the page and tests.
async function runArtifact(modelId, artifactPath, sampleIndex, personIndex, { crop = null } = {}) {
  const predict = await predictorOf(modelId, artifactPath);
  const image = sampleIndex === null ? own : await imageData(samples[sampleIndex].url);
  const person = sampleIndex === null ? { box: [0, 0, image.width, image.height], keypoints: {} } : samples[sampleIndex].people[personIndex];
  const pose = await predict(image, { box: person.box, keypoints: person.keypoints, crop });
  return { image, pose };
}

async function run() {
  const m = model();
  $("status").className = "";
  $("status").textContent = "running…";
  try {
    const { image, pose } = await runArtifact(m.id, $("artifact").value, own ? null : Number($("image").value), Number($("person").value));
    draw($("canvas"), image, pose.poses || [pose], m.keypoints.skeleton || [], m.decoder);
    $("status").textContent = `${m.id} ${$("artifact").selectedOptions[0].textContent}: ${pose.milliseconds.toFixed(1)} ms (inference, 1 thread wasm)`;
    $("keypoints").innerHTML = "<tr><th>keypoint</th><th>x</th><th>y</th><th>score</th></tr>" +
      pose.names.map((n, k) => `<tr><td>${n}</td><td>${pose.keypoints[k][0].toFixed(1)}</td><td>${pose.keypoints[k][1].toFixed(1)}</td><td>${pose.scores[k].toFixed(3)}</td></tr>`).join("");
  } catch (e) {
    $("status").className = "error";
    $("status").textContent = String(e.message || e);
  }
}

async function main() {
  manifest = await loadManifest(new URL("manifest.json", base));
  samples = await (await fetch("/samples.json")).json();
  for (const m of manifest.models) option($("model"), m.id, `${m.id} (${m.task})`);
  samples.forEach((s, i) => option($("image"), i, s.name));
  fillArtifacts();
  fillPeople();
  $("model").onchange = fillArtifacts;
  $("image").onchange = () => { own = null; fillPeople(); };
  $("file").onchange = async () => {
    own = await imageData(URL.createObjectURL($("file").files[0]));
    fillPeople();
  };
  $("run").onclick = run;
  // For scripts and tests (scripts/browser.py): plain data only.
  window.posezoo = {
    manifest, samples, cropMatrix, found,
    // outputs as {name: {data: [...], shape}}: the decoders on given tensors
    decode: (spec, outputs) => decode(spec, tensors(outputs)),
    decodeMultiPose: (spec, outputs) => decodeMultiPose(spec, tensors(outputs)),
    warp: (rgba, iw, ih, m, width, height) => Array.from(warp(Uint8ClampedArray.from(rgba), iw, ih, m, width, height)),
    async predict(modelId, artifactPath, sampleIndex, personIndex, crop = null) {
      const { pose } = await runArtifact(modelId, artifactPath, sampleIndex, personIndex, { crop });
      return { keypoints: pose.keypoints, scores: pose.scores, names: pose.names, milliseconds: pose.milliseconds,
        poses: pose.poses };
    },
    // the artifact's golden vectors run in this page (zoo/golden.py's report)
    async checkGolden(modelId, artifactPath) {
      return checkGolden(await predictorOf(modelId, artifactPath), base);
    },
    async time(modelId, artifactPath, sampleIndex, personIndex, runs) {
      const times = [];
      for (let i = 0; i < runs; i++) times.push((await runArtifact(modelId, artifactPath, sampleIndex, personIndex)).pose.milliseconds);
      return times;
    },
    show(modelId, artifactPath, sampleIndex, personIndex) {
      $("model").value = modelId;
      fillArtifacts();
      $("artifact").value = artifactPath;
      $("image").value = sampleIndex;
      own = null;
      fillPeople();
      $("person").value = personIndex;
      return run();
    },
  };
  $("status").textContent = `${manifest.models.length} models; pick one and press run`;
}

main().catch((e) => { $("status").className = "error"; $("status").textContent = String(e.message || e); });
