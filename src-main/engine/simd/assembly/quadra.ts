// The Quadra Matrix model (DESIGN.md §4) as one fused WebAssembly SIMD kernel, in AssemblyScript.
//
// JS (src-main/engine/simd/simd-kernel.ts) calls configure() once, grows the memory to the size it
// returns, writes parameters and batches straight into linear memory, and calls one export per
// batch. Parameters, Adam moments and gradients are flat f32 arrays in the checkpoint's tensor
// order (src-main/engine/layout.ts), so a checkpoint, the all-reduce and a tfjs model see one layout.
//
// Model widths F, H, S must be multiples of 4 (JS checks; the backend is skipped otherwise).
// Rows (the batch) may be anything from 1 to the configured capacity.
//
// Notes from the prototype that shaped this file:
// - SIMD constants are loaded from a table in memory at the start of each function: the optimiser
//   otherwise rematerialises v128.const inside loops, and V8 rebuilds them every iteration.
// - GEMMs use register tiles that fit 16 SIMD registers (4×8) with the weight-panel loop outermost;
//   each panel is packed contiguously first.
// - Transposes work in 4×4 blocks along 16-column strips (power-of-two strides thrash cache sets).
// - Spikes are 0/1: the spiking layers add the weight rows of active inputs instead of multiplying.

// ---- configuration (set by configure) -------------------------------------------------------
let F: i32 = 0;
let H: i32 = 0;
let H2: i32 = 0;
let S: i32 = 0;
let T: i32 = 0;
let CAP: i32 = 0;
let NP: i32 = 0;
let FIELD_COUNT: i32 = 0;

// Parameter offsets, in floats, in checkpoint order.
let oW0: i32 = 0; let oB0: i32 = 0; let oG1: i32 = 0; let oBe1: i32 = 0;
let oW4: i32 = 0; let oB4: i32 = 0; let oG5: i32 = 0; let oBe5: i32 = 0;
let oWd0: i32 = 0; let oBd0: i32 = 0; let oGd1: i32 = 0; let oBed1: i32 = 0;
let oWd4: i32 = 0; let oBd4: i32 = 0;
let oF1w: i32 = 0; let oF1b: i32 = 0; let oF2w: i32 = 0; let oF2b: i32 = 0; let oF3w: i32 = 0; let oF3b: i32 = 0;
let oTh: i32 = 0; let oDe: i32 = 0;

// Regions (byte addresses).
let CONST: usize = 0;
let SHUF: usize = 0;
let RES: usize = 0;
let P: usize = 0; let MOM: usize = 0; let VEL: usize = 0; let G: usize = 0;
let WT0: usize = 0; let WT4: usize = 0; let WTd0: usize = 0; let WTd4: usize = 0;
let WTf1: usize = 0; let WTf2: usize = 0; let WTf3: usize = 0;
// Weights the backward multiplies input gradients by, kept packed for the GEMM (as packB would).
let WP4: usize = 0; let WPd0: usize = 0; let WPd4: usize = 0; let WPf2: usize = 0; let WPf3: usize = 0;
// The all-reduce's table: (gradient address, weight) per rank, for reduceAdamw.
let TABLE: usize = 0;
let X: usize = 0; let Y: usize = 0; let DY: usize = 0;
let XH1: usize = 0; let GG1: usize = 0; let R1: usize = 0; let MK1: usize = 0; let D1: usize = 0;
let XH2: usize = 0; let GG2: usize = 0; let R2: usize = 0; let A2: usize = 0;
let XH3: usize = 0; let GG3: usize = 0; let R3: usize = 0; let MK3: usize = 0; let D3: usize = 0;
let BA: usize = 0; let BB: usize = 0;
let C1: usize = 0; let S1: usize = 0; let M1: usize = 0; let U2: usize = 0;
let S2: usize = 0; let M2: usize = 0; let U3: usize = 0; let S3: usize = 0; let M3: usize = 0;
let RATES: usize = 0; let DRATES: usize = 0;
let DU3: usize = 0; let DS2: usize = 0; let DS1: usize = 0; let DC1: usize = 0;
let IDX: usize = 0;
let IDX2: usize = 0;
let CARRY: usize = 0;
let RED: usize = 0;
let ACC: usize = 0;
let PACK: usize = 0;

// Constant table slots (one v128 each).
const K_ZERO = 0; const K_ONE = 1; const K_HALF = 2; const K_INV_SQRT2 = 3; const K_FOUR = 4; const K_NEG_FOUR = 5;
const K_A1 = 6; const K_A3 = 7; const K_A5 = 8; const K_A7 = 9; const K_A9 = 10; const K_A11 = 11; const K_A13 = 12;
const K_B0 = 13; const K_B2 = 14; const K_B4 = 15; const K_B6 = 16; const K_B8 = 17;
const K_LOG2E = 18; const K_LN2_HI = 19; const K_LN2_LO = 20; const K_EXP_MIN = 21;
const K_E0 = 22; const K_E1 = 23; const K_E2 = 24; const K_E3 = 25; const K_E4 = 26; const K_E5 = 27;
const K_127 = 28; const K_INV_SQRT_2PI = 29; const K_NEG_HALF = 30; const K_SLOPE = 31; const K_ABS_MASK = 32;
const K_LANE_1234 = 33; const K_MIX1 = 34; const K_MIX2 = 35; const K_LANE_0123 = 36;
const K_COUNT = 37;

const SURROGATE_SLOPE: f32 = 25.0;
const LN_EPS: f32 = 1e-5;

@inline function kc(slot: i32): v128 {
  return v128.load(CONST + (<usize>slot << 4));
}

@inline function madd(a: v128, b: v128, c: v128): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) return f32x4.relaxed_madd(a, b, c);
  return f32x4.add(f32x4.mul(a, b), c);
}

@inline function hsum(v: v128): f32 {
  return f32x4.extract_lane(v, 0) + f32x4.extract_lane(v, 1) + f32x4.extract_lane(v, 2) + f32x4.extract_lane(v, 3);
}

@inline function align64(p: usize): usize {
  return (p + 63) & ~(<usize>63);
}

let cursor: usize = 0;
function region(floats: i32): usize {
  const at = cursor;
  cursor = align64(cursor + (<usize>floats << 2));
  return at;
}

/** Widths and the parameter offsets (floats, checkpoint order) for F, H, S and T steps. */
function setWidths(fieldSize: i32, hidden: i32, spiking: i32, steps: i32): void {
  F = fieldSize; H = hidden; H2 = 2 * hidden; S = spiking; T = steps;
  let o = 0;
  oW0 = o; o += H * F; oB0 = o; o += H; oG1 = o; o += H; oBe1 = o; o += H;
  oW4 = o; o += H2 * H; oB4 = o; o += H2; oG5 = o; o += H2; oBe5 = o; o += H2;
  oWd0 = o; o += H * H2; oBd0 = o; o += H; oGd1 = o; o += H; oBed1 = o; o += H;
  oWd4 = o; o += F * H; oBd4 = o; o += F;
  FIELD_COUNT = o;
  oF1w = o; o += S * F; oF1b = o; o += S; oF2w = o; o += S * S; oF2b = o; o += S;
  oF3w = o; o += F * S; oF3b = o; o += F; oTh = o; o += 1; oDe = o; o += 1;
  NP = o;
}

/**
 * The regions every replica reads alike: parameters, Adam moments and the Wᵀ copies. With one
 * shared memory (several worker threads) they exist once, at the same address for every worker.
 */
function placeShared(base: usize): usize {
  cursor = align64(base);
  P = region(NP); MOM = region(NP); VEL = region(NP);
  WT0 = region(F * H); WT4 = region(H * H2); WTd0 = region(H2 * H); WTd4 = region(H * F);
  WTf1 = region(F * S); WTf2 = region(S * S); WTf3 = region(S * F);
  WP4 = region(H2 * H); WPd0 = region(H * H2); WPd4 = region(F * H); WPf2 = region(S * S); WPf3 = region(F * S);
  return cursor;
}

/**
 * One replica's own regions for up to `capacity` rows: gradients first (at `base` itself, where
 * the other workers of a shared memory read them), then constants and every activation.
 */
