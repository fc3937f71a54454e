/**
 * The WGSL of the fused WebGPU kernel, generated for one model: widths, steps and every offset in
 * the arena are compile-time constants, so the spiking kernels can size their workgroup arrays.
 *
 * Everything lives in one f32 storage buffer (the arena, see regions.ts): parameters, Adam moments
 * and gradients in layout order first, then the activations. Each dispatch reads its own 16 words
 * of parameters from a uniform buffer at a dynamic offset. Arithmetic follows the simd kernel
 * (src-main/engine/simd/assembly/quadra.ts) operation for operation, in the same order, so results
 * agree to float rounding (the GPU may contract a·b + c into one fma).
 *
 * The mixed-precision variant (kernelSource(…, half)) differs only where it must: the GEMM and the
 * products inside the spiking kernels take f16-rounded operands, the loss gradients are multiplied
 * by the loss scale, and four more entry points keep the f16 weights and the loss scaler. Without
 * `half` the source is the f32 kernel's, character for character.
 */
import type { Regions } from './regions';

/** Threads per workgroup of the row and column kernels (the GEMM uses 16×16). */
export const WORKGROUP = 64;
/** GEMM tile edge. */
export const TILE = 16;
/** Uniform words per dispatch, and the byte stride of their slots (minUniformBufferOffsetAlignment). */
export const PARAM_WORDS = 16;
export const PARAM_STRIDE = 256;
/** "No such operand" in a parameter word (no bias, no stored GELU′). */
export const NONE = 0xffffffff;

export const ENTRY_POINTS = [
  'gemm',
  'lnGelu',
  'lnGeluBack',
  'lnParamGrads',
  'colsum',
  'reconstruction',
  'spikeForward',
  'spikeLoss',
  'spikeBackward',
  'spikeScalars',
  'adamw',
] as const;
/** The mixed-precision kernel's extra entry points (the f16 weight copy and the loss scaler). */
export const MIXED_ENTRY_POINTS = ['toHalf', 'unscale', 'findInf', 'scalerUpdate'] as const;
export type EntryPoint = (typeof ENTRY_POINTS)[number] | (typeof MIXED_ENTRY_POINTS)[number];

/**
 * How the mixed kernel holds f16 values: 'native' as WGSL f16 (the device has 'shader-f16'),
 * 'packed' as two f16 bit patterns per u32 read through unpack2x16float (any device). Both store
 * the same bits, rounded by the kernel itself (see roundHalf), so both compute the same numbers.
 */
export type HalfPath = 'native' | 'packed';

/** The loss scaler's u32 words (binding 2): scale (f32 bits), growth tracker, this step's overflow
 * flag, skipped steps, and the two optimisers' step counts (on the GPU, so a skip needs no readback). */
export const SCALER = { scale: 0, growthTracker: 1, found: 2, skipped: 3, fieldStep: 4, spikeStep: 5, words: 8 } as const;

export interface ShaderDims {
  F: number;
  S: number;
  T: number;
  /** Float offsets of the spiking parameters in the arena. */
  fc1b: number;
  fc2w: number;
  fc2b: number;
  fc3w: number;
  fc3b: number;
  threshold: number;
  decay: number;
}

const u = (n: number) => `${n >>> 0}u`;

/**
 * Both GEMMs' start: the dispatch's parameters (`extra`: the mixed one's operand flag), this
 * thread's output cell, and its accumulator started from C or the bias (`why` says the order).
 */
function gemmPrologue(extra: string, why: string): string {
  return `  let M = pu(0u); let N = pu(1u); let K = pu(2u);
  let aOff = pu(3u); let ars = pu(4u); let aks = pu(5u);
  let bOff = pu(6u); let brs = pu(7u); let bks = pu(8u);
  let cOff = pu(9u); let ldc = pu(10u); let biasOff = pu(11u); let accumulate = pu(12u);${extra}
  let row = wid.y * ${u(TILE)} + lid.y;
  let col = wid.x * ${u(TILE)} + lid.x;
  let inside = row < M && col < N;
${why}
  var acc = 0.0;
  if (inside) {
    if (accumulate != 0u) { acc = A[cOff + row * ldc + col]; } else if (biasOff != NONE) { acc = A[biasOff + col]; }
  }
`;
}

