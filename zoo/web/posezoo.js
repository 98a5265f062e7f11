// posezoo in the browser: run any artifact of a manifest, knowing nothing but the manifest.
//
// The JavaScript twin of zoo/loader.py, step for step: the crop's affine matrix, the warp (PIL's
// bilinear AFFINE: pixel centres at +0.5, black outside, truncated to integers), colour order,
// normalization, quantization, the artifact's layout, dequantized outputs, the manifest's decoder,
// keypoints mapped back to the photo. ONNX artifacts run on ONNX Runtime Web (wasm), TFLite ones
// on LiteRT.js; both come from npm (zoo/web/package-lock.json), nothing from a CDN. Each runs on
// WebGPU where the browser has an adapter and the file compiles there, else on wasm (SIMD,
// multi-threaded when the page is cross-origin isolated): `configure` chooses, `backendOf` says.
// No code path depends on a model's name: only on what its manifest entry says.

import { loadLiteRt, loadAndCompile, Tensor } from "@litertjs/core";
import { widenFloat16 } from "./widen.js";

const INTEGER_DTYPES = new Set(["int8", "uint8", "int32"]);
const TYPED = { float32: Float32Array, int8: Int8Array, uint8: Uint8Array, int32: Int32Array };

export async function loadManifest(url) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`cannot read ${url}: HTTP ${response.status}`);
  const manifest = await response.json();
  if (manifest.schema_version !== 1) throw new Error(`manifest schema_version ${manifest.schema_version}: this page reads version 1`);
  return manifest;
}

export function inputHW(spec) {
  const s = spec.shape;
  return (spec.layout || "NHWC") === "NHWC" ? [s[1], s[2]] : [s[2], s[3]];
}

function affine(center, xAxis, yAxis, width, height) {
  const ox = center[0] - xAxis[0] * width / 2 - yAxis[0] * height / 2;
  const oy = center[1] - xAxis[1] * width / 2 - yAxis[1] * height / 2;
  return [[xAxis[0], yAxis[0], ox], [xAxis[1], yAxis[1], oy]];
}

// The input->image affine of `crop` (the manifest's input.crop) for an image of [width, height].
export function cropMatrix(crop, width, height, imageSize, box, keypoints) {
  const [w, h] = imageSize;
  if (crop.kind === "whole_image") {
    if ((crop.resize || "letterbox") === "stretch") return affine([w / 2, h / 2], [w / width, 0], [0, h / height], width, height);
    const s = Math.max(w / width, h / height);
    return affine([w / 2, h / 2], [s, 0], [0, s], width, height);
  }
  if (crop.kind === "box") {
    if (!box) throw new Error("this model crops a person's box: pick a person");
    const [x, y, bw, bh] = box;
    const aspect = width / height;
    const side = bw / Math.max(bh, 1e-6) > aspect ? bw : bh * aspect;
    const s = (crop.padding ?? 1.25) * side / width;
    return affine([x + bw / 2, y + bh / 2], [s, 0], [0, s], width, height);
  }
  if (crop.kind === "rotated_roi") {
    const need = [...crop.center_keypoints, ...crop.up_keypoints];
    const missing = need.filter((n) => !keypoints || !(n in keypoints));
    if (missing.length) throw new Error(`this model crops a rotated ROI around ${need.join(", ")}: missing ${missing.join(", ")}`);
    const mean = (names) => [0, 1].map((i) => names.reduce((a, n) => a + keypoints[n][i], 0) / names.length);
    const center = mean(crop.center_keypoints);
    const upPoint = mean(crop.up_keypoints);
    const up = [upPoint[0] - center[0], upPoint[1] - center[1]];
    const norm = Math.hypot(up[0], up[1]);
    if (norm < 1e-6) throw new Error("the ROI's centre and up keypoints coincide");
    let radius = 0;
    for (const p of Object.values(keypoints)) radius = Math.max(radius, Math.hypot(p[0] - center[0], p[1] - center[1]));
    const side = 2 * radius * (crop.expand ?? 1.25);
    const down = [-up[0] / norm, -up[1] / norm];
    const right = [down[1], -down[0]]; // a rotation, never a mirror
    return affine(center, [right[0] * side / width, right[1] * side / width], [down[0] * side / height, down[1] * side / height], width, height);
  }
  throw new Error(`unknown crop kind ${crop.kind}`);
}