function placeOwn(base: usize, capacity: i32): usize {
  CAP = capacity;
  cursor = align64(base);
  G = region(NP);
  CONST = region(K_COUNT * 4);
  SHUF = region(64);
  RES = region(16);
  TABLE = region(2 * MAX_RANKS);
  // All-reduce scratch: a peer's gradients (copied in by JS) and the running weighted sum.
  RED = region(NP); ACC = region(NP);
  IDX = region(max(S, F) + 4);
  IDX2 = region(max(S, F) + 4);
  CARRY = region(2 * S + 2 * F + 16);
  // B of the largest GEMM, packed panel-major (see packB).
  // Every B that gemm() packs: activations [rows or T·rows, width] for weight gradients, and the
  // weights W [out, in] for input gradients (and the smooth test path's dense spiking layers).
  PACK = region(max(max(T * capacity * max(S, F), capacity * max(H2, F)), max(max(H * H2, F * H), max(S * S, F * S))) + 16);
  const B = capacity;
  const TB = T * capacity;
  X = region(B * F); Y = region(B * F); DY = region(B * F);
  XH1 = region(B * H); GG1 = region(B * H); R1 = region(B); MK1 = region(B * H); D1 = region(B * H);
  XH2 = region(B * H2); GG2 = region(B * H2); R2 = region(B); A2 = region(B * H2);
  XH3 = region(B * H); GG3 = region(B * H); R3 = region(B); MK3 = region(B * H); D3 = region(B * H);
  BA = region(B * H2); BB = region(B * H2);
  C1 = region(B * S); S1 = region(TB * S); M1 = region(TB * S); U2 = region(TB * S);
  S2 = region(TB * S); M2 = region(TB * S); U3 = region(TB * F); S3 = region(TB * F); M3 = region(TB * F);
  RATES = region(B * F); DRATES = region(B * F);
  DU3 = region(TB * F); DS2 = region(TB * S); DS1 = region(TB * S); DC1 = region(B * S);
  return cursor;
}

/**
 * Lays out every region for widths F, H, S, T steps and up to `capacity` rows, starting at `base`
 * (a 64-byte aligned address above the module's own data). Returns the end address: JS grows the
 * memory to at least that before calling anything else. The shared regions and the gradients come
 * first, so a later configure with a larger capacity keeps them where they are.
 */
export function configure(fieldSize: i32, hidden: i32, spiking: i32, steps: i32, capacity: i32, base: usize): usize {
  setWidths(fieldSize, hidden, spiking, steps);
  return placeOwn(placeShared(base), capacity);
}

let SHARED_END: usize = 0;

/** Ranks the all-reduce table holds. */
const MAX_RANKS = 256;
export function reduceTablePtr(): usize { return TABLE; }

/**
 * configure() for one worker of a memory shared by several (the shared-memory build, whose memory
 * is imported): parameters, moments and Wᵀ at `sharedBase` (the same for every worker), this
 * worker's own regions at `ownBase`. Returns the end of the own regions; sharedEnd() tells where
 * the shared ones end.
 */
export function configureShared(fieldSize: i32, hidden: i32, spiking: i32, steps: i32, capacity: i32, sharedBase: usize, ownBase: usize): usize {
  setWidths(fieldSize, hidden, spiking, steps);
  SHARED_END = placeShared(sharedBase);
  return placeOwn(ownBase, capacity);
}

export function sharedEnd(): usize { return SHARED_END; }

function put(slot: i32, v: f32): void {
  v128.store(CONST + (<usize>slot << 4), f32x4.splat(v));
}

/** Fills the constant table; call once after the memory has grown to configure()'s end. */
export function writeConstants(): void {
  const c = CONST;
  put(K_ZERO, 0); put(K_ONE, 1); put(K_HALF, 0.5); put(K_INV_SQRT2, 0.7071067811865476); put(K_FOUR, 4); put(K_NEG_FOUR, -4);
  // erf(x) ≈ x·P(x²)/Q(x²) on [−4, 4] (the rational approximation of Eigen/XLA; |error| ≲ 3e-7).
  put(K_A1, -1.60960333262415e-2); put(K_A3, -2.95459980854025e-3); put(K_A5, -7.34990630326855e-4);
  put(K_A7, -5.69250639462346e-5); put(K_A9, -2.10102402082508e-6); put(K_A11, 2.77068142495902e-8);
  put(K_A13, -2.72614225801306e-10);
  put(K_B0, -1.42647390514189e-2); put(K_B2, -7.37332916720468e-3); put(K_B4, -1.68282697438203e-3);
  put(K_B6, -2.13374055278905e-4); put(K_B8, -1.45660718464996e-5);
  // exp (Cephes expf): 2^n · p(r), r = x − n·ln2 split in two parts.
  put(K_LOG2E, 1.44269504088896341); put(K_LN2_HI, 0.693359375); put(K_LN2_LO, -2.12194440e-4); put(K_EXP_MIN, -87.0);
  put(K_E0, 1.9875691500e-4); put(K_E1, 1.3981999507e-3); put(K_E2, 8.3334519073e-3);
  put(K_E3, 4.1665795894e-2); put(K_E4, 1.6666665459e-1); put(K_E5, 5.0000001201e-1);
  v128.store(c + (<usize>K_127 << 4), i32x4.splat(127));
  put(K_INV_SQRT_2PI, 0.3989422804014327); put(K_NEG_HALF, -0.5); put(K_SLOPE, SURROGATE_SLOPE);
  v128.store(c + (<usize>K_ABS_MASK << 4), i32x4.splat(0x7fffffff));
  v128.store(c + (<usize>K_LANE_1234 << 4), i32x4(1, 2, 3, 4));
  v128.store(c + (<usize>K_MIX1 << 4), i32x4.splat(0x21f0aaad));
  v128.store(c + (<usize>K_MIX2 << 4), i32x4.splat(0x735a2d97));
  v128.store(c + (<usize>K_LANE_0123 << 4), i32x4(0, 1, 2, 3));
  // SHUF[mask]: byte indices gathering the i32 lanes whose bit is set in `mask` to the front.
  for (let mask = 0; mask < 16; mask++) {
    let out = 0;
    for (let lane = 0; lane < 4; lane++) {
      if (mask & (1 << lane)) {
        for (let b = 0; b < 4; b++) store<u8>(SHUF + (<usize>mask << 4) + <usize>(out * 4 + b), <u8>(lane * 4 + b));
        out++;
      }
    }
    for (let b = out * 4; b < 16; b++) store<u8>(SHUF + (<usize>mask << 4) + <usize>b, 0x80);
  }
}

// Addresses for JS.
export function parameterCount(): i32 { return NP; }
export function fieldCount(): i32 { return FIELD_COUNT; }
export function paramsPtr(): usize { return P; }
export function momentsPtr(): usize { return MOM; }
export function velocitiesPtr(): usize { return VEL; }
export function gradsPtr(): usize { return G; }
export function inputPtr(): usize { return X; }
export function outputPtr(): usize { return Y; }
export function ratesPtr(): usize { return RATES; }
export function resultPtr(): usize { return RES; }
export function heapBase(): usize { return __heap_base; }
export function reduceScratchPtr(): usize { return RED; }

/**
 * One term of the gradient all-reduce Σ_r w_r·g_r over [start, end) (multiples of 4, or end = the
 * parameter count), in rank order so every replica rounds alike:
 * mode 0: ACC = w·src; 1: ACC += w·src; 2: G = ACC + w·src (last term); 3: G = w·src (one term).
 * `src` is G itself (this worker's own term) or the scratch holding a peer's gradients.
 */
export function reduceTerm(src: usize, w: f32, mode: i32, start: i32, end: i32): void {
  const wv = f32x4.splat(w);
  const n4 = start + ((end - start) & ~3);
  const dst = mode >= 2 ? G : ACC;
  for (let i = start; i < n4; i += 4) {
    const o = <usize>i << 2;
    const t = f32x4.mul(wv, v128.load(src + o));
    v128.store(dst + o, mode == 1 || mode == 2 ? f32x4.add(v128.load(ACC + o), t) : t);
  }
  for (let i = n4; i < end; i++) {
    const o = <usize>i << 2;
    const t = w * load<f32>(src + o);
    store<f32>(dst + o, mode == 1 || mode == 2 ? load<f32>(ACC + o) + t : t);
  }
}

// ---- GEMM -----------------------------------------------------------------------------------
// C[M,N] = A·B (+ bias) (or C += A·B with acc), B row-major [K,N] with row stride ldb floats,
// C with row stride ldc floats. A(i,k) is at a + 4·(i·ars + k·aks): A row-major is (lda, 1);
// A read transposed (Aᵀ·B for weight gradients) is (1, lda). N must be a multiple of 4.

function gemm(M: i32, N: i32, K: i32, a: usize, ars: i32, aks: i32, b: usize, ldb: i32, c: usize, ldc: i32, bias: usize, acc: i32): void {
  if (M > 4) {
    // Pack all of B panel-major in one sequential pass: rows of B at a power-of-two stride would
    // otherwise map to a few cache sets and evict each other panel after panel.
    packB(K, N, b, ldb, PACK);
    gemmPacked(M, N, K, a, ars, aks, PACK, c, ldc, bias, acc);
    return;
  }
  const ar = <usize>ars << 2;
  const ak = <usize>aks << 2;
  const lb = <usize>ldb << 2;
  const lc = <usize>ldc << 2;
  let j = 0;
  for (; j + 8 <= N; j += 8) {
    const jb = <usize>j << 2;
    for (let i = 0; i < M; i++) mk1x8(K, a + <usize>i * ar, ak, b + jb, lb, c + <usize>i * lc + jb, bias ? bias + jb : 0, acc);
  }
  for (; j < N; j += 4) {
    const jb = <usize>j << 2;
    for (let i = 0; i < M; i++) mk1x4(K, a + <usize>i * ar, ak, b + jb, lb, c + <usize>i * lc + jb, bias ? bias + jb : 0, acc);
  }
}

