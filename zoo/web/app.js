// The try-it page of the site: pick a model and an artifact (and a second one to compare), a sample
// photo, your own photo or the webcam; it runs as soon as something is picked and draws the keypoints.
import { checkGolden, configure, cropMatrix, decode, decodeMultiPose, drawImage, drawPoses, found, imageData, load, loadManifest, warp } from "./posezoo.js";
import { widenFloat16 } from "./widen.js";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const tensors = (outputs) => Object.fromEntries(
  Object.entries(outputs).map(([k, v]) => [k, { data: Float32Array.from(v.data), shape: v.shape }]));
const base = new URL("../", location.href); // the build folder: manifest.json and the artifacts
const COLORS = { a: "#00c8ff", b: "#ff3cc8" };
const predictors = new Map();
let manifest, samples, setup, own = null, camera = null, shown = { a: null, b: null };

function option(select, value, text) {
  const o = document.createElement("option");
  o.value = value;
  o.textContent = text;
  select.append(o);
}

const model = () => manifest.models.find((m) => m.id === $("model").value);
const label = (a) => `${a.format} ${a.precision}${a.origin === "vendor" ? " (publisher's file)" : ""}`;

function fillArtifacts() {
  $("artifact").replaceChildren();
  $("compare").replaceChildren();
  option($("compare"), "", "none");
  if (!model()) return; // a manifest without models
  for (const a of model().artifacts) {
    option($("artifact"), a.path, `${label(a)} — ${(a.bytes / 1e6).toFixed(2)} MB`);
    option($("compare"), a.path, label(a));
  }
  // Picked first: the TFLite FP32 where there is one, the file browsers run fastest (`posezoo bench
  // --web`, issue 19: LiteRT.js 1.7-3.5x native, ONNX Runtime Web 4-5x on ONNX FP32; INT8 files
  // run slower than FP32 in wasm, which has no int8 dot product).
  const fastest = model().artifacts.find((a) => a.format === "tflite" && a.precision === "fp32");
  if (fastest) $("artifact").value = fastest.path;
}

function fillPeople() {
  $("person").replaceChildren();
  const people = own ? [{ box: [0, 0, own.width, own.height], keypoints: {} }] : samples[$("image").value]?.people || [];
  people.forEach((p, i) => option($("person"), i, own ? "whole photo" : `person ${i + 1}`));
}

async function predictorOf(modelId, artifactPath) {
  const key = `${modelId}|${artifactPath}`;
  if (!predictors.has(key)) predictors.set(key, load(manifest, base, modelId, artifactPath));
  return predictors.get(key);
}

// One artifact on one person of a sample (or on the user's photo); used by the page and tests.
async function runArtifact(modelId, artifactPath, sampleIndex, personIndex, { crop = null } = {}) {
  const predict = await predictorOf(modelId, artifactPath);
  const image = sampleIndex === null ? own : await imageData(new URL(samples[sampleIndex].url, location.href));
  const person = sampleIndex === null ? { box: [0, 0, image.width, image.height], keypoints: {} } : samples[sampleIndex].people[personIndex];
  const pose = await predict(image, { box: person.box, keypoints: person.keypoints, crop });
  return { image, pose, predict };
}

// The crop's longer side in photo pixels: the unit in which two artifacts' keypoints are compared.
const cropSide = (m, predict) => Math.max(Math.hypot(m[0][0], m[1][0]) * predict.width, Math.hypot(m[0][1], m[1][1]) * predict.height);

function show(image, runs) {
  const m = model();
  drawImage($("canvas"), image);
  shown = { a: null, b: null };
  for (const [key, { pose }] of Object.entries(runs)) {
    drawPoses($("canvas"), pose.poses || [pose], m.keypoints.skeleton || [], m.decoder, COLORS[key]);
    shown[key] = { keypoints: pose.keypoints, scores: pose.scores, found: found(pose.scores, m.decoder), poses: pose.poses };
  }
  $("legend-a").textContent = runs.a ? `${label(runs.a.predict.artifact)} ${runs.a.pose.milliseconds.toFixed(1)} ms` : "";
  $("legend-b").textContent = runs.b ? `${label(runs.b.predict.artifact)} ${runs.b.pose.milliseconds.toFixed(1)} ms` : "";
  $("legend-b-dot").hidden = !runs.b;
  const { a, b } = runs;
  const side = cropSide(a.pose.matrix, a.predict);
  const head = "<tr><th>keypoint</th><th>x</th><th>y</th><th>score</th>" +
    (b ? "<th>x (compare)</th><th>y (compare)</th><th>score (compare)</th><th>apart (px)</th><th>apart (% of crop)</th>" : "") + "</tr>";
  const cells = (p, k) => `<td>${p.keypoints[k][0].toFixed(1)}</td><td>${p.keypoints[k][1].toFixed(1)}</td><td>${p.scores[k].toFixed(3)}</td>`;
  $("keypoints").innerHTML = head + a.pose.names.map((n, k) => {
    if (!b) return `<tr><td>${n}</td>${cells(a.pose, k)}</tr>`;
    const d = Math.hypot(a.pose.keypoints[k][0] - b.pose.keypoints[k][0], a.pose.keypoints[k][1] - b.pose.keypoints[k][1]);
    return `<tr><td>${n}</td>${cells(a.pose, k)}${cells(b.pose, k)}<td>${d.toFixed(1)}</td><td>${(100 * d / side).toFixed(2)}</td></tr>`;
  }).join("");
}

