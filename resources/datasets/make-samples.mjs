// Regenerates sample-numeric.csv: `node resources/datasets/make-samples.mjs`. Plain Node, no
// dependencies. Deterministic: an integer RNG seeded with a constant and fixed 4-decimal
// formatting, so a rerun under Node reproduces the committed file byte for byte.
import { writeFileSync } from 'node:fs';

const ROWS = 1000;
const COLUMNS = 100;
const SEED = 20240611;
const NOISE_STD = 0.05;
/** Cycles across the 100 columns for each pattern; each row is one pattern plus a weaker second one. */
const PATTERN_CYCLES = [1, 2, 3, 5];

/** splitmix32, the same generator as src-main/engine/random.ts. */
function rng(seed) {
  let state = seed >>> 0;
  const nextUint32 = () => {
    state = (state + 0x9e3779b9) >>> 0;
    let z = state;
    z = Math.imul(z ^ (z >>> 16), 0x21f0aaad);
    z = Math.imul(z ^ (z >>> 15), 0x735a2d97);
    return (z ^ (z >>> 15)) >>> 0;
  };
  const next = () => nextUint32() / 4294967296;
  const normal = () => {
    let u = next();
    while (u <= Number.EPSILON) u = next();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * next());
  };
  return { next, normal, pick: (n) => nextUint32() % n };
}

const random = rng(SEED);
const lines = [Array.from({ length: COLUMNS }, (_, j) => `f${j}`).join(',')];
for (let row = 0; row < ROWS; row++) {
  const main = PATTERN_CYCLES[random.pick(PATTERN_CYCLES.length)];
  const second = PATTERN_CYCLES[random.pick(PATTERN_CYCLES.length)];
  const phase = 2 * Math.PI * random.next();
  const secondPhase = 2 * Math.PI * random.next();
  const amplitude = 0.2 + 0.15 * random.next();
  const cells = [];
  for (let j = 0; j < COLUMNS; j++) {
    const x = (2 * Math.PI * j) / COLUMNS;
    // Centred on 0.5 so values stay in about [0, 1] and every cell is "0.dddd" (keeps the file small).
    const value =
      0.5 +
      amplitude * Math.sin(main * x + phase) +
      0.1 * Math.sin(second * x + secondPhase) +
      NOISE_STD * random.normal();
    cells.push(value.toFixed(4));
  }
  lines.push(cells.join(','));
}

const out = new URL('./sample-numeric.csv', import.meta.url);
writeFileSync(out, lines.join('\n') + '\n');
console.log(`wrote ${out.pathname}: ${ROWS} rows × ${COLUMNS} columns`);