/**
 * B [K, N] (row stride ldb floats) → panel-major: panel p (columns 8p..8p+7) is K×8 contiguous
 * floats at out + p·K·32 bytes; a last 4-column panel (N ≡ 4 mod 8) is K×4 after them.
 */
function packB(K: i32, N: i32, b: usize, ldb: i32, out: usize): void {
  packRows(K, N, b, ldb, out, 0, K);
}

/** C = A·B (+ bias / + C) with B already panel-major (packB's layout, or transposePacked's). */
function gemmPacked(M: i32, N: i32, K: i32, a: usize, ars: i32, aks: i32, bp: usize, c: usize, ldc: i32, bias: usize, acc: i32): void {
  const ar = <usize>ars << 2;
  const ak = <usize>aks << 2;
  const lc = <usize>ldc << 2;
  const M4 = M & ~3;
  const panels = N >> 3;
  const panelBytes = <usize>K << 5;
  for (let p = 0; p < panels; p++) {
    const jb = <usize>p << 5;
    const bj = bp + <usize>p * panelBytes;
    const cj = c + jb;
    const biasj = bias ? bias + jb : 0;
    let i = 0;
    for (; i < M4; i += 4) mk4x8(K, a + <usize>i * ar, ar, ak, bj, 32, cj + <usize>i * lc, lc, biasj, acc);
    for (; i < M; i++) mk1x8(K, a + <usize>i * ar, ak, bj, 32, cj + <usize>i * lc, biasj, acc);
  }
  if (N & 4) {
    const jb = <usize>panels << 5;
    const bj = bp + <usize>panels * panelBytes;
    const cj = c + jb;
    const biasj = bias ? bias + jb : 0;
    let i = 0;
    for (; i < M4; i += 4) mk4x4(K, a + <usize>i * ar, ar, ak, bj, 16, cj + <usize>i * lc, lc, biasj, acc);
    for (; i < M; i++) mk1x4(K, a + <usize>i * ar, ak, bj, 16, cj + <usize>i * lc, biasj, acc);
  }
}

// 4×8 tiles: 8 accumulators, 2 weight vectors and a broadcast fit x64's 16 SIMD registers (4×16
// tiles spill there and run at ~60% of this speed; measured 54 vs 33 GFLOP/s).
function mk4x8(K: i32, a: usize, ar: usize, ak: usize, b: usize, lb: usize, c: usize, lc: usize, bias: usize, acc: i32): void {
  let c00: v128, c01: v128, c10: v128, c11: v128, c20: v128, c21: v128, c30: v128, c31: v128;
  const c1 = c + lc;
  const c2 = c1 + lc;
  const c3 = c2 + lc;
  if (acc) {
    c00 = v128.load(c); c01 = v128.load(c, 16);
    c10 = v128.load(c1); c11 = v128.load(c1, 16);
    c20 = v128.load(c2); c21 = v128.load(c2, 16);
    c30 = v128.load(c3); c31 = v128.load(c3, 16);
  } else if (bias) {
    c00 = v128.load(bias); c01 = v128.load(bias, 16);
    c10 = c00; c11 = c01; c20 = c00; c21 = c01; c30 = c00; c31 = c01;
  } else {
    c00 = f32x4.splat(0); c01 = c00; c10 = c00; c11 = c00; c20 = c00; c21 = c00; c30 = c00; c31 = c00;
  }
  let a0 = a;
  let a1 = a + ar;
  let a2 = a1 + ar;
  let a3 = a2 + ar;
  for (let k = 0; k < K; k++) {
    const w0 = v128.load(b);
    const w1 = v128.load(b, 16);
    let x = v128.load32_splat(a0);
    c00 = madd(x, w0, c00); c01 = madd(x, w1, c01);
    x = v128.load32_splat(a1);
    c10 = madd(x, w0, c10); c11 = madd(x, w1, c11);
    x = v128.load32_splat(a2);
    c20 = madd(x, w0, c20); c21 = madd(x, w1, c21);
    x = v128.load32_splat(a3);
    c30 = madd(x, w0, c30); c31 = madd(x, w1, c31);
    b += lb; a0 += ak; a1 += ak; a2 += ak; a3 += ak;
  }
  v128.store(c, c00); v128.store(c, c01, 16);
  v128.store(c1, c10); v128.store(c1, c11, 16);
  v128.store(c2, c20); v128.store(c2, c21, 16);
  v128.store(c3, c30); v128.store(c3, c31, 16);
}

function mk1x8(K: i32, a: usize, ak: usize, b: usize, lb: usize, c: usize, bias: usize, acc: i32): void {
  let c0: v128, c1: v128;
  if (acc) {
    c0 = v128.load(c); c1 = v128.load(c, 16);
  } else if (bias) {
    c0 = v128.load(bias); c1 = v128.load(bias, 16);
  } else {
    c0 = f32x4.splat(0); c1 = c0;
  }
  for (let k = 0; k < K; k++) {
    const x = v128.load32_splat(a);
    c0 = madd(x, v128.load(b), c0); c1 = madd(x, v128.load(b, 16), c1);
    a += ak; b += lb;
  }
  v128.store(c, c0); v128.store(c, c1, 16);
}

function mk4x4(K: i32, a: usize, ar: usize, ak: usize, b: usize, lb: usize, c: usize, lc: usize, bias: usize, acc: i32): void {
  let c0: v128, c1: v128, c2: v128, c3: v128;
  if (acc) {
    c0 = v128.load(c); c1 = v128.load(c + lc); c2 = v128.load(c + 2 * lc); c3 = v128.load(c + 3 * lc);
  } else if (bias) {
    c0 = v128.load(bias); c1 = c0; c2 = c0; c3 = c0;
  } else {
    c0 = f32x4.splat(0); c1 = c0; c2 = c0; c3 = c0;
  }
  let a0 = a;
  let a1 = a + ar;
  let a2 = a1 + ar;
  let a3 = a2 + ar;
  for (let k = 0; k < K; k++) {
    const w = v128.load(b);
    c0 = madd(v128.load32_splat(a0), w, c0);
    c1 = madd(v128.load32_splat(a1), w, c1);
    c2 = madd(v128.load32_splat(a2), w, c2);
    c3 = madd(v128.load32_splat(a3), w, c3);
    b += lb; a0 += ak; a1 += ak; a2 += ak; a3 += ak;
  }
  v128.store(c, c0); v128.store(c + lc, c1); v128.store(c + 2 * lc, c2); v128.store(c + 3 * lc, c3);
}

function mk1x4(K: i32, a: usize, ak: usize, b: usize, lb: usize, c: usize, bias: usize, acc: i32): void {
  let c0: v128 = acc ? v128.load(c) : bias ? v128.load(bias) : f32x4.splat(0);
  for (let k = 0; k < K; k++) {
    c0 = madd(v128.load32_splat(a), v128.load(b), c0);
    a += ak; b += lb;
  }
  v128.store(c, c0);
}

/** One 4×4 block: rows at `src` (stride `ss` bytes) become columns at `dst` (stride `ds` bytes). */
@inline function transpose4x4(src: usize, ss: usize, dst: usize, ds: usize): void {
  const r0 = v128.load(src);
  const r1 = v128.load(src + ss);
  const r2 = v128.load(src + 2 * ss);
  const r3 = v128.load(src + 3 * ss);
  const t0 = v128.shuffle<f32>(r0, r1, 0, 4, 1, 5);
  const t1 = v128.shuffle<f32>(r2, r3, 0, 4, 1, 5);
  const t2 = v128.shuffle<f32>(r0, r1, 2, 6, 3, 7);
  const t3 = v128.shuffle<f32>(r2, r3, 2, 6, 3, 7);
  v128.store(dst, v128.shuffle<f32>(t0, t1, 0, 1, 4, 5));
  v128.store(dst + ds, v128.shuffle<f32>(t0, t1, 2, 3, 6, 7));
  v128.store(dst + 2 * ds, v128.shuffle<f32>(t2, t3, 0, 1, 4, 5));
  v128.store(dst + 3 * ds, v128.shuffle<f32>(t2, t3, 2, 3, 6, 7));
}

/** out[C, R] = in[R, C]ᵀ for input rows [r0, r1), in 4×4 blocks along 16-column strips. R, C, r0, r1 multiples of 4. */
function transpose(R: i32, C: i32, src: usize, dst: usize, r0: i32, r1: i32): void {
  const rs = <usize>C << 2;
  const ds = <usize>R << 2;
  for (let j0 = 0; j0 < C; j0 += 16) {
    const j1 = min(j0 + 16, C);
    for (let i = r0; i < r1; i += 4) {
      for (let j = j0; j < j1; j += 4) {
        transpose4x4(src + <usize>i * rs + (<usize>j << 2), rs, dst + <usize>j * ds + (<usize>i << 2), ds);
      }
    }
  }
}