// HxWx3 RGB bytes sampled from `rgba` (ImageData.data of an iw x ih image) on the input grid.
export function warp(rgba, iw, ih, m, width, height) {
  const out = new Uint8Array(width * height * 3);
  const px = (x, y, c) => rgba[(y * iw + x) * 4 + c];
  for (let j = 0; j < height; j++) {
    const gy = j + 0.5;
    for (let i = 0; i < width; i++) {
      const gx = i + 0.5;
      let sx = m[0][0] * gx + m[0][1] * gy + m[0][2];
      let sy = m[1][0] * gx + m[1][1] * gy + m[1][2];
      if (!(sx >= 0 && sx < iw && sy >= 0 && sy < ih)) continue; // black
      sx -= 0.5;
      sy -= 0.5;
      const x0 = Math.floor(sx), y0 = Math.floor(sy);
      const dx = sx - x0, dy = sy - y0;
      const xa = Math.min(Math.max(x0, 0), iw - 1), xb = Math.min(Math.max(x0 + 1, 0), iw - 1);
      const ya = Math.min(Math.max(y0, 0), ih - 1), yb = Math.min(Math.max(y0 + 1, 0), ih - 1);
      for (let c = 0; c < 3; c++) {
        const top = px(xa, ya, c) + (px(xb, ya, c) - px(xa, ya, c)) * dx;
        const bottom = px(xa, yb, c) + (px(xb, yb, c) - px(xa, yb, c)) * dx;
        out[(j * width + i) * 3 + c] = Math.trunc(top + (bottom - top) * dy);
      }
    }
  }
  return out;
}

// The crop as the artifact's input tensor data: colour order, (x - mean) / std for float
// models, quantized where the artifact's input is, then the artifact's layout (batch 1).
export function toTensor(rgb, width, height, spec, ioInput, layout) {
  const n = width * height;
  const bgr = (spec.color || "RGB") === "BGR";
  const values = new Float64Array(n * 3);
  const norm = spec.normalization || { mean: [0, 0, 0], std: [1, 1, 1] };
  const mean = norm.mean.map(Math.fround), std = norm.std.map(Math.fround); // float32, as the loader
  for (let p = 0; p < n; p++) {
    for (let c = 0; c < 3; c++) {
      const v = rgb[p * 3 + (bgr ? 2 - c : c)];
      values[p * 3 + c] = spec.dtype === "float32" ? Math.fround(Math.fround(v - mean[c]) / std[c]) : v;
    }
  }
  const q = ioInput.quantization;
  const Typed = TYPED[ioInput.dtype];
  if (!Typed) throw new Error(`input dtype ${ioInput.dtype} is not supported`);
  const data = new Typed(n * 3);
  const range = INTEGER_DTYPES.has(ioInput.dtype) ? { int8: [-128, 127], uint8: [0, 255], int32: [-(2 ** 31), 2 ** 31 - 1] }[ioInput.dtype] : null;
  for (let p = 0; p < n; p++) {
    for (let c = 0; c < 3; c++) {
      let v = values[p * 3 + c];
      if (range && q && spec.dtype === "float32") {
        v = Math.min(Math.max(roundHalfEven(Math.fround(v / Math.fround(q.scale))) + q.zero_point, range[0]), range[1]);
      }
      const at = layout === "NCHW" ? c * n + p : p * 3 + c;
      data[at] = v;
    }
  }
  const shape = layout === "NCHW" ? [1, 3, height, width] : [1, height, width, 3];
  return { data, shape };
}