function status(text, error = false) {
  $("status").className = error ? "error" : "";
  $("status").textContent = text;
}

// Run the chosen artifact (and the one to compare) on the chosen photo and person.
async function run() {
  if (camera) return; // the webcam loop draws
  const m = model();
  if (!m || (!own && !samples.length)) return;
  status("running…");
  try {
    const sample = own ? null : Number($("image").value), person = Number($("person").value);
    const runs = { a: await runArtifact(m.id, $("artifact").value, sample, person) };
    if ($("compare").value) runs.b = await runArtifact(m.id, $("compare").value, sample, person);
    show(runs.a.image, runs);
    $("backend").textContent = `backend: ${runs.a.predict.backend}` + (runs.b && runs.b.predict.backend !== runs.a.predict.backend ? `; compare: ${runs.b.predict.backend}` : "");
    status(`${m.id}: ${label(runs.a.predict.artifact)} ${runs.a.pose.milliseconds.toFixed(1)} ms` +
      (runs.b ? `, ${label(runs.b.predict.artifact)} ${runs.b.pose.milliseconds.toFixed(1)} ms` : "") + " (inference)");
  } catch (e) {
    status(String(e.message || e), true);
  }
}

// Where the webcam's next frame is cropped: the previous frame's pose where the decoder found the
// keypoints the crop needs, else the whole frame (a box crop of it for rotated-ROI models).
function trackingCall(m, previous, width, height) {
  const whole = { box: [0, 0, width, height], keypoints: {}, crop: null };
  const crop = m.input.crop;
  if (crop.kind === "whole_image" || !previous) return crop.kind === "rotated_roi" ? { ...whole, crop: { kind: "box", padding: 1.0 } } : whole;
  const points = Object.fromEntries(previous.names.map((n, k) => [n, previous.keypoints[k]]).filter((_, k) => found(previous.scores, m.decoder)[k]));
  const xs = Object.values(points).map((p) => p[0]), ys = Object.values(points).map((p) => p[1]);
  if (xs.length < 2) return trackingCall(m, null, width, height);
  if (crop.kind === "rotated_roi" && [...crop.center_keypoints, ...crop.up_keypoints].some((n) => !(n in points))) {
    return trackingCall(m, null, width, height);
  }
  const box = [Math.min(...xs), Math.min(...ys), Math.max(...xs) - Math.min(...xs), Math.max(...ys) - Math.min(...ys)];
  return { box, keypoints: points, crop: null };
}

async function webcamLoop() {
  const m = model(), video = $("video");
  const grab = new OffscreenCanvas(video.videoWidth, video.videoHeight);
  const ctx = grab.getContext("2d", { willReadFrequently: true });
  let previous = null, fps = null, last = performance.now();
  camera.frames = 0;
  while (camera && !camera.stop) {
    ctx.drawImage(video, 0, 0);
    const image = ctx.getImageData(0, 0, grab.width, grab.height);
    try {
      const call = trackingCall(m, previous, image.width, image.height);
      const runs = {};
      for (const [key, path] of [["a", $("artifact").value], ["b", $("compare").value]]) {
        if (!path) continue;
        const predict = await predictorOf(m.id, path);
        runs[key] = { predict, pose: await predict(image, call) };
      }
      show(image, runs);
      previous = runs.a.pose;
      const now = performance.now();
      fps = fps === null ? 1000 / (now - last) : 0.9 * fps + 0.1 * 1000 / (now - last);
      last = now;
      camera.frames += 1;
      camera.fps = fps;
      $("backend").textContent = `backend: ${runs.a.predict.backend}`;
      status(`webcam ${image.width}x${image.height}: ${fps.toFixed(1)} FPS, ${runs.a.pose.milliseconds.toFixed(1)} ms inference`);
    } catch (e) {
      status(String(e.message || e), true);
      break;
    }
    await new Promise((resolve) => requestAnimationFrame(resolve));
  }
}

async function startWebcam() {
  const stream = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 }, audio: false });
  const video = $("video");
  video.srcObject = stream;
  await video.play();
  camera = { stream, frames: 0, fps: 0, stop: false };
  $("webcam").textContent = "stop webcam";
  camera.done = webcamLoop();
}