/**
 * Wᵀ for a Linear weight W [N, K] (PyTorch's [out, in]) straight into packB's panel-major layout:
 * panel p holds W rows 8p..8p+7 as K×8 (packed[p][k][c] = W[8p + c, k]). N, K multiples of 4.
 * Only the panels of rows [r0, r1) are written (r0 a multiple of 8; r1 one too, or N).
 */
function transposePacked(N: i32, K: i32, w: usize, dst: usize, r0: i32, r1: i32): void {
  const rs = <usize>K << 2;
  const panelBytes = <usize>K << 5;
  for (let p = r0 >> 3; (p << 3) < r1; p++) {
    // 8 rows, or 4 in a last half panel (N a multiple of 4 but not of 8).
    const width = min(8, N - (p << 3));
    const outStride: usize = width == 8 ? 32 : 16;
    const base = dst + <usize>p * panelBytes;
    for (let half = 0; half < width; half += 4) {
      const src = w + <usize>(8 * p + half) * rs;
      for (let k = 0; k < K; k += 4) {
        transpose4x4(src + (<usize>k << 2), rs, base + <usize>k * outStride + (<usize>half << 2), outStride);
      }
    }
  }
}

/** packB for rows [r0, r1) of B [K, N] (row stride ldb): a packed weight copy is refreshed a range at a time. */
function packRows(K: i32, N: i32, b: usize, ldb: i32, out: usize, r0: i32, r1: i32): void {
  const panels = N >> 3;
  const panelBytes = <usize>K << 5;
  const tail = out + <usize>panels * panelBytes;
  const lb = <usize>ldb << 2;
  for (let k = r0; k < r1; k++) {
    const row = b + <usize>k * lb;
    let o = out + (<usize>k << 5);
    for (let p = 0; p < panels; p++) {
      const src = row + (<usize>p << 5);
      v128.store(o, v128.load(src));
      v128.store(o, v128.load(src, 16), 16);
      o += panelBytes;
    }
    if (N & 4) v128.store(tail + (<usize>k << 4), v128.load(row + (<usize>panels << 5)));
  }
}

/** C[M, N] = A[M, K]·W[K, N] for a weight the backward keeps packed (wp): no packing per call. */
function gemmW(M: i32, N: i32, K: i32, a: usize, w: usize, wp: usize, c: usize): void {
  if (M > 4) gemmPacked(M, N, K, a, K, 1, wp, c, N, 0, 0);
  else gemm(M, N, K, a, K, 1, w, N, c, N, 0, 0);
}

/**
 * The Wᵀ copy of weight matrix `m` for its rows [r0, r1) (and the packed copy the backward
 * multiplies by, for all but the first layer of each network): 0–3 the field network's Linear layers
 * (encoder.0, encoder.4, decoder.0, decoder.4), 4–6 the spiking ones (fc1, fc2, fc3). Rows come in
 * units of 8 for 0–4 (packed panels) and 4 for 5–6.
 */
export function refreshTransposeRows(m: i32, r0: i32, r1: i32): void {
  if (m == 0) transposePacked(H, F, P + (<usize>oW0 << 2), WT0, r0, r1);
  else if (m == 1) {
    transposePacked(H2, H, P + (<usize>oW4 << 2), WT4, r0, r1);
    packRows(H2, H, P + (<usize>oW4 << 2), H, WP4, r0, r1);
  } else if (m == 2) {
    transposePacked(H, H2, P + (<usize>oWd0 << 2), WTd0, r0, r1);
    packRows(H, H2, P + (<usize>oWd0 << 2), H2, WPd0, r0, r1);
  } else if (m == 3) {
    transposePacked(F, H, P + (<usize>oWd4 << 2), WTd4, r0, r1);
    packRows(F, H, P + (<usize>oWd4 << 2), H, WPd4, r0, r1);
  } else if (m == 4) transposePacked(S, F, P + (<usize>oF1w << 2), WTf1, r0, r1);
  else if (m == 5) {
    transpose(S, S, P + (<usize>oF2w << 2), WTf2, r0, r1);
    packRows(S, S, P + (<usize>oF2w << 2), S, WPf2, r0, r1);
  } else if (m == 6) {
    transpose(F, S, P + (<usize>oF3w << 2), WTf3, r0, r1);
    packRows(F, S, P + (<usize>oF3w << 2), S, WPf3, r0, r1);
  }
}

/** Refreshes the Wᵀ copies: the field weights, and the spiking ones with `spiking`. */
export function refreshTransposes(spiking: i32): void {
  refreshTransposeRows(0, 0, H);
  refreshTransposeRows(1, 0, H2);
  refreshTransposeRows(2, 0, H);
  refreshTransposeRows(3, 0, F);
  if (spiking) {
    refreshTransposeRows(4, 0, S);
    refreshTransposeRows(5, 0, S);
    refreshTransposeRows(6, 0, F);
  }
}

/** dst[N] (+)= Σ_r src[r, :] over `rows` rows of stride N. */
function colsum(rows: i32, N: i32, src: usize, dst: usize, acc: i32): void {
  const rb = <usize>N << 2;
  for (let j = 0; j < N; j += 4) {
    const jb = <usize>j << 2;
    let s = acc ? v128.load(dst + jb) : f32x4.splat(0);
    let p = src + jb;
    for (let r = 0; r < rows; r++) {
      s = f32x4.add(s, v128.load(p));
      p += rb;
    }
    v128.store(dst + jb, s);
  }
}

// ---- elementwise math -----------------------------------------------------------------------

/** erf(x), rational approximation on [−4, 4] (outside, ±1 in float32). */
@inline function erf4(x0: v128, a1: v128, a3: v128, a5: v128, a7: v128, a9: v128, a11: v128, a13: v128, b0: v128, b2: v128, b4: v128, b6: v128, b8: v128, four: v128, negFour: v128): v128 {
  const x = f32x4.max(f32x4.min(x0, four), negFour);
  const x2 = f32x4.mul(x, x);
  let p = madd(x2, a13, a11);
  p = madd(x2, p, a9);
  p = madd(x2, p, a7);
  p = madd(x2, p, a5);
  p = madd(x2, p, a3);
  p = madd(x2, p, a1);
  p = f32x4.mul(x, p);
  let q = madd(x2, b8, b6);
  q = madd(x2, q, b4);
  q = madd(x2, q, b2);
  q = madd(x2, q, b0);
  return f32x4.div(p, q);
}

/** exp(x) for x ≤ 0 (Cephes expf; below −87 it flushes towards 0). */
@inline function expNeg4(x0: v128): v128 {
  const x = f32x4.max(x0, kc(K_EXP_MIN));
  const n = f32x4.floor(madd(x, kc(K_LOG2E), kc(K_HALF)));
  let r = f32x4.sub(x, f32x4.mul(n, kc(K_LN2_HI)));
  r = f32x4.sub(r, f32x4.mul(n, kc(K_LN2_LO)));
  let p = madd(kc(K_E0), r, kc(K_E1));
  p = madd(p, r, kc(K_E2));
  p = madd(p, r, kc(K_E3));
  p = madd(p, r, kc(K_E4));
  p = madd(p, r, kc(K_E5));
  const r2 = f32x4.mul(r, r);
  p = f32x4.add(madd(p, r2, r), kc(K_ONE));
  const scale = i32x4.shl(i32x4.add(i32x4.trunc_sat_f32x4_s(n), kc(K_127)), 23);
  return f32x4.mul(p, scale);
}

/**
 * Fused LayerNorm (eps 1e-5, biased variance) + exact-erf GELU (+ dropout) over `rows` rows of
 * width N. `h` holds the pre-norm values and receives x̂ in place; rstd[r] is kept; `out` gets
 * GELU(n)·mask. With `gg`, GELU′(n) = Φ(n) + n·φ(n) is stored for the backward pass.
 */