function roundHalfEven(x) {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

// The artifact's outputs as float32 arrays in the manifest's layout: { name: { data, shape } }.
export function modelOutputs(raw, ioOutputs, outputs, transposed) {
  const io = Object.fromEntries(ioOutputs.map((o) => [o.name, o]));
  const result = {};
  for (const spec of outputs) {
    const y = raw[spec.name];
    if (!y) throw new Error(`the artifact has no output named ${spec.name} (it has ${Object.keys(raw).join(", ")})`);
    const q = io[spec.name] && io[spec.name].quantization;
    let data = Float32Array.from(y.data, q && !(y.data instanceof Float32Array) ? (v) => (Number(v) - q.zero_point) * q.scale : Number);
    let shape = Array.from(y.shape);
    if (transposed && shape.length === 4) {
      const [b, h, w, c] = shape; // the NHWC file's output back to the model's NCHW
      const t = new Float32Array(data.length);
      for (let yy = 0; yy < h; yy++) for (let xx = 0; xx < w; xx++) for (let k = 0; k < c; k++) t[(k * h + yy) * w + xx] = data[(yy * w + xx) * c + k];
      data = t;
      shape = [b, c, h, w];
    }
    result[spec.name] = { data, shape };
  }
  return result;
}

const sigmoid = (x) => 1 / (1 + Math.exp(-Math.min(Math.max(x, -80), 80)));

// Per keypoint, whether the decoder reports it as found, as zoo/decoders.py `found`: below the
// decoder's `min_score` a keypoint is not found (a heatmap's argmax on a flat map is noise); a
// decoder without one finds every keypoint.
export function found(scores, decoder) {
  const min = decoder.min_score;
  return Array.from(scores, (s) => min === undefined || min === null || s >= min);
}

// MoveNet MultiPose: `instances` rows of `values_per_instance` numbers (keypoints first).
function instanceRows(spec, flat) {
  const { instances, values_per_instance: width } = spec.multi_pose;
  return Array.from({ length: instances }, (_, i) => flat.slice(i * width, (i + 1) * width));
}

export function decode(spec, outputs) {
  if (spec.type === "regression") {
    let flat = outputs[spec.output].data;
    if (spec.multi_pose) {  // the highest-scoring instance, as zoo/decoders.py
      const at = spec.multi_pose.instance_score_index;
      flat = instanceRows(spec, flat).reduce((best, row) => (row[at] > best[at] ? row : best));
    }
    const xy = [], scores = [];
    const scale = spec.coordinate_scale ?? 1;
    for (let k = 0; k < spec.num_keypoints; k++) {
      const row = k * spec.values_per_keypoint;
      xy.push([flat[row + spec.x_index] * scale, flat[row + spec.y_index] * scale]);
      let s = "score_index" in spec ? flat[row + spec.score_index] : 1;
      if (spec.score_activation === "sigmoid") s = sigmoid(s);
      scores.push(s);
    }
    return { xy, scores };
  }
  if (spec.type === "heatmap") {
    const { data, shape } = outputs[spec.output];
    const nchw = (spec.layout || "NHWC") === "NCHW";
    const [height, width, channels] = nchw ? [shape[2], shape[3], shape[1]] : [shape[1], shape[2], shape[3]];
    const at = (y, x, k) => (nchw ? data[(k * height + y) * width + x] : data[(y * width + x) * channels + k]);
    const xy = [], scores = [];
    const count = spec.num_keypoints ?? channels;
    const offset = spec.pixel_offset ?? 0, stride = spec.stride ?? 1;
    // PoseNet: 2K offset channels at the argmax cell, y offsets then x offsets, in input pixels.
    const vectors = spec.offsets ? outputs[spec.offsets].data : null;
    const vec = (y, x, c) => (nchw ? vectors[(c * height + y) * width + x] : vectors[(y * width + x) * 2 * channels + c]);
    for (let k = 0; k < count; k++) {
      let best = -Infinity, bx = 0, by = 0;
      for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) { const v = at(y, x, k); if (v > best) { best = v; bx = x; by = y; } }
      let fx = bx, fy = by;
      if ((spec.refine || "none") === "quarter_offset" && bx > 1 && bx < width - 1 && by > 1 && by < height - 1) {
        fx += 0.25 * Math.sign(at(by, bx + 1, k) - at(by, bx - 1, k));
        fy += 0.25 * Math.sign(at(by + 1, bx, k) - at(by - 1, bx, k));
      }
      let px = (fx + offset) * stride, py = (fy + offset) * stride;
      if (vectors) {
        px += vec(by, bx, k + channels);
        py += vec(by, bx, k);
      }
      xy.push([px, py]);
      scores.push(spec.score_activation === "sigmoid" ? sigmoid(best) : best);
    }
    return { xy, scores };
  }
  throw new Error(`unknown decoder type ${spec.type}`);
}

// Every person the decoder's multi_pose describes, as zoo/decoders.py decode_multi_pose:
// [{xy, scores, score}] in input pixels, strongest first.
export function decodeMultiPose(spec, outputs) {
  return spec.type === "regression" ? regressedPoses(spec, outputs) : personlabPoses(spec, outputs);
}

