import onnxProto from 'onnx-proto';
import type { onnx as Onnx } from 'onnx-proto';
import { QuadraError } from '../../../src-shared/errors';
import { buildLayout, view, type ParamLayout } from '../layout';
import { float32ToFloat16Bits } from '../safetensors';
import type { ExportInput } from './formats';

// onnx-proto is CommonJS whose exports Node's ESM loader cannot name: take the namespace off the default.
const { onnx } = onnxProto;

/** ONNX Runtime 1.14+, TensorRT 8.6+ and onnx 1.12+ read IR 8 with opset 17 (the first with LayerNormalization). */
const IR_VERSION = 8;
const OPSET = 17;
const PRODUCER = 'quadra-workstation';
/** DESIGN.md §4. */
const LAYER_NORM_EPS = 1e-5;

const FLOAT = onnx.TensorProto.DataType.FLOAT;
const FLOAT16 = onnx.TensorProto.DataType.FLOAT16;
const ENC = 'field_network.encoder';
const DEC = 'field_network.decoder';
const SPK = 'spike_network';

type Attribute = { name: string; int: number } | { name: string; float: number };

/**
 * The eval-mode model as one ONNX file (DESIGN.md §6): input `x` [batch, F], outputs `field`
 * [batch, F] (the field network without dropout) and `spikes` [batch, F] (the spike rates), i.e.
 * what `quadra predict` computes. Standard opset-17 ops only, so ONNX Runtime, TensorRT and edge
 * runtimes load it as is; the spiking network is unrolled over its T steps with the reference's
 * float32 operations in the reference's order (tfjs-kernel.ts, lif-host.ts), so spikes match ours
 * bit for bit wherever a membrane is not within rounding of the threshold.
 * Initializers carry the checkpoint tensor names; with `fp16` they are float16 and cast to float32
 * where used (half the file; inputs, outputs and arithmetic stay float32).
 */