function layerNormGelu(rows: i32, N: i32, h: usize, gain: usize, beta: usize, rstd: usize, out: usize, gg: usize, mask: usize): void {
  const a1 = kc(K_A1); const a3 = kc(K_A3); const a5 = kc(K_A5); const a7 = kc(K_A7);
  const a9 = kc(K_A9); const a11 = kc(K_A11); const a13 = kc(K_A13);
  const b0 = kc(K_B0); const b2 = kc(K_B2); const b4 = kc(K_B4); const b6 = kc(K_B6); const b8 = kc(K_B8);
  const four = kc(K_FOUR); const negFour = kc(K_NEG_FOUR);
  const half = kc(K_HALF); const one = kc(K_ONE); const invSqrt2 = kc(K_INV_SQRT2);
  const invSqrt2Pi = kc(K_INV_SQRT_2PI); const negHalf = kc(K_NEG_HALF);
  const invN: f32 = 1.0 / <f32>N;
  const rb = <usize>N << 2;
  for (let r = 0; r < rows; r++) {
    const hr = h + <usize>r * rb;
    let s = f32x4.splat(0);
    for (let j = 0; j < N; j += 4) s = f32x4.add(s, v128.load(hr + (<usize>j << 2)));
    const mean = hsum(s) * invN;
    const meanV = f32x4.splat(mean);
    let q = f32x4.splat(0);
    for (let j = 0; j < N; j += 4) {
      const d = f32x4.sub(v128.load(hr + (<usize>j << 2)), meanV);
      q = madd(d, d, q);
    }
    const rs: f32 = 1.0 / Mathf.sqrt(hsum(q) * invN + LN_EPS);
    store<f32>(rstd + (<usize>r << 2), rs);
    const rsV = f32x4.splat(rs);
    const outR = out + <usize>r * rb;
    for (let j = 0; j < N; j += 4) {
      const jb = <usize>j << 2;
      const xhat = f32x4.mul(f32x4.sub(v128.load(hr + jb), meanV), rsV);
      v128.store(hr + jb, xhat);
      const n = madd(xhat, v128.load(gain + jb), v128.load(beta + jb));
      const e = erf4(f32x4.mul(n, invSqrt2), a1, a3, a5, a7, a9, a11, a13, b0, b2, b4, b6, b8, four, negFour);
      const cdf = f32x4.mul(f32x4.add(e, one), half);
      let o = f32x4.mul(n, cdf);
      if (mask) o = f32x4.mul(o, v128.load(mask + <usize>r * rb + jb));
      v128.store(outR + jb, o);
      if (gg) {
        const pdf = f32x4.mul(expNeg4(f32x4.mul(f32x4.mul(n, n), negHalf)), invSqrt2Pi);
        v128.store(gg + <usize>r * rb + jb, madd(n, pdf, cdf));
      }
    }
  }
}

/**
 * Backward of layerNormGelu: `d` holds dL/d(out) and receives dL/dh in place. Gain and bias
 * gradients are accumulated into dGain and dBeta (zeroed by the caller).
 */
function layerNormGeluBackward(rows: i32, N: i32, d: usize, xh: usize, gg: usize, rstd: usize, mask: usize, gain: usize, dGain: usize, dBeta: usize): void {
  const invN: f32 = 1.0 / <f32>N;
  const rb = <usize>N << 2;
  for (let r = 0; r < rows; r++) {
    const off = <usize>r * rb;
    const dr = d + off;
    const xr = xh + off;
    const gr = gg + off;
    let sD = f32x4.splat(0);
    let sDX = f32x4.splat(0);
    for (let j = 0; j < N; j += 4) {
      const jb = <usize>j << 2;
      let dOut = v128.load(dr + jb);
      if (mask) dOut = f32x4.mul(dOut, v128.load(mask + off + jb));
      const dn = f32x4.mul(dOut, v128.load(gr + jb));
      const x = v128.load(xr + jb);
      v128.store(dGain + jb, madd(dn, x, v128.load(dGain + jb)));
      v128.store(dBeta + jb, f32x4.add(v128.load(dBeta + jb), dn));
      const dx = f32x4.mul(dn, v128.load(gain + jb));
      v128.store(dr + jb, dx);
      sD = f32x4.add(sD, dx);
      sDX = madd(dx, x, sDX);
    }
    const meanD = f32x4.splat(hsum(sD) * invN);
    const meanDX = f32x4.splat(hsum(sDX) * invN);
    const rs = f32x4.splat(load<f32>(rstd + (<usize>r << 2)));
    for (let j = 0; j < N; j += 4) {
      const jb = <usize>j << 2;
      const dx = v128.load(dr + jb);
      const x = v128.load(xr + jb);
      v128.store(dr + jb, f32x4.mul(rs, f32x4.sub(f32x4.sub(dx, meanD), f32x4.mul(x, meanDX))));
    }
  }
}

/**
 * Inverted-dropout mask, identical to random.ts's dropoutMask(new Rng(state), count, p): element i
 * is 0 when splitmix32's (i+1)-th output is below `threshold` (= ⌊p·2³²⌋), else `keep` (= 1/(1−p)).
 * splitmix32's state after i+1 draws is state + (i+1)·golden, so four lanes run side by side.
 */
function dropoutMask(count: i32, state: u32, threshold: u32, keep: f32, out: usize): void {
  const golden: u32 = 0x9e3779b9;
  let st = i32x4.add(i32x4.splat(<i32>state), i32x4.mul(kc(K_LANE_1234), i32x4.splat(<i32>golden)));
  const step = i32x4.splat(<i32>(golden * 4));
  const mix1 = kc(K_MIX1);
  const mix2 = kc(K_MIX2);
  const thr = i32x4.splat(<i32>threshold);
  const keepV = f32x4.splat(keep);
  const n4 = count & ~3;
  let i = 0;
  for (; i < n4; i += 4) {
    let z = st;
    z = i32x4.mul(v128.xor(z, i32x4.shr_u(z, 16)), mix1);
    z = i32x4.mul(v128.xor(z, i32x4.shr_u(z, 15)), mix2);
    z = v128.xor(z, i32x4.shr_u(z, 15));
    v128.store(out + (<usize>i << 2), v128.andnot(keepV, i32x4.lt_u(z, thr)));
    st = i32x4.add(st, step);
  }
  let s: u32 = state + <u32>i * golden;
  for (; i < count; i++) {
    s += golden;
    let z = s;
    z = (z ^ (z >>> 16)) * 0x21f0aaad;
    z = (z ^ (z >>> 15)) * 0x735a2d97;
    z = z ^ (z >>> 15);
    store<f32>(out + (<usize>i << 2), z < threshold ? 0 : keep);
  }
}

// ---- spiking network ------------------------------------------------------------------------

/**
 * LIF over T steps: m_t = r_{t−1} + u_t; s_t = [m_t > θ]; r_t = m_t·(1 − s_t)·decay. `u` is one
 * step (constant input, layer 1) or T steps. Keeps the membranes with `mem` (≠ 0). `smooth`
 * replaces the step by z/(1 + 25|z|) (finite-difference tests only).
 */
function lifForward(size: i32, u: usize, constant: i32, spikes: usize, mem: usize, th: f32, dec: f32, smooth: i32): void {
  const one = kc(K_ONE);
  const slope = kc(K_SLOPE);
  const absMask = kc(K_ABS_MASK);
  const thV = f32x4.splat(th);
  const decV = f32x4.splat(dec);
  const bytes = <usize>size << 2;
  // The carry lives in the spikes buffer of the next step until that step overwrites it: instead,
  // use the membrane-free formulation with the carry kept in `spikes` + stride? Simpler: a carry
  // region — the last step's spike slot is free until the last step, so the carry starts there.
  for (let i = 0; i < size; i += 4) {
    const ib = <usize>i << 2;
    let carry = f32x4.splat(0);
    for (let t = 0; t < T; t++) {
      const tb = <usize>t * bytes;
      const m = f32x4.add(carry, v128.load(u + (constant ? 0 : tb) + ib));
      if (mem) v128.store(mem + tb + ib, m);
      if (smooth) {
        const z = f32x4.sub(m, thV);
        const s = f32x4.div(z, madd(v128.and(z, absMask), slope, one));
        v128.store(spikes + tb + ib, s);
        carry = f32x4.mul(f32x4.mul(m, f32x4.sub(one, s)), decV);
      } else {
        const fire = f32x4.gt(m, thV);
        v128.store(spikes + tb + ib, v128.and(fire, one));
        carry = f32x4.mul(v128.andnot(m, fire), decV);
      }
    }
  }
}

/**
 * Backpropagation through the T steps with the surrogate ds/dm = 1/(1 + 25|m − θ|)²; the gradient
 * flows through the reset term too. `ds` is dL/ds_t from downstream (T steps, or one step used at
 * every step with `constant`); `du` receives dL/du_t (may alias `ds` when not constant). Adds
 * dθ and d(decay) into RES[2], RES[3] (f64).
 */