function regressedPoses(spec, outputs) {
  const multi = spec.multi_pose, at = multi.instance_score_index;
  const { multi_pose: _, ...single } = spec;
  return instanceRows(spec, outputs[spec.output].data)
    .map((row) => ({ row, score: row[at] }))
    .filter(({ score }) => score >= (multi.score_threshold ?? 0))
    .sort((a, b) => b.score - a.score)
    .map(({ row, score }) => ({ ...decode(single, { [spec.output]: { data: row } }), score }));
}

// PoseNet's multi-person decoding (PersonLab), in the order found (strongest root first).
function personlabPoses(spec, outputs) {
  const multi = spec.multi_pose;
  const grid = (name) => {
    const { data, shape } = outputs[name];
    const nchw = (spec.layout || "NHWC") === "NCHW";
    const [h, w, c] = nchw ? [shape[2], shape[3], shape[1]] : [shape[1], shape[2], shape[3]];
    return { h, w, get: (y, x, k) => (nchw ? data[(k * h + y) * w + x] : data[(y * w + x) * c + k]) };
  };
  const heat = grid(spec.output), offsets = grid(spec.offsets);
  const fwd = grid(multi.displacements_fwd), bwd = grid(multi.displacements_bwd);
  const count = outputs[spec.output].shape[(spec.layout || "NHWC") === "NCHW" ? 1 : 3];
  const { h: height, w: width } = heat;
  const score = (y, x, k) => Math.fround(sigmoid(heat.get(y, x, k)));
  const stride = spec.stride ?? 1, edges = multi.edges, radius = multi.local_maximum_radius ?? 1;
  const nms = multi.nms_radius ?? 20, steps = multi.refine_steps ?? 2, threshold = multi.score_threshold ?? 0.5;
  const cell = ([py, px]) => [Math.min(Math.max(roundHalfEven(py / stride), 0), height - 1),
    Math.min(Math.max(roundHalfEven(px / stride), 0), width - 1)];
  const atCell = (y, x, k) => [y * stride + offsets.get(y, x, k), x * stride + offsets.get(y, x, k + count)];
  const jump = (edge, source, target, d) => {
    let [y, x] = cell(source);
    let point = [source[0] + d.get(y, x, edge), source[1] + d.get(y, x, edge + edges.length)];
    for (let i = 0; i < steps; i++) point = atCell(...cell(point), target);
    [y, x] = cell(point);
    return [point, score(y, x, target)];
  };
  const candidates = [];
  for (let k = 0; k < count; k++) {
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        const s = score(y, x, k);
        if (s < threshold) continue;
        let best = -Infinity;
        for (let yy = Math.max(y - radius, 0); yy <= Math.min(y + radius, height - 1); yy++) {
          for (let xx = Math.max(x - radius, 0); xx <= Math.min(x + radius, width - 1); xx++) best = Math.max(best, score(yy, xx, k));
        }
        if (s >= best) candidates.push([s, k, y, x]);
      }
    }
  }
  candidates.sort((a, b) => b[0] - a[0]); // stable: ties keep keypoint-major order, as Python's sort
  const poses = [];
  const taken = (point, k) => poses.some((p) => (p.yx[k][0] - point[0]) ** 2 + (p.yx[k][1] - point[1]) ** 2 <= nms * nms);
  for (const [s, k, y, x] of candidates) {
    if (poses.length >= (multi.max_poses ?? 10)) break;
    const root = atCell(y, x, k);
    if (taken(root, k)) continue;
    const points = { [k]: root }, pointScores = { [k]: s };
    for (const [order, d, backward] of [[[...edges.keys()].reverse(), bwd, true], [[...edges.keys()], fwd, false]]) {
      for (const e of order) {
        const [parent, child] = edges[e];
        const [source, target] = backward ? [child, parent] : [parent, child];
        if (source in points && !(target in points)) [points[target], pointScores[target]] = jump(e, points[source], target, d);
      }
    }
    const yx = [...Array(count).keys()].map((j) => points[j]);
    const scores = [...Array(count).keys()].map((j) => pointScores[j]);
    let total = 0;
    yx.forEach((p, j) => { if (!taken(p, j)) total += scores[j]; });
    poses.push({ yx, scores, score: total / count });
  }
  return poses.map((p) => ({ xy: p.yx.map(([py, px]) => [px, py]), scores: p.scores, score: p.score }));
}

