// An FP16 ONNX model rewritten to float32, in the browser, for ONNX Runtime Web's wasm backend: wasm
// has no half-precision arithmetic, so ORT emulates it there (a Cast around every node); widening
// the file's float16 tensors and types once at load runs it on the float32 kernels instead. The
// download stays the FP16 file; its float16 weights are exactly representable in float32.
//
// A small protobuf walk over onnx.proto: ModelProto.graph -> GraphProto (nodes, initializers,
// inputs/outputs; value_info dropped, ORT infers it again) -> TensorProto (float16 data as
// float32 raw_data), NodeProto attributes (tensors, subgraphs, `to`/`dtype` = FLOAT16). Unknown
// fields are copied as they are. A model it cannot widen exactly (external data, sparse or
// function-local float16) throws, and the caller runs the file as it is.

const FLOAT = 1, FLOAT16 = 10;

function readVarint(bytes, at) {
  let value = 0n, shift = 0n, b;
  do {
    if (at >= bytes.length) throw new Error("truncated varint");
    b = bytes[at++];
    value |= BigInt(b & 0x7f) << shift;
    shift += 7n;
  } while (b & 0x80);
  return [value, at];
}

function varint(value) {
  let v = BigInt.asUintN(64, BigInt(value));
  const out = [];
  do {
    let b = Number(v & 0x7fn);
    v >>= 7n;
    if (v) b |= 0x80;
    out.push(b);
  } while (v);
  return out;
}

// The fields of one message: [{ field, wire, value (BigInt) | bytes (Uint8Array), raw }].
function fields(bytes) {
  const out = [];
  let at = 0;
  while (at < bytes.length) {
    const start = at;
    let key;
    [key, at] = readVarint(bytes, at);
    const field = Number(key >> 3n), wire = Number(key & 7n);
    const entry = { field, wire };
    if (wire === 0) [entry.value, at] = readVarint(bytes, at);
    else if (wire === 1) at += 8;
    else if (wire === 5) at += 4;
    else if (wire === 2) {
      let length;
      [length, at] = readVarint(bytes, at);
      entry.bytes = bytes.subarray(at, at + Number(length));
      at += Number(length);
    } else throw new Error(`protobuf wire type ${wire} is not supported`);
    if (at > bytes.length) throw new Error("truncated message");
    entry.raw = bytes.subarray(start, at);
    out.push(entry);
  }
  return out;
}

function encode(parts) {
  const chunks = parts.map((p) => {
    if (p.raw) return p.raw;
    const key = varint((p.field << 3) | p.wire);
    if (p.wire === 0) return Uint8Array.from([...key, ...varint(p.value)]);
    return Uint8Array.from([...key, ...varint(p.bytes.length), ...p.bytes]);
  });
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

const message = (field, bytes) => ({ field, wire: 2, bytes });
const number = (field, value) => ({ field, wire: 0, value: BigInt(value) });

function halfToFloat(h) {
  const sign = h & 0x8000 ? -1 : 1, exponent = (h >> 10) & 0x1f, fraction = h & 0x3ff;
  if (exponent === 0) return sign * 2 ** -14 * (fraction / 1024);
  if (exponent === 31) return fraction ? NaN : sign * Infinity;
  return sign * 2 ** (exponent - 15) * (1 + fraction / 1024);
}

// TensorProto: float16 data (raw_data, or int32_data holding the bits) as float32 raw_data.
function widenTensor(bytes) {
  const parts = fields(bytes);
  const type = parts.find((p) => p.field === 2);
  if (!type || Number(type.value) !== FLOAT16) return bytes;
  if (parts.some((p) => p.field === 13 || p.field === 14)) throw new Error("float16 tensor with external data");
  let halves = [];
  for (const p of parts) {
    if (p.field === 9) halves = Array.from({ length: p.bytes.length / 2 }, (_, i) => p.bytes[2 * i] | (p.bytes[2 * i + 1] << 8));
    if (p.field === 5 && p.wire === 2) for (let at = 0; at < p.bytes.length;) { let v; [v, at] = readVarint(p.bytes, at); halves.push(Number(v)); }
    if (p.field === 5 && p.wire === 0) halves.push(Number(p.value));
  }
  const floats = new Float32Array(halves.map(halfToFloat));
  const raw = new Uint8Array(floats.buffer); // little-endian, as ONNX's raw_data
  return encode([...parts.filter((p) => ![2, 5, 9].includes(p.field)), number(2, FLOAT), message(9, raw)]);
}

// TypeProto: a float16 tensor type as float32 (sequences, maps and optionals looked into).
function widenType(bytes) {
  return encode(fields(bytes).map((p) => {
    if (p.field === 1 && p.wire === 2) { // tensor_type
      return message(1, encode(fields(p.bytes).map((q) => (q.field === 1 && Number(q.value) === FLOAT16 ? number(1, FLOAT) : q))));
    }
    if ([4, 5, 9].includes(p.field) && p.wire === 2) return message(p.field, widenNested(p.bytes));
    return p;
  }));
}

// Sequence/Optional (elem_type = 1) and Map (value_type = 2) hold a TypeProto.
function widenNested(bytes) {
  return encode(fields(bytes).map((p) => ((p.field === 1 || p.field === 2) && p.wire === 2 ? message(p.field, widenType(p.bytes)) : p)));
}

const widenValueInfo = (bytes) => encode(fields(bytes).map((p) => (p.field === 2 ? message(2, widenType(p.bytes)) : p)));

function widenAttribute(bytes) {
  const parts = fields(bytes);
  const name = new TextDecoder().decode(parts.find((p) => p.field === 1)?.bytes ?? new Uint8Array());
  return encode(parts.map((p) => {
    if (p.field === 3 && (name === "to" || name === "dtype") && Number(p.value) === FLOAT16) return number(3, FLOAT);
    if (p.field === 5) return message(5, widenTensor(p.bytes)); // t
    if (p.field === 10) return message(10, widenTensor(p.bytes)); // tensors
    if (p.field === 6) return message(6, widenGraph(p.bytes)); // g
    if (p.field === 11) return message(11, widenGraph(p.bytes)); // graphs
    if (p.field === 22) throw new Error("sparse tensor attribute");
    return p;
  }));
}

const widenNode = (bytes) => encode(fields(bytes).map((p) => (p.field === 5 ? message(5, widenAttribute(p.bytes)) : p)));

function widenGraph(bytes) {
  const out = [];
  for (const p of fields(bytes)) {
    if (p.field === 1) out.push(message(1, widenNode(p.bytes)));
    else if (p.field === 5) out.push(message(5, widenTensor(p.bytes)));
    else if (p.field === 11 || p.field === 12) out.push(message(p.field, widenValueInfo(p.bytes)));
    else if (p.field === 13) continue; // value_info: hints ORT infers again
    else if (p.field === 15) throw new Error("sparse initializer");
    else out.push(p);
  }
  return encode(out);
}

// The model with every float16 tensor and type as float32; throws where that cannot be done exactly.
export function widenFloat16(model) {
  const parts = fields(model);
  if (parts.some((p) => p.field === 25)) throw new Error("model-local functions");
  return encode(parts.map((p) => (p.field === 7 ? message(7, widenGraph(p.bytes)) : p)));
}
