/**
 * Where everything lives in the WebGPU kernel's arena (one f32 storage buffer), as float offsets:
 * parameters, Adam moments and gradients in layout order first, then the activations of up to
 * `capacity` rows. Spiking buffers are step-major: step t of row r is row t·rows + r.
 */
export interface Regions {
  P: number;
  MOM: number;
  VEL: number;
  G: number;
  RES: number;
  X: number;
  Y: number;
  DY: number;
  XH1: number;
  GG1: number;
  R1: number;
  D1: number;
  XH2: number;
  GG2: number;
  R2: number;
  A2: number;
  XH3: number;
  GG3: number;
  R3: number;
  D3: number;
  BA: number;
  DH: number;
  DN: number;
  C1: number;
  S1: number;
  M1: number;
  S2: number;
  M2: number;
  S3: number;
  M3: number;
  RATES: number;
  DRATES: number;
  DU3: number;
  DU2: number;
  DU1: number;
  DC1: number;
  THP: number;
  DEP: number;
  /** Floats in all. */
  total: number;
}

/** Regions start at multiples of 64 floats (256 bytes): aligned for copies and for the GPU's caches. */
const ALIGN = 64;

export function planRegions(sizes: { F: number; H: number; S: number; T: number; parameters: number; capacity: number }): Regions {
  const { F, H, S, T, parameters, capacity: B } = sizes;
  const H2 = 2 * H;
  const TB = T * B;
  let cursor = 0;
  const region = (floats: number): number => {
    const at = cursor;
    cursor += Math.ceil(Math.max(floats, 1) / ALIGN) * ALIGN;
    return at;
  };
  const r: Omit<Regions, 'total'> = {
    P: region(parameters),
    MOM: region(parameters),
    VEL: region(parameters),
    G: region(parameters),
    RES: region(8),
    X: region(B * F),
    Y: region(B * F),
    DY: region(B * F),
    XH1: region(B * H),
    GG1: region(B * H),
    R1: region(B),
    D1: region(B * H),
    XH2: region(B * H2),
    GG2: region(B * H2),
    R2: region(B),
    A2: region(B * H2),
    XH3: region(B * H),
    GG3: region(B * H),
    R3: region(B),
    D3: region(B * H),
    BA: region(B * H2),
    DH: region(B * H2),
    DN: region(B * H2),
    C1: region(B * S),
    S1: region(TB * S),
    M1: region(TB * S),
    S2: region(TB * S),
    M2: region(TB * S),
    S3: region(TB * F),
    M3: region(TB * F),
    RATES: region(B * F),
    DRATES: region(B * F),
    DU3: region(TB * F),
    DU2: region(TB * S),
    DU1: region(TB * S),
    DC1: region(B * S),
    THP: region(B),
    DEP: region(B),
  };
  return { ...r, total: cursor };
}