// --- runtimes ----------------------------------------------------------------------------------

// Where the runtimes' wasm files are and how they run; set once, before the first artifact loads
// (a wasm module's thread count is fixed when it starts). `onnxWasm` undefined: next to the module.
let liteRtReady = null;
const ortModules = {};
const runtime = { backend: "wasm", threads: 1, onnxWasm: undefined, liteRtWasm: "/node_modules/@litertjs/core/wasm/" };

// Whether this browser's wasm has SIMD (a module using one v128 instruction validates).
export const wasmSimd = () => WebAssembly.validate(new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 123,
  3, 2, 1, 0, 10, 10, 1, 8, 0, 65, 0, 253, 15, 253, 98, 11]));

// Pick the backend and threads: `backend` "auto" takes WebGPU when an adapter exists; `threads`
// "auto" takes up to 4 cores where the page is cross-origin isolated (SharedArrayBuffer), else 1.
export async function configure({ backend = "auto", threads = "auto", onnxWasm, liteRtWasm } = {}) {
  if (liteRtReady || Object.keys(ortModules).length) throw new Error("configure() must run before the first artifact is loaded");
  const isolated = globalThis.crossOriginIsolated === true;
  if (backend === "auto") {
    const adapter = globalThis.navigator && navigator.gpu ? await navigator.gpu.requestAdapter().catch(() => null) : null;
    backend = adapter ? "webgpu" : "wasm";
  }
  if (threads === "auto") threads = isolated ? Math.min(navigator.hardwareConcurrency || 1, 4) : 1;
  if (threads > 1 && !isolated) throw new Error(`${threads} threads need a cross-origin isolated page (COOP/COEP headers)`);
  Object.assign(runtime, { backend, threads: Number(threads) },
    onnxWasm ? { onnxWasm } : {}, liteRtWasm ? { liteRtWasm } : {});
  return { backend, threads: runtime.threads, isolated, simd: wasmSimd() };
}

// ONNX Runtime Web: its WebGPU build (which also runs wasm) only where WebGPU is wanted.
async function onnxRuntime(webgpu) {
  const key = webgpu ? "webgpu" : "wasm";
  if (!ortModules[key]) {
    const ort = await (webgpu ? import("onnxruntime-web/webgpu") : import("onnxruntime-web"));
    if (runtime.onnxWasm) ort.env.wasm.wasmPaths = runtime.onnxWasm;
    ort.env.wasm.numThreads = runtime.threads;
    ortModules[key] = ort;
  }
  return ortModules[key];
}

// How the wasm backend runs, as the page shows it: "wasm, 2 threads, SIMD".
const wasmLabel = () => `wasm, ${runtime.threads} thread${runtime.threads > 1 ? "s" : ""}${wasmSimd() ? ", SIMD" : ""}`;

async function openOnnx(bytes, artifact) {
  let ort = null, session = null, backend = `onnxruntime-web ${wasmLabel()}`;
  if (runtime.backend === "webgpu") {
    try {
      ort = await onnxRuntime(true);
      session = await ort.InferenceSession.create(bytes, { executionProviders: ["webgpu", "wasm"], graphOptimizationLevel: "all" });
      backend = "onnxruntime-web webgpu (wasm for ops webgpu lacks)";
    } catch (e) {
      backend += ` (webgpu failed: ${String(e.message || e).slice(0, 80)})`;
    }
  }
  if (!session) {
    if (artifact.precision === "fp16") { // wasm has no float16 arithmetic: run the float16 weights as float32
      try {
        bytes = widenFloat16(bytes);
        backend += ", float16 widened to float32";
      } catch (e) {
        backend += `, float16 emulated (${e.message})`;
      }
    }
    ort = await onnxRuntime(false);
    session = await ort.InferenceSession.create(bytes, { executionProviders: ["wasm"], graphOptimizationLevel: "all" });
  }
  const run = async (inputName, x, dtype) => {
    const results = await session.run({ [inputName]: new ort.Tensor(dtype, x.data, x.shape) });
    return Object.fromEntries(Object.entries(results).map(([name, t]) => [name, { data: t.data, shape: t.dims }]));
  };
  return { run, backend };
}