export function exportOnnx(input: ExportInput): Uint8Array {
  const { contents, fp16 } = input;
  const model = contents.model;
  const layout = buildLayout(model);
  if (contents.parameters.length !== layout.total) {
    throw new QuadraError(
      'SHAPE_MISMATCH',
      `ONNX export: the checkpoint holds ${contents.parameters.length} parameter values, but fieldSize ${model.fieldSize}, hiddenSize ${model.hiddenSize}, spikingHiddenSize ${model.spikingHiddenSize} need ${layout.total}`,
      { expected: layout.total, found: contents.parameters.length },
    );
  }
  const F = model.fieldSize;
  const H = model.hiddenSize;
  const S = model.spikingHiddenSize;
  const T = model.spikingSteps;
  const g = new GraphBuilder();
  const weight = addWeights(g, layout, contents.parameters, fp16);
  const one = g.constant('const.one', 1);
  const half = g.constant('const.half', 0.5);
  const invSqrt2 = g.constant('const.inv_sqrt2', Math.SQRT1_2);
  const steps = g.constant('const.spiking_steps', T);

  const linear = (x: string, prefix: string, output?: string) =>
    g.node('Gemm', [x, weight(`${prefix}.weight`), weight(`${prefix}.bias`)], [{ name: 'transB', int: 1 }], output);
  // LayerNorm then exact GELU, as tfjs-kernel.ts's layerNormGelu: n·((erf(n·(1/√2)) + 1)·0.5).
  const normGelu = (x: string, prefix: string) => {
    const n = g.node('LayerNormalization', [x, weight(`${prefix}.weight`), weight(`${prefix}.bias`)], [
      { name: 'axis', int: -1 },
      { name: 'epsilon', float: LAYER_NORM_EPS },
    ]);
    const cdf = g.node('Mul', [g.node('Add', [g.node('Erf', [g.node('Mul', [n, invSqrt2])]), one]), half]);
    return g.node('Mul', [n, cdf]);
  };

  // Field network, eval mode (the dropouts are identities).
  let h = normGelu(linear('x', `${ENC}.0`), `${ENC}.1`);
  h = normGelu(linear(h, `${ENC}.4`), `${ENC}.5`);
  h = normGelu(linear(h, `${DEC}.0`), `${DEC}.1`);
  linear(h, `${DEC}.4`, 'field');

  // Spiking network, T steps unrolled: m = r + u; s = [m > θ]; r = m·(1 − s)·decay (r = 0 before
  // the first step, and the last step's r is never read). fc1(x) is the same every step.
  const threshold = weight(`${SPK}.threshold`);
  const decay = weight(`${SPK}.decay`);
  const c1 = linear('x', `${SPK}.fc1`);
  const carries: Array<string | null> = [null, null, null];
  let sum: string | null = null;
  for (let t = 0; t < T; t++) {
    const last = t === T - 1;
    const lif = (layer: number, u: string): string => {
      const carry = carries[layer];
      const m = carry ? g.node('Add', [carry, u]) : u;
      const s = g.node('Cast', [g.node('Greater', [m, threshold])], [{ name: 'to', int: FLOAT }]);
      carries[layer] = last ? null : g.node('Mul', [g.node('Mul', [m, g.node('Sub', [one, s])]), decay]);
      return s;
    };
    const s1 = lif(0, c1);
    const s2 = lif(1, linear(s1, `${SPK}.fc2`));
    const s3 = lif(2, linear(s2, `${SPK}.fc3`));
    sum = sum ? g.node('Add', [sum, s3]) : s3;
  }
  // Σ s3 / T as the engines compute it (a division, not a multiplication by 1/T, which can differ by an ulp).
  g.node('Div', [sum!, steps], [], 'spikes');

  const sizes = `fieldSize ${F}, hiddenSize ${H}, spikingHiddenSize ${S}, spikingSteps ${T}`;
  const dtype = fp16 ? 'float16' : 'float32';
  const graph = onnx.GraphProto.create({
    name: 'quadra_matrix',
    docString: `Quadra Matrix oscillator in eval mode (${sizes}): field = the field network's output (no dropout), spikes = the spiking network's rates (mean of the last layer's spikes over ${T} steps). Weights ${dtype}, named as the checkpoint's PyTorch state_dict keys.`,
    node: g.nodes,
    initializer: g.initializers,
    input: [tensorValue('x', F, `rows to run, [batch, fieldSize ${F}]`)],
    output: [
      tensorValue('field', F, `the field network's output (eval mode), [batch, fieldSize ${F}]`),
      tensorValue('spikes', F, `spike rates in [0, 1] (multiples of 1/${T}), [batch, fieldSize ${F}]`),
    ],
  });
  const metadata: Record<string, string> = {
    fieldSize: String(F),
    hiddenSize: String(H),
    spikingHiddenSize: String(S),
    spikingSteps: String(T),
    weights: dtype,
    origin: contents.origin,
    ...(contents.step !== null ? { step: String(contents.step) } : {}),
  };
  const modelProto = onnx.ModelProto.create({
    irVersion: IR_VERSION,
    opsetImport: [onnx.OperatorSetIdProto.create({ domain: '', version: OPSET })],
    producerName: PRODUCER,
    modelVersion: contents.step ?? 0,
    docString: `Quadra Matrix Workstation export (${sizes}; ${dtype} weights). Input x [batch, ${F}] float32; outputs field and spikes [batch, ${F}] float32, as \`quadra predict\` computes them.`,
    graph,
    metadataProps: Object.entries(metadata).map(([key, value]) => onnx.StringStringEntryProto.create({ key, value })),
  });
  return onnx.ModelProto.encode(modelProto).finish();
}

/** Nodes and initializers in the order they are added (a valid topological order), with unique names. */
class GraphBuilder {
  readonly nodes: Onnx.NodeProto[] = [];
  readonly initializers: Onnx.TensorProto[] = [];
  #counts = new Map<string, number>();