function lifBackward(size: i32, spikes: usize, mem: usize, ds: usize, constant: i32, du: usize, th: f32, dec: f32): void {
  const one = kc(K_ONE);
  const slope = kc(K_SLOPE);
  const absMask = kc(K_ABS_MASK);
  const thV = f32x4.splat(th);
  const decV = f32x4.splat(dec);
  const bytes = <usize>size << 2;
  let dTh0 = f64x2.splat(0);
  let dTh1 = f64x2.splat(0);
  let dDe0 = f64x2.splat(0);
  let dDe1 = f64x2.splat(0);
  for (let i = 0; i < size; i += 4) {
    const ib = <usize>i << 2;
    let carry = f32x4.splat(0);
    for (let t = T - 1; t >= 0; t--) {
      const tb = <usize>t * bytes;
      const m = v128.load(mem + tb + ib);
      const s = v128.load(spikes + tb + ib);
      let g = v128.load(ds + (constant ? 0 : tb) + ib);
      let dm = f32x4.splat(0);
      if (t < T - 1) {
        const keep = f32x4.sub(one, s);
        const drm = f32x4.mul(carry, m);
        g = f32x4.sub(g, f32x4.mul(drm, decV));
        dm = f32x4.mul(f32x4.mul(carry, keep), decV);
        const dd = f32x4.mul(drm, keep);
        dDe0 = f64x2.add(dDe0, f64x2.promote_low_f32x4(dd));
        dDe1 = f64x2.add(dDe1, f64x2.promote_low_f32x4(v128.shuffle<f32>(dd, dd, 2, 3, 0, 1)));
      }
      const a = madd(v128.and(f32x4.sub(m, thV), absMask), slope, one);
      const sg = f32x4.div(g, f32x4.mul(a, a));
      dTh0 = f64x2.add(dTh0, f64x2.promote_low_f32x4(sg));
      dTh1 = f64x2.add(dTh1, f64x2.promote_low_f32x4(v128.shuffle<f32>(sg, sg, 2, 3, 0, 1)));
      carry = f32x4.add(dm, sg);
      v128.store(du + tb + ib, carry);
    }
  }
  const dTh = f64x2.add(dTh0, dTh1);
  const dDe = f64x2.add(dDe0, dDe1);
  store<f64>(RES + 16, load<f64>(RES + 16) - f64x2.extract_lane(dTh, 0) - f64x2.extract_lane(dTh, 1));
  store<f64>(RES + 24, load<f64>(RES + 24) + f64x2.extract_lane(dDe, 0) + f64x2.extract_lane(dDe, 1));
}

/**
 * One spiking layer's LIF step for 4 units, fused with the search for its spikes: m = carry + u;
 * s = [m > θ]; carry = m·(1 − s)·decay. Active units are appended to `idx` as byte offsets of
 * their row in the next layer's Wᵀ (rowBytes apart). Returns the new count. With `sp`/`mp` ≠ 0 the
 * spikes and membranes are stored (for the backward pass).
 */
@inline function lifStep4(u: v128, carryAt: usize, thV: v128, decV: v128, one: v128, sp: usize, mp: usize, unit: i32, rowBytes: i32, idx: usize, count: i32): i32 {
  const m = f32x4.add(v128.load(carryAt), u);
  const fire = f32x4.gt(m, thV);
  if (sp) {
    v128.store(sp, v128.and(fire, one));
    v128.store(mp, m);
  }
  v128.store(carryAt, f32x4.mul(v128.andnot(m, fire), decV));
  // Branch-free: a table shuffle moves the active lanes' row offsets to the front, and all four
  // are stored; the count advances by the number of spikes (the rest is overwritten next time).
  const bits = i32x4.bitmask(fire);
  const offsets = i32x4.add(i32x4.splat(unit * rowBytes), i32x4.mul(kc(K_LANE_0123), i32x4.splat(rowBytes)));
  v128.store(idx + (<usize>count << 2), i8x16.swizzle(offsets, v128.load(SHUF + (<usize>bits << 4))));
  return count + <i32>popcnt(bits);
}

/**
 * u = bias + Σ_{active k} Wᵀ[k, :] for N outputs, fused with the next layer's LIF step. Returns the
 * next layer's active count (its indices go to `outIdx` as offsets of rows `nextRowBytes` long).
 * With `last`, the spikes are summed into `rateAcc` instead (layer 3 feeds the rates).
 */
function spikeLayer(N: i32, wt: usize, bias: usize, inIdx: usize, inCount: i32, carry: usize, thV: v128, decV: v128, one: v128, sp: usize, mp: usize, outIdx: usize, nextRowBytes: i32, rateAcc: usize): i32 {
  let count = 0;
  let j = 0;
  // 32 outputs at a time: 8 accumulators, one pass over the active list per block.
  for (; j + 32 <= N; j += 32) {
    const jb = <usize>j << 2;
    const bj = bias + jb;
    let c0 = v128.load(bj); let c1 = v128.load(bj, 16); let c2 = v128.load(bj, 32); let c3 = v128.load(bj, 48);
    let c4 = v128.load(bj, 64); let c5 = v128.load(bj, 80); let c6 = v128.load(bj, 96); let c7 = v128.load(bj, 112);
    const w = wt + jb;
    for (let q = 0; q < inCount; q++) {
      const row = w + <usize>load<i32>(inIdx + (<usize>q << 2));
      c0 = f32x4.add(c0, v128.load(row)); c1 = f32x4.add(c1, v128.load(row, 16));
      c2 = f32x4.add(c2, v128.load(row, 32)); c3 = f32x4.add(c3, v128.load(row, 48));
      c4 = f32x4.add(c4, v128.load(row, 64)); c5 = f32x4.add(c5, v128.load(row, 80));
      c6 = f32x4.add(c6, v128.load(row, 96)); c7 = f32x4.add(c7, v128.load(row, 112));
    }
    const cb = carry + jb;
    const sb = sp ? sp + jb : 0;
    const mb = mp ? mp + jb : 0;
    if (rateAcc) {
      const rb = rateAcc + jb;
      lifRate4(c0, cb, thV, decV, one, sb, mb, rb);
      lifRate4(c1, cb + 16, thV, decV, one, sb ? sb + 16 : 0, mb ? mb + 16 : 0, rb + 16);
      lifRate4(c2, cb + 32, thV, decV, one, sb ? sb + 32 : 0, mb ? mb + 32 : 0, rb + 32);
      lifRate4(c3, cb + 48, thV, decV, one, sb ? sb + 48 : 0, mb ? mb + 48 : 0, rb + 48);
      lifRate4(c4, cb + 64, thV, decV, one, sb ? sb + 64 : 0, mb ? mb + 64 : 0, rb + 64);
      lifRate4(c5, cb + 80, thV, decV, one, sb ? sb + 80 : 0, mb ? mb + 80 : 0, rb + 80);
      lifRate4(c6, cb + 96, thV, decV, one, sb ? sb + 96 : 0, mb ? mb + 96 : 0, rb + 96);
      lifRate4(c7, cb + 112, thV, decV, one, sb ? sb + 112 : 0, mb ? mb + 112 : 0, rb + 112);
    } else {
      count = lifStep4(c0, cb, thV, decV, one, sb, mb, j, nextRowBytes, outIdx, count);
      count = lifStep4(c1, cb + 16, thV, decV, one, sb ? sb + 16 : 0, mb ? mb + 16 : 0, j + 4, nextRowBytes, outIdx, count);
      count = lifStep4(c2, cb + 32, thV, decV, one, sb ? sb + 32 : 0, mb ? mb + 32 : 0, j + 8, nextRowBytes, outIdx, count);
      count = lifStep4(c3, cb + 48, thV, decV, one, sb ? sb + 48 : 0, mb ? mb + 48 : 0, j + 12, nextRowBytes, outIdx, count);
      count = lifStep4(c4, cb + 64, thV, decV, one, sb ? sb + 64 : 0, mb ? mb + 64 : 0, j + 16, nextRowBytes, outIdx, count);
      count = lifStep4(c5, cb + 80, thV, decV, one, sb ? sb + 80 : 0, mb ? mb + 80 : 0, j + 20, nextRowBytes, outIdx, count);
      count = lifStep4(c6, cb + 96, thV, decV, one, sb ? sb + 96 : 0, mb ? mb + 96 : 0, j + 24, nextRowBytes, outIdx, count);
      count = lifStep4(c7, cb + 112, thV, decV, one, sb ? sb + 112 : 0, mb ? mb + 112 : 0, j + 28, nextRowBytes, outIdx, count);
    }
  }
  for (; j < N; j += 4) {
    const jb = <usize>j << 2;
    let c0 = v128.load(bias + jb);
    const w = wt + jb;
    for (let q = 0; q < inCount; q++) c0 = f32x4.add(c0, v128.load(w + <usize>load<i32>(inIdx + (<usize>q << 2))));
    if (rateAcc) lifRate4(c0, carry + jb, thV, decV, one, sp ? sp + jb : 0, mp ? mp + jb : 0, rateAcc + jb);
    else count = lifStep4(c0, carry + jb, thV, decV, one, sp ? sp + jb : 0, mp ? mp + jb : 0, j, nextRowBytes, outIdx, count);
  }
  return count;
}

/** The last layer's LIF step for 4 units: spikes are summed for the rates. */
@inline function lifRate4(u: v128, carryAt: usize, thV: v128, decV: v128, one: v128, sp: usize, mp: usize, rateAt: usize): void {
  const m = f32x4.add(v128.load(carryAt), u);
  const fire = f32x4.gt(m, thV);
  const s = v128.and(fire, one);
  if (sp) {
    v128.store(sp, s);
    v128.store(mp, m);
  }
  v128.store(carryAt, f32x4.mul(v128.andnot(m, fire), decV));
  v128.store(rateAt, f32x4.add(v128.load(rateAt), s));
}