const FP32_GEMM = /* wgsl */ `// ---- GEMM: C[M,N] = A·B (+ bias, or + C). A(i,k) = arena[a + i·ars + k·aks]; B(k,j) = arena[b + k·brs + j·bks].
var<workgroup> tileA: array<array<f32, ${TILE}>, ${TILE}>;
var<workgroup> tileB: array<array<f32, ${TILE}>, ${TILE}>;

@compute @workgroup_size(${TILE}, ${TILE})
fn gemm(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid: vec3u) {
${gemmPrologue('', '  // Bias first, then the products in k order: the simd kernel\'s summation order.')}  for (var k0 = 0u; k0 < K; k0 = k0 + ${u(TILE)}) {
    let ka = k0 + lid.x;
    var a = 0.0;
    if (row < M && ka < K) { a = A[aOff + row * ars + ka * aks]; }
    tileA[lid.y][lid.x] = a;
    let kb = k0 + lid.y;
    var b = 0.0;
    if (kb < K && col < N) { b = A[bOff + kb * brs + col * bks]; }
    tileB[lid.y][lid.x] = b;
    workgroupBarrier();
    let kn = min(${u(TILE)}, K - k0);
    for (var kk = 0u; kk < kn; kk = kk + 1u) { acc = acc + tileA[lid.y][kk] * tileB[kk][lid.x]; }
    workgroupBarrier();
  }
  if (inside) { A[cOff + row * ldc + col] = acc; }
}

`;

/**
 * The mixed kernel's bindings, f16 helpers, GEMM and loss-scaler entry points. Rounding to f16 is
 * done here, bit by bit (round to nearest, ties to even; beyond ±65504 → ±inf, as a float16 cast
 * in PyTorch), not left to f16() or pack2x16float, whose rounding of inexact and out-of-range values
 * WGSL leaves to the implementation: so both paths store the same bits and an overflow is an inf.
 */