async function stopWebcam() {
  if (!camera) return;
  camera.stop = true;
  await camera.done;
  camera.stream.getTracks().forEach((t) => t.stop());
  camera = null;
  $("webcam").textContent = "webcam";
}

function select(id, value) {
  if (value !== null && value !== undefined && [...$(id).options].some((o) => o.value === String(value))) $(id).value = String(value);
}

async function main() {
  setup = await configure({
    backend: params.get("backend") || "auto", threads: params.get("threads") ? Number(params.get("threads")) : "auto",
    onnxWasm: new URL("vendor/onnxruntime-web/", location.href).href,
    liteRtWasm: new URL("vendor/litertjs-core/wasm/", location.href).href,
  });
  manifest = await loadManifest(new URL("manifest.json", base));
  samples = await (await fetch("samples.json")).json();
  for (const m of manifest.models) option($("model"), m.id, `${m.id} (${m.task})`);
  samples.forEach((s, i) => option($("image"), i, s.name));
  select("model", params.get("model"));
  fillArtifacts();
  select("artifact", params.get("artifact"));
  select("compare", params.get("compare"));
  fillPeople();
  $("model").onchange = () => { fillArtifacts(); run(); };
  $("artifact").onchange = run;
  $("compare").onchange = run;
  $("person").onchange = run;
  $("image").onchange = () => { own = null; fillPeople(); run(); };
  $("file").onchange = async () => {
    own = await imageData(URL.createObjectURL($("file").files[0]));
    fillPeople();
    run();
  };
  $("webcam").onclick = () => (camera ? stopWebcam() : startWebcam().catch((e) => status(`webcam: ${e.message || e}`, true)));
  $("backend").textContent = `backend: ${setup.backend}, ${setup.threads} thread(s), ` +
    `${setup.isolated ? "cross-origin isolated" : "not cross-origin isolated (1 thread)"}, wasm SIMD ${setup.simd ? "on" : "off"}`;
  // For scripts and tests (scripts/browser.py): plain data only; set once the first run is drawn.
  const api = {
    manifest, samples, setup, cropMatrix, found,
    // outputs as {name: {data: [...], shape}}: the decoders on given tensors
    decode: (spec, outputs) => decode(spec, tensors(outputs)),
    decodeMultiPose: (spec, outputs) => decodeMultiPose(spec, tensors(outputs)),
    warp: (rgba, iw, ih, m, width, height) => Array.from(warp(Uint8ClampedArray.from(rgba), iw, ih, m, width, height)),
    // an FP16 ONNX file (base64) widened to float32 as the wasm path runs it (base64)
    widen: (base64) => {
      const out = widenFloat16(Uint8Array.from(atob(base64), (c) => c.charCodeAt(0)));
      return btoa(Array.from(out, (b) => String.fromCharCode(b)).join(""));
    },
    async predict(modelId, artifactPath, sampleIndex, personIndex, crop = null) {
      const { pose, predict } = await runArtifact(modelId, artifactPath, sampleIndex, personIndex, { crop });
      return { keypoints: pose.keypoints, scores: pose.scores, names: pose.names, milliseconds: pose.milliseconds,
        poses: pose.poses, backend: predict.backend };
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
    // Pick as a person would, run, and return what the page shows.
    async show(modelId, artifactPath, sampleIndex, personIndex, compareWith = "") {
      $("model").value = modelId;
      fillArtifacts();
      $("artifact").value = artifactPath;
      $("compare").value = compareWith;
      $("image").value = sampleIndex;
      own = null;
      fillPeople();
      $("person").value = personIndex;
      await run();
      return this.shown();
    },
    shown: () => ({ ...shown, status: $("status").textContent, error: $("status").className === "error",
      backend: $("backend").textContent, rows: $("keypoints").rows.length }),
    // RGBA of the canvas at photo pixels [[x, y], ...]
    pixels(points) {
      const ctx = $("canvas").getContext("2d");
      return points.map(([x, y]) => Array.from(ctx.getImageData(Math.floor(x), Math.floor(y), 1, 1).data));
    },
    // Run the webcam for `seconds`; what it did.
    async webcam(modelId, artifactPath, seconds, compareWith = "") {
      $("model").value = modelId;
      fillArtifacts();
      $("artifact").value = artifactPath;
      $("compare").value = compareWith;
      await startWebcam();
      await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
      const result = { frames: camera.frames, fps: camera.fps, status: $("status").textContent, error: $("status").className === "error", ...this.shown() };
      await stopWebcam();
      return result;
    },
  };
  status(`${manifest.models.length} models`);
  await run();
  window.posezoo = api;
}

main().catch((e) => status(String(e.message || e), true));
