import { it } from 'vitest';
import { createEngine, SMALL_MODEL } from '../helpers/engine';
import { Rng } from '../../src-main/engine/random';
import type { TfjsKernel } from '../../src-main/engine/tfjs-kernel';

function loss64(x: Float32Array, y: Float32Array, r: Float32Array): number {
  let mse = 0; for (let i = 0; i < x.length; i++) mse += (y[i]! - x[i]!) ** 2; mse /= x.length;
  let mean = 0; for (const v of r) mean += v; mean /= r.length;
  let v2 = 0; for (const v of r) v2 += (v - mean) ** 2; v2 /= r.length - 1;
  return mse + 0.1 * (v2 + Math.abs(mean - 0.5));
}
const F = 6, S = 5, T = 4;
function margins(p: Float32Array, layout: any, x: Float32Array, rows: number) {
  const P = (n: string) => { const e = layout.byName.get(n); return p.subarray(e.offset, e.offset + e.size); };
  const th = P('spike_network.threshold')[0]!, dec = P('spike_network.decay')[0]!;
  const lin = (W: Float32Array, b: Float32Array, v: number[], out: number, inn: number) => Array.from({ length: out }, (_, o) => { let s = b[o]!; for (let i = 0; i < inn; i++) s += W[o * inn + i]! * v[i]!; return s; });
  let min = Infinity; const zs: number[] = [];
  for (let r = 0; r < rows; r++) {
    const xr = Array.from(x.subarray(r * F, r * F + F));
    const c1 = lin(P('spike_network.fc1.weight'), P('spike_network.fc1.bias'), xr, S, F);
    let r1 = new Array(S).fill(0), r2 = new Array(S).fill(0), r3 = new Array(F).fill(0);
    const fire = (m: number[]) => m.map((v) => { const z = v - th; min = Math.min(min, Math.abs(z)); zs.push(z); return z / (1 + 25 * Math.abs(z)); });
    for (let t = 0; t < T; t++) {
      const m1 = c1.map((c, i) => c + r1[i]); const s1 = fire(m1); r1 = m1.map((m, i) => m * (1 - s1[i]!) * dec);
      const m2 = lin(P('spike_network.fc2.weight'), P('spike_network.fc2.bias'), s1, S, S).map((u, i) => u + r2[i]); const s2 = fire(m2); r2 = m2.map((m, i) => m * (1 - s2[i]!) * dec);
      const m3 = lin(P('spike_network.fc3.weight'), P('spike_network.fc3.bias'), s2, F, S).map((u, i) => u + r3[i]); const s3 = fire(m3); r3 = m3.map((m, i) => m * (1 - s3[i]!) * dec);
    }
  }
  return { min, zmin: Math.min(...zs), zmax: Math.max(...zs) };
}
it('fd', async () => {
  const e = await createEngine({ model: { ...SMALL_MODEL, dropout: 0 } });
  const k = e.kernel as TfjsKernel; k.spikeForward = 'smooth';
  const x = new Rng(7).fillNormal(new Float32Array(30), 1);
  const p0 = k.getParameters();
  const REG = process.env.REG ?? 'a';
  const set = (n: string, f: (v: number, i: number) => number) => { const en = e.layout.byName.get(n)!; for (let i = 0; i < en.size; i++) p0[en.offset + i] = f(p0[en.offset + i]!, i); };
  const rng = new Rng(99);
  if (REG === 'b') {
    set('spike_network.threshold', () => 0);
    set('spike_network.decay', () => 0.5);
    set('spike_network.fc1.weight', () => rng.uniform(-0.002, 0.002));
    set('spike_network.fc1.bias', () => rng.uniform(0.04, 0.06));
    set('spike_network.fc2.weight', () => rng.uniform(0.2, 0.6));
    set('spike_network.fc2.bias', () => 0.01);
    set('spike_network.fc3.weight', () => rng.uniform(0.2, 0.6));
    set('spike_network.fc3.bias', () => 0.01);
  }
  if (REG === 'a') {
    set('spike_network.threshold', () => 0);
    set('spike_network.fc1.weight', () => rng.uniform(-0.1, 0.1));
    set('spike_network.fc1.bias', () => rng.uniform(0.5, 0.7));
    set('spike_network.fc2.weight', () => rng.uniform(1, 3));
    set('spike_network.fc2.bias', () => rng.uniform(0.1, 0.3));
    set('spike_network.fc3.weight', () => rng.uniform(1, 3));
    set('spike_network.fc3.bias', () => rng.uniform(0.1, 0.3));
  }
  console.log(margins(p0, e.layout, x, 5));
  k.setParameters(p0);
  k.computeGradients(x, 5, 0); const g = k.readGradients();
  const L = (p: Float32Array) => { k.setParameters(p); const f = k.forward(x, 5); return loss64(x, f.fieldOutput, f.spikeRates); };
  for (const en of e.layout.entries) {
    const i = en.offset + (en.size > 3 ? 3 : 0);
    const row: string[] = [];
    for (const h of [3e-2, 1e-2, 3e-3, 1e-3]) {
        const pp = Float32Array.from(p0); pp[i] = p0[i]! + h; const hp = pp[i]! - p0[i]!; const lp = L(pp);
        pp[i] = p0[i]! - h; const hm = p0[i]! - pp[i]!; const lm = L(pp);
        const fd = (lp - lm) / (hp + hm);
        row.push(`${h}:${((fd - g[i]!) / Math.abs(g[i]!)).toExponential(1)}`);
    }
    console.log(en.name.padEnd(34), g[i]!.toExponential(3), row.join(' '));
  }
  e.dispose();
});