  /** Adds one node with one output (named `output`, or after its op); returns the output's name. */
  node(op: string, inputs: string[], attributes: Attribute[] = [], output?: string): string {
    const index = this.#counts.get(op) ?? 0;
    this.#counts.set(op, index + 1);
    const name = `${op}_${index}`;
    const out = output ?? name;
    this.nodes.push(
      onnx.NodeProto.create({
        opType: op,
        name,
        input: inputs,
        output: [out],
        attribute: attributes.map((a) =>
          'int' in a
            ? onnx.AttributeProto.create({ name: a.name, type: onnx.AttributeProto.AttributeType.INT, i: a.int })
            : onnx.AttributeProto.create({ name: a.name, type: onnx.AttributeProto.AttributeType.FLOAT, f: a.float }),
        ),
      }),
    );
    return out;
  }

  /** A float32 scalar initializer. */
  constant(name: string, value: number): string {
    this.initializer(name, [], FLOAT, float32Bytes(new Float32Array([value])));
    return name;
  }

  initializer(name: string, dims: number[], dataType: number, rawData: Uint8Array): void {
    this.initializers.push(onnx.TensorProto.create({ name, dims, dataType, rawData }));
  }
}

/**
 * Every parameter as an initializer named after its checkpoint tensor; returns the name a node uses
 * for each (float16 ones through a Cast to float32, added once per tensor).
 */
function addWeights(g: GraphBuilder, layout: ParamLayout, parameters: Float32Array, fp16: boolean): (name: string) => string {
  const usable = new Map<string, string>();
  for (const e of layout.entries) {
    const values = view(parameters, e);
    if (!fp16) {
      g.initializer(e.name, e.shape, FLOAT, float32Bytes(values));
      usable.set(e.name, e.name);
      continue;
    }
    g.initializer(e.name, e.shape, FLOAT16, float16Bytes(values, e.name));
    usable.set(e.name, g.node('Cast', [e.name], [{ name: 'to', int: FLOAT }], `${e.name}.float32`));
  }
  return (name) => {
    const found = usable.get(name);
    if (!found) throw new QuadraError('INTERNAL', `ONNX export: no parameter named "${name}" in the layout`);
    return found;
  };
}

/** ONNX raw_data is little-endian whatever the host. */
function float32Bytes(values: Float32Array): Uint8Array {
  const bytes = new Uint8Array(values.length * 4);
  const out = new DataView(bytes.buffer);
  for (let i = 0; i < values.length; i++) out.setFloat32(i * 4, values[i]!, true);
  return bytes;
}

function float16Bytes(values: Float32Array, tensorName: string): Uint8Array {
  const bytes = new Uint8Array(values.length * 2);
  const out = new DataView(bytes.buffer);
  for (let i = 0; i < values.length; i++) {
    const bits = float32ToFloat16Bits(values[i]!);
    // A finite weight beyond float16's range would become ±Inf and poison every output: refuse.
    if ((bits & 0x7fff) === 0x7c00 && Number.isFinite(values[i]!)) {
      throw new QuadraError('UNSUPPORTED', `ONNX export with float16 weights: tensor "${tensorName}" holds ${values[i]} at flat index ${i}, beyond float16's ±65504; export float32`, {
        tensor: tensorName,
        index: i,
      });
    }
    out.setUint16(i * 2, bits, true);
  }
  return bytes;
}

/** A float32 [batch, width] graph input or output, batch left dynamic. */
function tensorValue(name: string, width: number, docString: string): Onnx.ValueInfoProto {
  return onnx.ValueInfoProto.create({
    name,
    docString,
    type: onnx.TypeProto.create({
      tensorType: onnx.TypeProto.Tensor.create({
        elemType: FLOAT,
        shape: onnx.TensorShapeProto.create({
          dim: [onnx.TensorShapeProto.Dimension.create({ dimParam: 'batch' }), onnx.TensorShapeProto.Dimension.create({ dimValue: width })],
        }),
      }),
    }),
  });
}