async function openTflite(bytes, io) {
  liteRtReady ??= loadLiteRt(runtime.liteRtWasm, { threads: runtime.threads > 1 });
  await liteRtReady;
  let model = null, backend = `LiteRT.js ${wasmLabel()}`;
  if (runtime.backend === "webgpu") {
    try {
      model = await loadAndCompile(bytes, { accelerator: "webgpu" });
      backend = "LiteRT.js webgpu";
    } catch (e) {
      backend += ` (webgpu failed: ${String(e.message || e).slice(0, 80)})`;
    }
  }
  model ??= await loadAndCompile(bytes, { accelerator: "wasm", cpuOptions: { numThreads: runtime.threads } });
  const inputs = model.getInputDetails(), outputs = model.getOutputDetails();
  // LiteRT.js knows a signature's tensors by their signature keys: the manifest records them.
  const byKey = Object.fromEntries(io.outputs.filter((o) => o.signature_key).map((o) => [o.signature_key, o.name]));
  const inputKey = io.inputs[0].signature_key;
  if (inputs.length !== 1 || (inputKey && inputs[0].name !== inputKey)) {
    throw new Error(`LiteRT.js sees inputs ${inputs.map((d) => d.name).join(", ")}; the manifest says ${inputKey || io.inputs[0].name}`);
  }
  const run = async (inputName, x) => {
    const tensor = new Tensor(x.data, x.shape);
    const results = await model.run([tensor]);
    tensor.delete();
    const raw = {};
    for (const [k, result] of results.entries()) {
      const t = result.accelerator === "wasm" ? result : await result.moveTo("wasm"); // WebGPU outputs live on the GPU
      raw[byKey[outputs[k].name] || outputs[k].name] = { data: t.toTypedArray().slice(), shape: Array.from(outputs[k].shape) };
      t.delete();
    }
    return raw;
  };
  return { run, backend };
}

// A predictor for one artifact: predict(imageData, {box, keypoints}) -> keypoints in the photo.
export async function load(manifest, baseUrl, modelId, artifactPath) {
  const model = manifest.models.find((m) => m.id === modelId);
  if (!model) throw new Error(`no model ${modelId} in the manifest`);
  const artifact = model.artifacts.find((a) => a.path === artifactPath);
  if (!artifact) throw new Error(`${modelId} has no artifact ${artifactPath}`);
  if (artifact.io.inputs.length !== 1) throw new Error(`${artifactPath}: the page feeds exactly one input`);
  const url = new URL(artifact.path, baseUrl).href;
  const bytes = new Uint8Array(await (await fetch(url)).arrayBuffer());
  const digest = Array.from(new Uint8Array(await crypto.subtle.digest("SHA-256", bytes)), (b) => b.toString(16).padStart(2, "0")).join("");
  if (digest !== artifact.sha256) throw new Error(`${artifactPath} is not the file the manifest lists: sha256 ${digest}, manifest says ${artifact.sha256}`);
  const { run, backend } = artifact.format === "onnx" ? await openOnnx(bytes, artifact) : await openTflite(bytes, artifact.io);
  const spec = model.input;
  const [height, width] = inputHW(spec);
  const ioInput = artifact.io.inputs[0];
  const transposed = artifact.input_layout !== (spec.layout || "NHWC");
  // The steps a port reproduces, each exposed for the golden vectors (checkGolden).
  const prepare = (image, { box = null, keypoints = null, crop = null } = {}) => {
    const m = cropMatrix(crop || spec.crop, width, height, [image.width, image.height], box, keypoints);
    const rgb = warp(image.data, image.width, image.height, m, width, height);
    return { matrix: m, x: toTensor(rgb, width, height, spec, ioInput, artifact.input_layout) };
  };
  const outputsOf = (raw) => modelOutputs(raw, artifact.io.outputs, model.outputs, transposed);
  const infer = async (x) => outputsOf(await run(ioInput.name, x, ioInput.dtype));
  const decodePose = (m, outs) => {
    const toImage = (xy) => xy.map(([u, v]) => [m[0][0] * u + m[0][1] * v + m[0][2], m[1][0] * u + m[1][1] * v + m[1][2]]);
    const { xy, scores } = decode(model.decoder, outs);
    const poses = model.decoder.multi_pose
      ? decodeMultiPose(model.decoder, outs).map((p) => ({ keypoints: toImage(p.xy), scores: p.scores, score: p.score }))
      : null;
    return { keypoints: toImage(xy), scores, names: model.keypoints.names, matrix: m, poses };
  };
  const predict = async function predict(image, options = {}) {
    const { matrix, x } = prepare(image, options);
    const start = performance.now();
    const raw = await run(ioInput.name, x, ioInput.dtype);
    const milliseconds = performance.now() - start; // the inference alone
    return { ...decodePose(matrix, outputsOf(raw)), milliseconds };
  };
  return Object.assign(predict, { prepare, infer, decodePose, model, artifact, width, height, backend });
}