function mixedSource(half: HalfPath): string {
  const native = half === 'native';
  return /* wgsl */ `// ---- Mixed precision: f16 operands, f32 accumulation, the loss scaler.
@group(0) @binding(2) var<storage, read_write> SC: array<atomic<u32>, ${SCALER.words}>;
// The f16 copy of the parameters (GEMM weights read it), refreshed by toHalf after each update.
@group(0) @binding(3) var<storage, read_write> HW: array<${native ? 'f16' : 'u32'}>;

fn lossScale() -> f32 { return bitcast<f32>(atomicLoad(&SC[${u(SCALER.scale)}])); }

/** inf or NaN, from the bits (WGSL lets a compiler assume float comparisons never see them). */
fn nonFinite(x: f32) -> bool { return (bitcast<u32>(x) & 0x7f800000u) == 0x7f800000u; }

/** x rounded to the nearest f16 value, as an f32. */
fn roundHalf(x: f32) -> f32 {
  let b = bitcast<u32>(x);
  let a = b & 0x7fffffffu;
  let sign = b & 0x80000000u;
  if (a >= 0x7f800000u) { return x; }
  // 65520 is halfway between 65504 (f16's largest) and 65536: ties to even go up, to inf.
  if (a >= 0x477ff000u) { return bitcast<f32>(sign | 0x7f800000u); }
  if (a < 0x38800000u) {
    // Below 2^-14, f16's subnormals: multiples of 2^-24 (round() ties to even).
    let q = round(bitcast<f32>(a) * 16777216.0) * 5.9604644775390625e-8;
    return bitcast<f32>(sign | bitcast<u32>(q));
  }
  // Drop 13 of the 23 mantissa bits, ties to even; a carry moves into the exponent as it should.
  return bitcast<f32>(sign | ((a + 0xfffu + ((a >> 13u) & 1u)) & 0xffffe000u));
}

/** The binary16 bits of r, an f16 value (from roundHalf). */
fn halfBits(r: f32) -> u32 {
  let b = bitcast<u32>(r);
  let sign = (b >> 16u) & 0x8000u;
  let a = b & 0x7fffffffu;
  if (a >= 0x7f800000u) { return sign | select(0x7c00u, 0x7e00u, a > 0x7f800000u); }
  if (a < 0x38800000u) { return sign | u32(bitcast<f32>(a) * 16777216.0); }
  return sign | ((a - 0x38000000u) >> 13u);
}
${
  native
    ? `
alias HT = f16;
fn toTile(x: f32) -> HT { return bitcast<vec2<f16>>(halfBits(roundHalf(x))).x; }
fn weightTile(i: u32) -> HT { return HW[i]; }
/** Parameter i of the f16 copy. */
fn wh(i: u32) -> f32 { return f32(HW[i]); }`
    : `
alias HT = f32;
fn toTile(x: f32) -> HT { return roundHalf(x); }
fn weightTile(i: u32) -> HT { return wh(i); }
/** Parameter i of the f16 copy. */
fn wh(i: u32) -> f32 { return unpack2x16float(HW[i >> 1u])[i & 1u]; }`
}

// ---- GEMM: C[M,N] = A·B (+ bias, or + C) with both operands rounded to f16 as they are loaded
// (B from the f16 weight copy when bHalf), the products (exact in f32) summed in f32.
var<workgroup> tileA: array<array<HT, ${TILE}>, ${TILE}>;
var<workgroup> tileB: array<array<HT, ${TILE}>, ${TILE}>;

@compute @workgroup_size(${TILE}, ${TILE})
fn gemm(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid: vec3u) {
${gemmPrologue(' let bHalf = pu(13u);', '  // The bias stays f32 (added first, as in the f32 kernel).')}  for (var k0 = 0u; k0 < K; k0 = k0 + ${u(TILE)}) {
    let ka = k0 + lid.x;
    var a = HT(0.0);
    if (row < M && ka < K) { a = toTile(A[aOff + row * ars + ka * aks]); }
    tileA[lid.y][lid.x] = a;
    let kb = k0 + lid.y;
    var b = HT(0.0);
    if (kb < K && col < N) {
      let at = bOff + kb * brs + col * bks;
      if (bHalf != 0u) { b = weightTile(at); } else { b = toTile(A[at]); }
    }
    tileB[lid.y][lid.x] = b;
    workgroupBarrier();
    let kn = min(${u(TILE)}, K - k0);
    for (var kk = 0u; kk < kn; kk = kk + 1u) { acc = acc + f32(tileA[lid.y][kk]) * f32(tileB[kk][lid.x]); }
    workgroupBarrier();
  }
  if (inside) { A[cOff + row * ldc + col] = acc; }
}

fn flatIndex(wid: vec3u, lid: vec3u, groups: vec3u) -> u32 { return (wid.y * groups.x + wid.x) * WG + lid.x; }

// The f16 copy of parameters [0, n): ${native ? 'one f16 per thread' : 'two per thread, packed into one u32 (low half first)'}.
@compute @workgroup_size(${WORKGROUP})
fn toHalf(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid: vec3u, @builtin(num_workgroups) groups: vec3u) {
  let n = pu(0u);
  let i = flatIndex(wid, lid, groups);
${
  native
    ? `  if (i >= n) { return; }
  HW[i] = toTile(A[i]);`
    : `  if (2u * i >= n) { return; }
  var high = 0u;
  if (2u * i + 1u < n) { high = halfBits(roundHalf(A[2u * i + 1u])); }
  HW[i] = halfBits(roundHalf(A[2u * i])) | (high << 16u);`
}
}

// Gradients [0, end) ÷ the loss scale they were computed with (PyTorch: × the f32 reciprocal).
@compute @workgroup_size(${WORKGROUP})
fn unscale(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid: vec3u, @builtin(num_workgroups) groups: vec3u) {
  let end = pu(0u);
  let i = flatIndex(wid, lid, groups);
  if (i >= end) { return; }
  A[G + i] = A[G + i] * (1.0 / lossScale());
}

// Raises the overflow flag when a gradient in [0, end) is inf or NaN (the flag is cleared before).
@compute @workgroup_size(${WORKGROUP})
fn findInf(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid: vec3u, @builtin(num_workgroups) groups: vec3u) {
  let end = pu(0u);
  let i = flatIndex(wid, lid, groups);
  if (i >= end) { return; }
  if (nonFinite(A[G + i])) { atomicOr(&SC[${u(SCALER.found)}], 1u); }
}

// GradScaler.update, plus the step counts of the step about to be taken: on overflow the scale
// halves, the growth tracker restarts and the step counts stay (AdamW skips); otherwise after
// growthInterval steps in a row the scale doubles (unless that overflows f32).
@compute @workgroup_size(1)
fn scalerUpdate() {
  let growthInterval = pu(0u); let updateSpike = pu(1u);
  let scale = lossScale();
  if (atomicLoad(&SC[${u(SCALER.found)}]) != 0u) {
    atomicStore(&SC[${u(SCALER.scale)}], bitcast<u32>(scale * 0.5));
    atomicStore(&SC[${u(SCALER.growthTracker)}], 0u);
    atomicAdd(&SC[${u(SCALER.skipped)}], 1u);
    return;
  }
  let good = atomicLoad(&SC[${u(SCALER.growthTracker)}]) + 1u;
  if (good >= growthInterval) {
    let grown = scale * 2.0;
    if (!nonFinite(grown)) { atomicStore(&SC[${u(SCALER.scale)}], bitcast<u32>(grown)); }
    atomicStore(&SC[${u(SCALER.growthTracker)}], 0u);
  } else {
    atomicStore(&SC[${u(SCALER.growthTracker)}], good);
  }
  atomicAdd(&SC[${u(SCALER.fieldStep)}], 1u);
  if (updateSpike != 0u) { atomicAdd(&SC[${u(SCALER.spikeStep)}], 1u); }
}
`;
}