/**
 * The spiking forward row by row, all three layers and T steps fused: each row's membranes,
 * spike lists and rate sums stay in L1, and the 0/1 spikes select weight rows instead of being
 * multiplied. Same arithmetic as the layer-by-layer path (each unit's recurrence is independent
 * of the other rows). With `keep`, spikes and membranes go to S1..M3 for the backward pass.
 */
function spikingRows(rows: i32, keep: i32): void {
  const th = load<f32>(P + (<usize>oTh << 2));
  const dec = load<f32>(P + (<usize>oDe << 2));
  const thV = f32x4.splat(th);
  const decV = f32x4.splat(dec);
  const one = kc(K_ONE);
  const invT = f32x4.splat(<f32>T);
  const carry1 = CARRY;
  const carry2 = carry1 + (<usize>S << 2);
  const carry3 = carry2 + (<usize>S << 2);
  const rateAcc = carry3 + (<usize>F << 2);
  const sRow = <usize>S << 2;
  const fRow = <usize>F << 2;
  const b2 = P + (<usize>oF2b << 2);
  const b3 = P + (<usize>oF3b << 2);
  for (let r = 0; r < rows; r++) {
    memory.fill(carry1, 0, (<usize>(2 * S + 2 * F)) << 2);
    const c1 = C1 + <usize>r * sRow;
    for (let t = 0; t < T; t++) {
      const at = <usize>(t * rows + r);
      const s1 = keep ? S1 + at * sRow : 0;
      const m1 = keep ? M1 + at * sRow : 0;
      let n1 = 0;
      for (let i = 0; i < S; i += 4) {
        const ib = <usize>i << 2;
        n1 = lifStep4(v128.load(c1 + ib), carry1 + ib, thV, decV, one, s1 ? s1 + ib : 0, m1 ? m1 + ib : 0, i, S << 2, IDX, n1);
      }
      const n2 = spikeLayer(S, WTf2, b2, IDX, n1, carry2, thV, decV, one, keep ? S2 + at * sRow : 0, keep ? M2 + at * sRow : 0, IDX2, F << 2, 0);
      spikeLayer(F, WTf3, b3, IDX2, n2, carry3, thV, decV, one, keep ? S3 + at * fRow : 0, keep ? M3 + at * fRow : 0, 0, 0, rateAcc);
    }
    const out = RATES + <usize>r * fRow;
    for (let j = 0; j < F; j += 4) {
      const jb = <usize>j << 2;
      v128.store(out + jb, f32x4.div(v128.load(rateAcc + jb), invT));
    }
  }
}

/** Spiking forward over `rows` rows; with `keep`, membranes are stored for the backward pass. */
function spikingForward(rows: i32, keep: i32, smooth: i32): void {
  if (!smooth) {
    gemmPacked(rows, S, F, X, F, 1, WTf1, C1, S, P + (<usize>oF1b << 2), 0);
    spikingRows(rows, keep);
    return;
  }
  spikingForwardSmooth(rows, keep);
}

/** The layer-by-layer spiking forward with dense matmuls, for the smooth test mode (spikes not 0/1). */
function spikingForwardSmooth(rows: i32, keep: i32): void {
  const smooth = 1;
  const th = load<f32>(P + (<usize>oTh << 2));
  const dec = load<f32>(P + (<usize>oDe << 2));
  const TB = T * rows;
  gemmPacked(rows, S, F, X, F, 1, WTf1, C1, S, P + (<usize>oF1b << 2), 0);
  lifForward(rows * S, C1, 1, S1, keep ? M1 : 0, th, dec, smooth);
  gemm(TB, S, S, S1, S, 1, WTf2, S, U2, S, P + (<usize>oF2b << 2), 0);
  lifForward(rows * S, U2, 0, S2, keep ? M2 : 0, th, dec, smooth);
  gemm(TB, F, S, S2, S, 1, WTf3, F, U3, F, P + (<usize>oF3b << 2), 0);
  lifForward(rows * F, U3, 0, S3, keep ? M3 : 0, th, dec, smooth);
  // Rates: Σ_t s3 / T (sums of 0/1 are exact; one rounding in the division, as on the host).
  const n = rows * F;
  const bytes = <usize>n << 2;
  const invT = f32x4.splat(<f32>T);
  for (let i = 0; i < n; i += 4) {
    const ib = <usize>i << 2;
    let s = f32x4.splat(0);
    for (let t = 0; t < T; t++) s = f32x4.add(s, v128.load(S3 + <usize>t * bytes + ib));
    v128.store(RATES + ib, f32x4.div(s, invT));
  }
}

/**
 * spikeLoss = var(rates) (unbiased, all elements) + |mean − 0.5| into RES[1]; with `grad`,
 * DRATES = weight·d spikeLoss/d rates / T (the gradient reaching each step's output spikes).
 */
function spikeLoss(n: i32, weight: f64, grad: i32): void {
  let sum: f64 = 0;
  for (let i = 0; i < n; i++) sum += <f64>load<f32>(RATES + (<usize>i << 2));
  const mean = sum / <f64>n;
  let sq: f64 = 0;
  for (let i = 0; i < n; i++) {
    const d = <f64>load<f32>(RATES + (<usize>i << 2)) - mean;
    sq += d * d;
  }
  const variance = n > 1 ? sq / <f64>(n - 1) : NaN;
  const offset = mean - 0.5;
  store<f64>(RES + 8, variance + Math.abs(offset));
  if (!grad) return;
  const sign: f64 = offset > 0 ? 1 : offset < 0 ? -1 : 0;
  for (let i = 0; i < n; i++) {
    const r = <f64>load<f32>(RATES + (<usize>i << 2));
    const d = <f32>(weight * ((2 * (r - mean)) / <f64>(n - 1) + sign / <f64>n));
    store<f32>(DRATES + (<usize>i << 2), d / <f32>T);
  }
}

/** BPTT through the three spiking layers; writes the spiking gradients into G. */
function spikingBackward(rows: i32): void {
  const th = load<f32>(P + (<usize>oTh << 2));
  const dec = load<f32>(P + (<usize>oDe << 2));
  const TB = T * rows;
  store<f64>(RES + 16, 0);
  store<f64>(RES + 24, 0);
  lifBackward(rows * F, S3, M3, DRATES, 1, DU3, th, dec);
  // ds2 = du3·fc3 ([TB,F]·[F,S]); dfc3 = du3ᵀ·s2; db3 = Σ du3
  gemmW(TB, S, F, DU3, P + (<usize>oF3w << 2), WPf3, DS2);
  gemm(F, S, TB, DU3, 1, F, S2, S, G + (<usize>oF3w << 2), S, 0, 0);
  colsum(TB, F, DU3, G + (<usize>oF3b << 2), 0);
  lifBackward(rows * S, S2, M2, DS2, 0, DS2, th, dec);
  gemmW(TB, S, S, DS2, P + (<usize>oF2w << 2), WPf2, DS1);
  gemm(S, S, TB, DS2, 1, S, S1, S, G + (<usize>oF2w << 2), S, 0, 0);
  colsum(TB, S, DS2, G + (<usize>oF2b << 2), 0);
  lifBackward(rows * S, S1, M1, DS1, 0, DS1, th, dec);
  // fc1's input is the same every step: dc1 = Σ_t du1_t.
  colsum(T, rows * S, DS1, DC1, 0);
  gemm(S, F, rows, DC1, 1, S, X, F, G + (<usize>oF1w << 2), F, 0, 0);
  colsum(rows, S, DC1, G + (<usize>oF1b << 2), 0);
  store<f32>(G + (<usize>oTh << 2), <f32>load<f64>(RES + 16));
  store<f32>(G + (<usize>oDe << 2), <f32>load<f64>(RES + 24));
}

// ---- field network --------------------------------------------------------------------------

@inline function pp(offset: i32): usize {
  return P + (<usize>offset << 2);
}
@inline function gp(offset: i32): usize {
  return G + (<usize>offset << 2);
}

/** Field forward over `rows` rows of X into Y; training mode stores what the backward needs. */
function fieldForward(rows: i32, train: i32): void {
  gemmPacked(rows, H, F, X, F, 1, WT0, XH1, H, pp(oB0), 0);
  layerNormGelu(rows, H, XH1, pp(oG1), pp(oBe1), R1, D1, train ? GG1 : 0, train ? MK1 : 0);
  gemmPacked(rows, H2, H, D1, H, 1, WT4, XH2, H2, pp(oB4), 0);
  layerNormGelu(rows, H2, XH2, pp(oG5), pp(oBe5), R2, A2, train ? GG2 : 0, 0);
  gemmPacked(rows, H, H2, A2, H2, 1, WTd0, XH3, H, pp(oBd0), 0);
  layerNormGelu(rows, H, XH3, pp(oGd1), pp(oBed1), R3, D3, train ? GG3 : 0, train ? MK3 : 0);
  gemmPacked(rows, F, H, D3, H, 1, WTd4, Y, F, pp(oBd4), 0);
}