// --- golden vectors (zoo/golden.py) ---------------------------------------------------------------

const hex = (buffer) => Array.from(new Uint8Array(buffer), (b) => b.toString(16).padStart(2, "0")).join("");

// An array of a golden folder: the gzip of its little-endian bytes, named by the file's sha256.
async function readArray(folderUrl, ref) {
  const response = await fetch(new URL(ref.file, folderUrl));
  if (!response.ok) throw new Error(`golden data file ${ref.file}: HTTP ${response.status}`);
  const bytes = await response.arrayBuffer();
  if (`${hex(await crypto.subtle.digest("SHA-256", bytes))}.bin.gz` !== ref.file) {
    throw new Error(`golden data file ${ref.file} is not the file its name says (sha256 differs)`);
  }
  const raw = await new Response(new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"))).arrayBuffer();
  const Typed = TYPED[ref.dtype];
  if (!Typed) throw new Error(`golden data file ${ref.file}: dtype ${ref.dtype} is not supported`);
  return new Typed(raw); // little-endian, as every browser's typed arrays
}

// Each value's absolute difference over the scale of `want` (its range, or its largest magnitude).
function deviations(got, want) {
  if (got.length !== want.length) return [Infinity];
  let lo = Infinity, hi = -Infinity, big = 0;
  for (const w of want) { lo = Math.min(lo, Number(w)); hi = Math.max(hi, Number(w)); big = Math.max(big, Math.abs(Number(w))); }
  const scale = Math.max(hi - lo, big, 1e-12);
  return Array.from(want, (w, i) => Math.abs(Number(got[i]) - Number(w)) / scale);
}

const largest = (values) => values.reduce((a, b) => Math.max(a, b), 0);

// Run a predictor of this page on the artifact's golden people, its own way from the photo to the
// pose, and compare each step with zoo/golden.py's numbers and tolerances (the same report).
export async function checkGolden(predict, baseUrl) {
  const golden = predict.artifact.golden;
  if (!golden) throw new Error(`${predict.artifact.path} has no golden vectors in the manifest`);
  const indexUrl = new URL(golden.path, baseUrl);
  const bytes = await (await fetch(indexUrl)).arrayBuffer();
  if (hex(await crypto.subtle.digest("SHA-256", bytes)) !== golden.sha256) {
    throw new Error(`golden index ${golden.path} is not the file the manifest lists (sha256 differs)`);
  }
  const index = JSON.parse(new TextDecoder().decode(bytes));
  const tol = index.tolerance;
  const worst = { matrix_abs: 0, input_rel_err: 0, scores_abs: 0 };
  const outputs = {};
  const errors = [];
  for (const c of index.cases) {
    const rgb = await readArray(indexUrl, c.photo);
    const [h, w] = c.photo.shape;
    const rgba = new Uint8ClampedArray(w * h * 4);
    for (let p = 0; p < w * h; p++) { rgba.set(rgb.subarray(p * 3, p * 3 + 3), p * 4); rgba[p * 4 + 3] = 255; }
    const { matrix, x } = predict.prepare({ data: rgba, width: w, height: h }, c.call);
    matrix.forEach((row, i) => row.forEach((v, j) => { worst.matrix_abs = Math.max(worst.matrix_abs, Math.abs(v - c.matrix[i][j])); }));
    worst.input_rel_err = Math.max(worst.input_rel_err, largest(deviations(x.data, await readArray(indexUrl, c.input))));
    const outs = await predict.infer(x);
    for (const [name, stored] of Object.entries(c.outputs)) {
      let got = outs[name].data;
      if (stored.indices) got = Array.from(await readArray(indexUrl, stored.indices), (i) => got[i]);
      const d = deviations(got, await readArray(indexUrl, stored.values));
      const seen = (outputs[name] ??= { rel_err: 0, within: 1 });
      seen.rel_err = Math.max(seen.rel_err, largest(d));
      seen.within = Math.min(seen.within, d.length ? d.filter((v) => v <= tol.outputs_within).length / d.length : 1);
    }
    const pose = predict.decodePose(matrix, outs);
    const pairs = [[pose.keypoints, pose.scores, c.keypoints, c.scores]];
    if (c.poses && c.poses.length && pose.poses && pose.poses.length) {
      pairs.push([pose.poses[0].keypoints, pose.poses[0].scores, c.poses[0].keypoints, c.poses[0].scores]);
    }
    const m = c.matrix; // the crop's longer side in photo pixels: the unit of keypoint error
    const side = Math.max(Math.hypot(m[0][0], m[1][0]) * predict.width, Math.hypot(m[0][1], m[1][1]) * predict.height);
    const decoder = predict.model.decoder;
    for (const [gotXY, gotScores, wantXY, wantScores] of pairs) {
      const foundGot = found(gotScores, decoder), foundWant = found(wantScores, decoder);
      gotXY.forEach(([gx, gy], k) => { // a keypoint neither side finds agrees, as in parity
        errors.push(foundGot[k] || foundWant[k] ? Math.hypot(gx - wantXY[k][0], gy - wantXY[k][1]) / side : 0);
        worst.scores_abs = Math.max(worst.scores_abs, Math.abs(gotScores[k] - wantScores[k]));
      });
    }
  }
  const share = errors.length ? errors.filter((e) => e <= tol.keypoints_within).length / errors.length : 1;
  const failures = ["matrix_abs", "input_rel_err", "scores_abs"].filter((k) => worst[k] > tol[k]).map((k) => `${k} ${worst[k]} > ${tol[k]}`);
  for (const [name, seen] of Object.entries(outputs)) {
    if (seen.within < tol.outputs_share) {
      failures.push(`output ${name}: ${seen.within} of its values within ${tol.outputs_within} of its range < ${tol.outputs_share} (largest deviation ${seen.rel_err})`);
    }
  }
  if (share < tol.keypoints_share) failures.push(`keypoints: ${share} within ${tol.keypoints_within} of the crop side < ${tol.keypoints_share}`);
  return { cases: index.cases.length, ...worst, outputs, keypoints_within: share, failures, passed: failures.length === 0 };
}

// Decoded pixels of an image URL, without colour management (the build reads files as they are).
export async function imageData(url) {
  const blob = await (await fetch(url)).blob();
  const bitmap = await createImageBitmap(blob, { colorSpaceConversion: "none", premultiplyAlpha: "none" });
  const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
  const ctx = canvas.getContext("2d");
  ctx.drawImage(bitmap, 0, 0);
  return ctx.getImageData(0, 0, bitmap.width, bitmap.height);
}

// The image on the canvas, at its own size.
export function drawImage(canvas, image) {
  canvas.width = image.width;
  canvas.height = image.height;
  canvas.getContext("2d").putImageData(image, 0, 0);
}

// Skeletons in `color` and keypoints coloured by score, over what the canvas shows: only those
// the decoder finds.
export function drawPoses(canvas, poses, skeleton, decoder, color = "#00c8ff") {
  const ctx = canvas.getContext("2d");
  const r = Math.max(2, Math.round(Math.max(canvas.width, canvas.height) / 250));
  for (const pose of poses) {
    const shown = found(pose.scores, decoder);
    ctx.lineWidth = r;
    ctx.strokeStyle = color;
    for (const [a, b] of skeleton) {
      if (!shown[a] || !shown[b]) continue;
      ctx.beginPath();
      ctx.moveTo(...pose.keypoints[a]);
      ctx.lineTo(...pose.keypoints[b]);
      ctx.stroke();
    }
    pose.keypoints.forEach(([x, y], k) => {
      if (!shown[k]) return;
      ctx.fillStyle = `hsl(${Math.round(60 * Math.min(Math.max(pose.scores[k], 0), 1))}, 100%, 50%)`;
      ctx.strokeStyle = color;
      ctx.lineWidth = Math.max(1, r / 2);
      ctx.beginPath();
      ctx.arc(x, y, r * 1.5, 0, 2 * Math.PI);
      ctx.fill();
      ctx.stroke();
    });
  }
}