const MIXED_ADAMW = /* wgsl */ `/** e^y − 1 without the cancellation of exp(y) − 1 near 0 (Taylor to y⁹ there). */
fn expm1(y: f32) -> f32 {
  if (abs(y) < 0.5) {
    var p = 1.0 + y / 9.0;
    p = 1.0 + y / 8.0 * p;
    p = 1.0 + y / 7.0 * p;
    p = 1.0 + y / 6.0 * p;
    p = 1.0 + y / 5.0 * p;
    p = 1.0 + y / 4.0 * p;
    p = 1.0 + y / 3.0 * p;
    p = 1.0 + y / 2.0 * p;
    return y * p;
  }
  return exp(y) - 1.0;
}

// AdamW on [start, end) as in the f32 kernel, skipped when the step's gradients overflowed; the
// step count is the GPU's, so the bias corrections 1 − βᵗ = −expm1(t·ln β) are computed here.
@compute @workgroup_size(${WORKGROUP})
fn adamw(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid: vec3u, @builtin(num_workgroups) groups: vec3u) {
  let start = pu(0u); let end = pu(1u);
  let beta1 = pf(2u); let oneMinusBeta1 = pf(3u); let beta2 = pf(4u); let oneMinusBeta2 = pf(5u);
  let decayFactor = pf(6u); let learningRate = pf(7u); let logBeta1 = pf(8u); let eps = pf(9u);
  let mom = pu(10u); let vel = pu(11u); let logBeta2 = pf(12u); let stepWord = pu(13u);
  let i = start + (wid.y * groups.x + wid.x) * WG + lid.x;
  if (i >= end) { return; }
  if (atomicLoad(&SC[${u(SCALER.found)}]) != 0u) { return; }
  let t = f32(atomicLoad(&SC[stepWord]));
  let stepSize = learningRate / -expm1(t * logBeta1);
  let invSqrtBc2 = 1.0 / sqrt(-expm1(t * logBeta2));
  let g = A[G + i];
  let m = beta1 * A[mom + i] + oneMinusBeta1 * g;
  let v = beta2 * A[vel + i] + oneMinusBeta2 * (g * g);
  A[mom + i] = m;
  A[vel + i] = v;
  A[i] = A[i] * decayFactor - (stepSize * m) / (sqrt(v) * invSqrtBc2 + eps);
}
`;

const FP32_ADAMW = /* wgsl */ `// AdamW on [start, end) (PyTorch's arithmetic in float32; the scalars come from JS in double):
// m ← β1·m + (1−β1)·g; v ← β2·v + (1−β2)·g²; p ← p·(1 − lr·wd) − (lr/bc1)·m/(√v/√bc2 + eps).
@compute @workgroup_size(${WORKGROUP})
fn adamw(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid: vec3u, @builtin(num_workgroups) groups: vec3u) {
  let start = pu(0u); let end = pu(1u);
  let beta1 = pf(2u); let oneMinusBeta1 = pf(3u); let beta2 = pf(4u); let oneMinusBeta2 = pf(5u);
  let decayFactor = pf(6u); let stepSize = pf(7u); let invSqrtBc2 = pf(8u); let eps = pf(9u);
  let mom = pu(10u); let vel = pu(11u);
  let i = start + (wid.y * groups.x + wid.x) * WG + lid.x;
  if (i >= end) { return; }
  let g = A[G + i];
  let m = beta1 * A[mom + i] + oneMinusBeta1 * g;
  let v = beta2 * A[vel + i] + oneMinusBeta2 * (g * g);
  A[mom + i] = m;
  A[vel + i] = v;
  A[i] = A[i] * decayFactor - (stepSize * m) / (sqrt(v) * invSqrtBc2 + eps);
}
`;

/**
 * The kernel's WGSL: all-f32 without `half`; with it, the mixed-precision kernel (GEMM operands
 * rounded to f16, f32 accumulation; the loss scaler; AdamW gated by the overflow flag).
 */