/** Σ (y − x)² / n into RES[0]; with `grad`, DY = 2(y − x)/n. */
function reconstruction(rows: i32, grad: i32): void {
  const n = rows * F;
  const scale = f32x4.splat(<f32>(2.0 / <f64>n));
  let sum: f64 = 0;
  for (let i = 0; i < n; i += 4) {
    const ib = <usize>i << 2;
    const d = f32x4.sub(v128.load(Y + ib), v128.load(X + ib));
    const sq = f32x4.mul(d, d);
    sum += <f64>f32x4.extract_lane(sq, 0) + <f64>f32x4.extract_lane(sq, 1) + <f64>f32x4.extract_lane(sq, 2) + <f64>f32x4.extract_lane(sq, 3);
    if (grad) v128.store(DY + ib, f32x4.mul(d, scale));
  }
  store<f64>(RES, sum / <f64>n);
}

function zero(ptr: usize, floats: i32): void {
  memory.fill(ptr, 0, <usize>floats << 2);
}

function fieldBackward(rows: i32): void {
  // LayerNorm gain/bias gradients accumulate over rows.
  zero(gp(oG1), 2 * H); zero(gp(oG5), 2 * H2); zero(gp(oGd1), 2 * H);
  // decoder.4: dW = dyᵀ·d3, db = Σ dy, d(d3) = dy·W
  gemm(F, H, rows, DY, 1, F, D3, H, gp(oWd4), H, 0, 0);
  colsum(rows, F, DY, gp(oBd4), 0);
  gemmW(rows, H, F, DY, pp(oWd4), WPd4, BA);
  layerNormGeluBackward(rows, H, BA, XH3, GG3, R3, MK3, pp(oGd1), gp(oGd1), gp(oBed1));
  gemm(H, H2, rows, BA, 1, H, A2, H2, gp(oWd0), H2, 0, 0);
  colsum(rows, H, BA, gp(oBd0), 0);
  gemmW(rows, H2, H, BA, pp(oWd0), WPd0, BB);
  layerNormGeluBackward(rows, H2, BB, XH2, GG2, R2, 0, pp(oG5), gp(oG5), gp(oBe5));
  gemm(H2, H, rows, BB, 1, H2, D1, H, gp(oW4), H, 0, 0);
  colsum(rows, H2, BB, gp(oB4), 0);
  gemmW(rows, H, H2, BB, pp(oW4), WP4, BA);
  layerNormGeluBackward(rows, H, BA, XH1, GG1, R1, MK1, pp(oG1), gp(oG1), gp(oBe1));
  gemm(H, F, rows, BA, 1, H, X, F, gp(oW0), F, 0, 0);
  colsum(rows, H, BA, gp(oB0), 0);
}

// ---- entry points ---------------------------------------------------------------------------

/**
 * One training forward and backward on X[rows, F]. Dropout masks come from the two splitmix32
 * states (layers 1 and 3; threshold 0 turns dropout off). Gradients land in G (the spiking part
 * only with `surrogate`). RES[0] = reconstruction loss, RES[1] = spike loss (f64).
 */
export function trainStep(rows: i32, state1: u32, state3: u32, threshold: u32, keep: f32, surrogate: i32, spikeWeight: f64, smooth: i32): void {
  trainForward(rows, state1, state3, threshold, keep, surrogate, spikeWeight, smooth);
  trainBackward(rows, surrogate);
}

/** trainStep's forward half (losses into RES, DY and DRATES ready); split out so a profile can time the halves. */
export function trainForward(rows: i32, state1: u32, state3: u32, threshold: u32, keep: f32, surrogate: i32, spikeWeight: f64, smooth: i32): void {
  if (threshold) {
    dropoutMask(rows * H, state1, threshold, keep, MK1);
    dropoutMask(rows * H, state3, threshold, keep, MK3);
  } else {
    // No dropout: all-ones masks keep one code path.
    const ones = kc(K_ONE);
    const n = rows * H;
    for (let i = 0; i < n; i += 4) {
      v128.store(MK1 + (<usize>i << 2), ones);
      v128.store(MK3 + (<usize>i << 2), ones);
    }
  }
  fieldForward(rows, 1);
  reconstruction(rows, 1);
  spikingForward(rows, surrogate, smooth);
  spikeLoss(rows * F, spikeWeight, surrogate);
}

/** trainStep's backward half: the gradients into G (the spiking part only with `surrogate`). */
export function trainBackward(rows: i32, surrogate: i32): void {
  fieldBackward(rows);
  if (surrogate) spikingBackward(rows);
}

/** trainBackward in its two halves, so the field gradients can be handed on before the spiking backward runs. */
export function trainBackwardField(rows: i32): void {
  fieldBackward(rows);
}

export function trainBackwardSpiking(rows: i32): void {
  spikingBackward(rows);
}

/** Evaluation forward (no dropout, no gradients): Y, RATES, RES[0], RES[1]. */
export function forward(rows: i32, smooth: i32): void {
  fieldForward(rows, 0);
  reconstruction(rows, 0);
  spikingForward(rows, 0, smooth);
  spikeLoss(rows * F, 0, 0);
}

/**
 * The all-reduce and AdamW of [start, end) in one pass (kernels in one shared memory): the gradient
 * is Σ_r w_r·g_r over the n (address, weight) pairs in TABLE, summed in rank order exactly as
 * reduceTerm's sequence does (w_0·g_0, then + w_r·g_r), then AdamW as adamw() — the same bits,
 * without writing the sum out and reading it back. 1 − β comes from JS in double (1 − f32(0.999)
 * is not f32(0.001)), as in PyTorch and the host AdamW.
 */
export function reduceAdamw(n: i32, start: i32, end: i32, beta1: f32, oneMinusBeta1: f32, beta2: f32, oneMinusBeta2: f32, decayFactor: f32, stepSize: f32, invSqrtBc2: f32, eps: f32): void {
  const b1 = f32x4.splat(beta1);
  const c1 = f32x4.splat(oneMinusBeta1);
  const b2 = f32x4.splat(beta2);
  const c2 = f32x4.splat(oneMinusBeta2);
  const df = f32x4.splat(decayFactor);
  const ss = f32x4.splat(stepSize);
  const ib = f32x4.splat(invSqrtBc2);
  const ep = f32x4.splat(eps);
  const src0 = <usize>load<u32>(TABLE);
  const w0 = f32x4.splat(load<f32>(TABLE, 4));
  let i = start;
  for (; i + 4 <= end; i += 4) {
    const o = <usize>i << 2;
    let g = f32x4.mul(w0, v128.load(src0 + o));
    for (let r = 1; r < n; r++) {
      const t = TABLE + (<usize>r << 3);
      g = f32x4.add(g, f32x4.mul(f32x4.splat(load<f32>(t, 4)), v128.load(<usize>load<u32>(t) + o)));
    }
    const m = f32x4.add(f32x4.mul(b1, v128.load(MOM + o)), f32x4.mul(c1, g));
    const v = f32x4.add(f32x4.mul(b2, v128.load(VEL + o)), f32x4.mul(c2, f32x4.mul(g, g)));
    v128.store(MOM + o, m);
    v128.store(VEL + o, v);
    const denom = f32x4.add(f32x4.mul(f32x4.sqrt(v), ib), ep);
    v128.store(P + o, f32x4.sub(f32x4.mul(v128.load(P + o), df), f32x4.div(f32x4.mul(ss, m), denom)));
  }
  for (; i < end; i++) {
    const o = <usize>i << 2;
    let g = load<f32>(TABLE, 4) * load<f32>(src0 + o);
    for (let r = 1; r < n; r++) {
      const t = TABLE + (<usize>r << 3);
      g = g + load<f32>(t, 4) * load<f32>(<usize>load<u32>(t) + o);
    }
    const m = beta1 * load<f32>(MOM + o) + oneMinusBeta1 * g;
    const v = beta2 * load<f32>(VEL + o) + oneMinusBeta2 * g * g;
    store<f32>(MOM + o, m);
    store<f32>(VEL + o, v);
    store<f32>(P + o, load<f32>(P + o) * decayFactor - (stepSize * m) / (Mathf.sqrt(v) * invSqrtBc2 + eps));
  }
}

/**
 * AdamW (PyTorch's arithmetic in float32) on [start, end) of the flat arrays:
 * m ← β1·m + (1−β1)·g; v ← β2·v + (1−β2)·g²; p ← p·(1 − lr·wd) − (lr/bc1)·m/(√v/√bc2 + eps).
 */
export function adamw(start: i32, end: i32, beta1: f32, oneMinusBeta1: f32, beta2: f32, oneMinusBeta2: f32, decayFactor: f32, stepSize: f32, invSqrtBc2: f32, eps: f32): void {
  // This kernel's own gradients as the one term of reduceAdamw's sum: 1·g is g, bit for bit.
  store<u32>(TABLE, <u32>G);
  store<f32>(TABLE, 1.0, 4);
  reduceAdamw(1, start, end, beta1, oneMinusBeta1, beta2, oneMinusBeta2, decayFactor, stepSize, invSqrtBc2, eps);
}