export function kernelSource(d: ShaderDims, r: Regions, half: HalfPath | null = null): string {
  const unitsS = Math.ceil(d.S / WORKGROUP);
  const unitsF = Math.ceil(d.F / WORKGROUP);
  // Products inside the spiking kernels: with f16 operands in the mixed kernel.
  const operand = (x: string) => (half ? `roundHalf(${x})` : x);
  const weight = (index: string) => (half ? `wh(${index})` : `A[${index}]`);
  /**
   * One step of a spiking layer fed by the previous layer's 0/1 spikes (fc2 on s1, fc3 on s2), for
   * this row's units (`units` per thread, `width` in all): only the weight columns of neurons that
   * fired are summed; `after` keeps the unit's spike (for the next layer, or the rate).
   */
  const spikingLayerForward = (units: string, width: string, bias: string, input: string, weights: string, carry: string, spikes: string, membranes: string, after: string) => `    for (var k = 0u; k < ${units}; k = k + 1u) {
      let j = l + k * WG;
      if (j < ${width}) {
        var u = A[${bias} + j];
        for (var i = 0u; i < S; i = i + 1u) {
          let s = ${input}[i];
          if (s != 0.0) { u = u + ${operand('s')} * ${weight(`${weights} + j * S + i`)}; }
        }
        let m = ${carry}[k] + u;
        let s = spike(m, th, smoothStep);
        if (keep != 0u) { A[${spikes} + at * ${width} + j] = s; A[${membranes} + at * ${width} + j] = m; }
        ${carry}[k] = m * (1.0 - s) * dec;
        ${after}
      }
    }
`;
  /**
   * BPTT through one hidden spiking layer (fc3 → layer 2, fc2 → layer 1), for each of this row's S
   * units: the upstream layer's du (width `inputWidth`) through its weights, then the LIF step back
   * through T; `after` runs per unit once its T steps are done.
   */
  const hiddenLayerBack = (inputWidth: string, duIn: string, weights: string, m: string, spikes: string, duOut: string, after: string) => `  for (var k = 0u; k < US; k = k + 1u) {
    let j = l + k * WG;
    if (j < S) {
      var carry = 0.0;
      for (var t1 = T; t1 > 0u; t1 = t1 - 1u) {
        let row = (t1 - 1u) * rows + r;
        var g = 0.0;
        for (var i = 0u; i < ${inputWidth}; i = i + 1u) { g = g + ${operand(`A[${duIn} + row * ${inputWidth} + i]`)} * ${weight(`${weights} + i * S + j`)}; }
        let at = row * S + j;
        let b = lifBack(A[${m} + at], A[${spikes} + at], g, carry, t1 == T, th, dec);
        dTh = dTh + b.dTh;
        dDe = dDe + b.dDe;
        carry = b.du;
        A[${duOut} + at] = carry;
      }
${after}    }
  }
`;
  const scaled = (x: string) => (half ? `(${x}) * lossScale()` : x);
  return /* wgsl */ `${half === 'native' ? '\nenable f16;' : ''}
struct Params { w: array<vec4<u32>, ${PARAM_WORDS / 4}> }
@group(0) @binding(0) var<storage, read_write> A: array<f32>;
@group(0) @binding(1) var<uniform> U: Params;

const NONE: u32 = ${u(NONE)};
const WG: u32 = ${u(WORKGROUP)};
const F: u32 = ${u(d.F)};
const S: u32 = ${u(d.S)};
const T: u32 = ${u(d.T)};
const US: u32 = ${u(unitsS)};
const UF: u32 = ${u(unitsF)};
const O_FC1B: u32 = ${u(d.fc1b)};
const O_FC2W: u32 = ${u(d.fc2w)};
const O_FC2B: u32 = ${u(d.fc2b)};
const O_FC3W: u32 = ${u(d.fc3w)};
const O_FC3B: u32 = ${u(d.fc3b)};
const O_TH: u32 = ${u(d.threshold)};
const O_DE: u32 = ${u(d.decay)};
const G: u32 = ${u(r.G)};
const RES: u32 = ${u(r.RES)};
const X: u32 = ${u(r.X)};
const Y: u32 = ${u(r.Y)};
const DY: u32 = ${u(r.DY)};
const C1: u32 = ${u(r.C1)};
const S1: u32 = ${u(r.S1)};
const M1: u32 = ${u(r.M1)};
const S2: u32 = ${u(r.S2)};
const M2: u32 = ${u(r.M2)};
const S3: u32 = ${u(r.S3)};
const M3: u32 = ${u(r.M3)};
const RATES: u32 = ${u(r.RATES)};
const DRATES: u32 = ${u(r.DRATES)};
const DU3: u32 = ${u(r.DU3)};
const DU2: u32 = ${u(r.DU2)};
const DU1: u32 = ${u(r.DU1)};
const DC1: u32 = ${u(r.DC1)};
const THP: u32 = ${u(r.THP)};
const DEP: u32 = ${u(r.DEP)};
const SLOPE: f32 = 25.0;
const INV_SQRT2: f32 = 0.7071067811865476;
const INV_SQRT_2PI: f32 = 0.3989422804014327;

fn pu(i: u32) -> u32 { return U.w[i / 4u][i % 4u]; }
fn pf(i: u32) -> f32 { return bitcast<f32>(pu(i)); }

var<workgroup> red: array<f32, ${WORKGROUP}>;

/** Sum over the workgroup (tree order, the same on every run). Call from uniform control flow. */
fn wgSum(v: f32, l: u32) -> f32 {
  red[l] = v;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s = s / 2u) {
    if (l < s) { red[l] = red[l] + red[l + s]; }
    workgroupBarrier();
  }
  let total = red[0];
  workgroupBarrier();
  return total;
}

/** erf(x) ≈ x·P(x²)/Q(x²) on [−4, 4] (Eigen/XLA's rational approximation, as the simd kernel). */
fn erfApprox(x0: f32) -> f32 {
  let x = clamp(x0, -4.0, 4.0);
  let x2 = x * x;
  var p = x2 * -2.72614225801306e-10 + 2.77068142495902e-8;
  p = x2 * p + -2.10102402082508e-6;
  p = x2 * p + -5.69250639462346e-5;
  p = x2 * p + -7.34990630326855e-4;
  p = x2 * p + -2.95459980854025e-3;
  p = x2 * p + -1.60960333262415e-2;
  p = x * p;
  var q = x2 * -1.45660718464996e-5 + -2.13374055278905e-4;
  q = x2 * q + -1.68282697438203e-3;
  q = x2 * q + -7.37332916720468e-3;
  q = x2 * q + -1.42647390514189e-2;
  return p / q;
}

/** Inverted dropout, identical to random.ts's dropoutMask: element i uses splitmix32's (i+1)-th draw. */
fn dropKeep(state: u32, i: u32, threshold: u32, keep: f32) -> f32 {
  if (threshold == 0u) { return 1.0; }
  var z = state + (i + 1u) * 0x9e3779b9u;
  z = (z ^ (z >> 16u)) * 0x21f0aaadu;
  z = (z ^ (z >> 15u)) * 0x735a2d97u;
  z = z ^ (z >> 15u);
  return select(keep, 0.0, z < threshold);
}

${half ? mixedSource(half) : FP32_GEMM}// ---- LayerNorm (eps 1e-5, biased variance) + exact-erf GELU (+ dropout), one workgroup per row.
// h holds the pre-norm values and receives x̂; rstd[r] is kept; out = GELU(n)·mask; gg = GELU′(n).
@compute @workgroup_size(${WORKGROUP})
fn lnGelu(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let N = pu(0u); let hOff = pu(1u); let gainOff = pu(2u); let betaOff = pu(3u);
  let rstdOff = pu(4u); let outOff = pu(5u); let ggOff = pu(6u);
  let state = pu(7u); let threshold = pu(8u); let keep = pf(9u);
  let r = wid.x;
  let l = lid.x;
  let base = r * N;
  let invN = 1.0 / f32(N);
  var s = 0.0;
  for (var j = l; j < N; j = j + WG) { s = s + A[hOff + base + j]; }
  let mean = wgSum(s, l) * invN;
  var q = 0.0;
  for (var j = l; j < N; j = j + WG) {
    let d = A[hOff + base + j] - mean;
    q = q + d * d;
  }
  let rs = 1.0 / sqrt(wgSum(q, l) * invN + 1e-5);
  if (l == 0u) { A[rstdOff + r] = rs; }
  for (var j = l; j < N; j = j + WG) {
    let xhat = (A[hOff + base + j] - mean) * rs;
    A[hOff + base + j] = xhat;
    let n = xhat * A[gainOff + j] + A[betaOff + j];
    let cdf = (erfApprox(n * INV_SQRT2) + 1.0) * 0.5;
    A[outOff + base + j] = n * cdf * dropKeep(state, base + j, threshold, keep);
    if (ggOff != NONE) {
      let pdf = exp(n * n * -0.5) * INV_SQRT_2PI;
      A[ggOff + base + j] = n * pdf + cdf;
    }
  }
}

// Backward of lnGelu: d = dL/d(out) → out = dL/dh; dn (= dL/dn) is kept for the gain/bias gradients.
@compute @workgroup_size(${WORKGROUP})
fn lnGeluBack(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let N = pu(0u); let dOff = pu(1u); let xhOff = pu(2u); let ggOff = pu(3u); let rstdOff = pu(4u);
  let gainOff = pu(5u); let dnOff = pu(6u); let outOff = pu(7u);
  let state = pu(8u); let threshold = pu(9u); let keep = pf(10u);
  let r = wid.x;
  let l = lid.x;
  let base = r * N;
  let invN = 1.0 / f32(N);
  var sD = 0.0;
  var sDX = 0.0;
  for (var j = l; j < N; j = j + WG) {
    let dOut = A[dOff + base + j] * dropKeep(state, base + j, threshold, keep);
    let dn = dOut * A[ggOff + base + j];
    A[dnOff + base + j] = dn;
    let dx = dn * A[gainOff + j];
    sD = sD + dx;
    sDX = dx * A[xhOff + base + j] + sDX;
  }
  let meanD = wgSum(sD, l) * invN;
  let meanDX = wgSum(sDX, l) * invN;
  let rs = A[rstdOff + r];
  for (var j = l; j < N; j = j + WG) {
    let dx = A[dnOff + base + j] * A[gainOff + j];
    A[outOff + base + j] = rs * ((dx - meanD) - A[xhOff + base + j] * meanDX);
  }
}

// LayerNorm gain and bias gradients: Σ over rows (in row order) of dn·x̂ and dn, one thread per column.
@compute @workgroup_size(${WORKGROUP})
fn lnParamGrads(@builtin(global_invocation_id) gid: vec3u) {
  let rows = pu(0u); let N = pu(1u); let dnOff = pu(2u); let xhOff = pu(3u); let gainOut = pu(4u); let betaOut = pu(5u);
  let j = gid.x;
  if (j >= N) { return; }
  var g = 0.0;
  var b = 0.0;
  for (var r = 0u; r < rows; r = r + 1u) {
    let dn = A[dnOff + r * N + j];
    g = dn * A[xhOff + r * N + j] + g;
    b = b + dn;
  }
  A[gainOut + j] = g;
  A[betaOut + j] = b;
}

// dst[j] = Σ_r src[r·N + j] over R rows, in row order.
@compute @workgroup_size(${WORKGROUP})
fn colsum(@builtin(global_invocation_id) gid: vec3u) {
  let R = pu(0u); let N = pu(1u); let src = pu(2u); let dst = pu(3u);
  let j = gid.x;
  if (j >= N) { return; }
  var s = 0.0;
  for (var r = 0u; r < R; r = r + 1u) { s = s + A[src + r * N + j]; }
  A[dst + j] = s;
}

// Σ (y − x)²/n into RES[0]; with grad, DY = (y − x)·(2/n). One workgroup.
@compute @workgroup_size(${WORKGROUP})
fn reconstruction(@builtin(local_invocation_id) lid: vec3u) {
  let n = pu(0u); let grad = pu(1u); let scale = pf(2u);
  let l = lid.x;
  var s = 0.0;
  for (var i = l; i < n; i = i + WG) {
    let d = A[Y + i] - A[X + i];
    s = s + d * d;
    if (grad != 0u) { A[DY + i] = ${scaled('d * scale')}; }
  }
  let total = wgSum(s, l);
  if (l == 0u) { A[RES] = total / f32(n); }
}

fn spike(m: f32, th: f32, smoothStep: u32) -> f32 {
  if (smoothStep != 0u) {
    let z = m - th;
    return z / (abs(z) * SLOPE + 1.0);
  }
  return select(0.0, 1.0, m > th);
}

var<workgroup> sp1: array<f32, ${d.S}>;
var<workgroup> sp2: array<f32, ${d.S}>;

// The spiking forward of one row per workgroup, all three layers and T steps fused:
// m += u; s = [m > θ]; m = m·(1 − s)·decay. Inactive inputs are skipped, as the simd kernel does.
// C1 = fc1(x) comes from a GEMM. With keep, spikes and membranes go to S1..M3 (step-major rows).
@compute @workgroup_size(${WORKGROUP})
fn spikeForward(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let rows = pu(0u); let keep = pu(1u); let smoothStep = pu(2u);
  let r = wid.x;
  let l = lid.x;
  let th = A[O_TH];
  let dec = A[O_DE];
  var carry1: array<f32, US>;
  var carry2: array<f32, US>;
  var carry3: array<f32, UF>;
  var rate: array<f32, UF>;
  for (var t = 0u; t < T; t = t + 1u) {
    let at = t * rows + r;
    for (var k = 0u; k < US; k = k + 1u) {
      let j = l + k * WG;
      if (j < S) {
        let m = carry1[k] + A[C1 + r * S + j];
        let s = spike(m, th, smoothStep);
        if (keep != 0u) { A[S1 + at * S + j] = s; A[M1 + at * S + j] = m; }
        carry1[k] = m * (1.0 - s) * dec;
        sp1[j] = s;
      }
    }
    workgroupBarrier();
${spikingLayerForward('US', 'S', 'O_FC2B', 'sp1', 'O_FC2W', 'carry2', 'S2', 'M2', 'sp2[j] = s;')}    workgroupBarrier();
${spikingLayerForward('UF', 'F', 'O_FC3B', 'sp2', 'O_FC3W', 'carry3', 'S3', 'M3', 'rate[k] = rate[k] + s;')}    workgroupBarrier();
  }
  for (var k = 0u; k < UF; k = k + 1u) {
    let j = l + k * WG;
    if (j < F) { A[RATES + r * F + j] = rate[k] / f32(T); }
  }
}

// spikeLoss = var(rates) (unbiased, all elements) + |mean − 0.5| into RES[1]; with grad,
// DRATES = weight·d spikeLoss/d rates / T (what reaches each step's output spikes). One workgroup.
@compute @workgroup_size(${WORKGROUP})
fn spikeLoss(@builtin(local_invocation_id) lid: vec3u) {
  let n = pu(0u); let grad = pu(1u); let weight = pf(2u);
  let l = lid.x;
  var s = 0.0;
  for (var i = l; i < n; i = i + WG) { s = s + A[RATES + i]; }
  let mean = wgSum(s, l) / f32(n);
  var q = 0.0;
  for (var i = l; i < n; i = i + WG) {
    let d = A[RATES + i] - mean;
    q = q + d * d;
  }
  let squares = wgSum(q, l);
  // One element has no unbiased variance: JS reports NaN then (WGSL has no NaN constant).
  let variance = squares / f32(max(n, 2u) - 1u);
  let offset = mean - 0.5;
  if (l == 0u) { A[RES + 1u] = variance + abs(offset); }
  if (grad != 0u) {
    let sgn = sign(offset);
    for (var i = l; i < n; i = i + WG) {
      let d = weight * ((2.0 * (A[RATES + i] - mean)) / f32(n - 1u) + sgn / f32(n));
      A[DRATES + i] = ${scaled('d / f32(T)')};
    }
  }
}

/** One step back through m_t → (s_t, carry_t): returns dL/dm_t; dθ and d(decay) are accumulated. */
struct LifBack { du: f32, dTh: f32, dDe: f32 }
fn lifBack(mIn: f32, s: f32, gIn: f32, carry: f32, last: bool, th: f32, dec: f32) -> LifBack {
  var g = gIn;
  var dm = 0.0;
  var dd = 0.0;
  if (!last) {
    let keepv = 1.0 - s;
    let drm = carry * mIn;
    g = g - drm * dec;
    dm = carry * keepv * dec;
    dd = drm * keepv;
  }
  let a = abs(mIn - th) * SLOPE + 1.0;
  let sg = g / (a * a);
  return LifBack(dm + sg, sg, dd);
}

// BPTT through the three spiking layers for one row per workgroup (surrogate ds/dm =
// 1/(1 + 25|m − θ|)², through the reset term too). Writes DU3, DU2, DU1 (step-major rows), DC1 =
// Σ_t DU1, and this row's Σ dL/dθ (negated later) and Σ dL/d(decay) into THP[r], DEP[r].
@compute @workgroup_size(${WORKGROUP})
fn spikeBackward(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let rows = pu(0u);
  let r = wid.x;
  let l = lid.x;
  let th = A[O_TH];
  let dec = A[O_DE];
  var dTh = 0.0;
  var dDe = 0.0;
  for (var k = 0u; k < UF; k = k + 1u) {
    let j = l + k * WG;
    if (j < F) {
      let g = A[DRATES + r * F + j];
      var carry = 0.0;
      for (var t1 = T; t1 > 0u; t1 = t1 - 1u) {
        let at = ((t1 - 1u) * rows + r) * F + j;
        let b = lifBack(A[M3 + at], A[S3 + at], g, carry, t1 == T, th, dec);
        dTh = dTh + b.dTh;
        dDe = dDe + b.dDe;
        carry = b.du;
        A[DU3 + at] = carry;
      }
    }
  }
  storageBarrier();
${hiddenLayerBack('F', 'DU3', 'O_FC3W', 'M2', 'S2', 'DU2', '')}  storageBarrier();
${hiddenLayerBack('S', 'DU2', 'O_FC2W', 'M1', 'S1', 'DU1', `      // fc1's input is the same every step: dc1 = Σ_t du1_t (in step order).
      var c = 0.0;
      for (var t = 0u; t < T; t = t + 1u) { c = c + A[DU1 + (t * rows + r) * S + j]; }
      A[DC1 + r * S + j] = c;
`)}  let rowTh = wgSum(dTh, l);
  let rowDe = wgSum(dDe, l);
  if (l == 0u) {
    A[THP + r] = rowTh;
    A[DEP + r] = rowDe;
  }
}

// The threshold and decay gradients: Σ over rows of the per-row sums. One workgroup.
@compute @workgroup_size(${WORKGROUP})
fn spikeScalars(@builtin(local_invocation_id) lid: vec3u) {
  let rows = pu(0u);
  let l = lid.x;
  var th = 0.0;
  var de = 0.0;
  for (var r = l; r < rows; r = r + WG) {
    th = th + A[THP + r];
    de = de + A[DEP + r];
  }
  let sumTh = wgSum(th, l);
  let sumDe = wgSum(de, l);
  if (l == 0u) {
    A[G + O_TH] = -sumTh;
    A[G + O_DE] = sumDe;
  }
}

${half ? MIXED_ADAMW : FP32_ADAMW}`;
}
