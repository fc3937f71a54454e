#!/usr/bin/python3
"""PyTorch reference benchmark for the Quadra Matrix oscillator engine.

The same model as DESIGN.md section 4 (OptimizedField + SpikingNetwork, the
engine loss, two AdamW optimisers): resources/torchrun/model.py, the one copy,
which the torchrun export ships. Timed the same way as `npx quadra bench`:
warm-up, then R repeats of N timed trainSteps and N timed processBatch calls on
one fixed N(0,1) batch; median, min and max samples/s over the repeats.

Install (Debian, as root):
    DEBIAN_FRONTEND=noninteractive apt-get install -y \\
        python3-torch python3-numpy libopenblas0-pthread

Run (from the repo root; use Debian's Python, which has torch):
    /usr/bin/python3 bench/pytorch-reference.py
    /usr/bin/python3 bench/pytorch-reference.py --batch-size 256 --spike-gradient none --json
    /usr/bin/python3 bench/pytorch-reference.py --threads auto   # the fastest thread count, by trial
`quadra bench --backend pytorch` and the Benchmarks view run it with --threads auto --json.

On an NVIDIA GPU (any torch built with CUDA; the GPU benchmark bundle's run.sh does this):
    python3 bench/pytorch-reference.py --device cuda --batch-size 1024
    python3 bench/pytorch-reference.py --device cuda --amp --batch-size 1024
--amp runs the forward under torch.autocast(device_type="cuda", dtype=torch.float16) with a
GradScaler, as the original project's benchmark() trains on CUDA. Timing on CUDA synchronises
before and after each timed loop, so queued kernels are counted.

Debian's torch is built with BLAS_INFO=generic: it calls whatever
libblas.so.3 the alternatives system points at (reference BLAS, or OpenBLAS
once libopenblas0-pthread is installed). The header line says which one ran.
"""
import argparse
import ctypes
import json
import os
import re
import statistics
import sys
import time

import torch


def model_folder():
    """Where the model's one copy, resources/torchrun/model.py (shipped by the torchrun export), is.

    $QUADRA_TORCHRUN_TEMPLATES first, as the exporter does; then beside this script (the GPU bundle
    copies it there), the checkout, and the packaged app (this script asar-unpacked in
    resources/app.asar.unpacked/bench, the torchrun templates in resources/torchrun).
    """
    here = os.path.dirname(os.path.realpath(__file__))
    override = os.environ.get("QUADRA_TORCHRUN_TEMPLATES")
    folders = [os.path.abspath(folder) for folder in (
        *([override] if override else []), here,
        os.path.join(here, "..", "resources", "torchrun"), os.path.join(here, "..", "..", "torchrun"))]
    for folder in folders:
        if os.path.isfile(os.path.join(folder, "model.py")):
            return folder
    raise SystemExit(f"pytorch-reference.py: model.py not found (looked in {', '.join(folders)})")


# No __pycache__ beside model.py: the app ships that folder as it is.
sys.dont_write_bytecode = True
sys.path.insert(0, model_folder())
from model import QuadraMatrix, make_optimizers  # noqa: E402

HIDDEN_SIZE = 256
SPIKING_SIZE = 128
TIME_STEPS = 10
DROPOUT = 0.1
MODEL_SEED = 1
BATCH_SEED = 7


def build_model(field_size, spike_gradient):
    """The reference sizes (DESIGN.md section 4) at field size F."""
    return QuadraMatrix({
        "fieldSize": field_size, "hiddenSize": HIDDEN_SIZE, "spikingHiddenSize": SPIKING_SIZE,
        "spikingSteps": TIME_STEPS, "dropout": DROPOUT, "spikeGradient": spike_gradient})


def compute_loss(model, x):
    return model.loss(x)[0]


def train_step(model, optimisers, x, scaler=None):
    model.train()
    for opt in optimisers:
        # set_to_none, so in 'none' mode the spiking parameters keep grad None and are not stepped.
        opt.zero_grad(set_to_none=True)
    if scaler is None:
        loss = compute_loss(model, x)
        loss.backward()
        for opt in optimisers:
            opt.step()
        return loss
    # --amp: float16 autocast forward, scaled backward, unscaled (inf-checked) optimiser steps.
    with torch.autocast(device_type="cuda", dtype=torch.float16):
        loss = compute_loss(model, x)
    scaler.scale(loss).backward()
    for opt in optimisers:
        # GradScaler.step refuses an optimiser with no gradient at all ('none' mode's spiking one).
        if any(p.grad is not None for group in opt.param_groups for p in group["params"]):
            scaler.step(opt)
    scaler.update()
    return loss


def process_batch(model, x, amp=False):
    model.eval()
    with torch.no_grad():
        if not amp:
            return compute_loss(model, x)
        with torch.autocast(device_type="cuda", dtype=torch.float16):
            return compute_loss(model, x)


def make_grad_scaler():
    """torch.amp.GradScaler("cuda") where it exists (2.3+), else torch.cuda.amp.GradScaler (1.x)."""
    amp = getattr(torch, "amp", None)
    if amp is not None and hasattr(amp, "GradScaler"):
        return amp.GradScaler("cuda")
    return torch.cuda.amp.GradScaler()


# ---- measurement -------------------------------------------------------------
def spread(values):
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def time_per_call(fn, iterations, synchronize=None):
    """Mean wall time of one call, in ms (on CUDA: from an idle GPU until the last kernel ends)."""
    if synchronize:
        synchronize()
    start = time.perf_counter()
    for _ in range(iterations):
        fn()
    if synchronize:
        synchronize()
    return (time.perf_counter() - start) * 1000 / iterations


def run_bench(args):
    device = torch.device(args.device)
    torch.manual_seed(MODEL_SEED)
    # Built on the CPU (same initial weights and batch on every device), then moved.
    model = build_model(args.field_size, args.spike_gradient).to(device)
    optimisers = make_optimizers(model, {})  # the engine's defaults
    generator = torch.Generator().manual_seed(BATCH_SEED)
    batch = torch.randn(args.batch_size, args.field_size, generator=generator).to(device)
    scaler = make_grad_scaler() if args.amp else None
    synchronize = torch.cuda.synchronize if device.type == "cuda" else None

    def train():
        train_step(model, optimisers, batch, scaler)

    def forward():
        process_batch(model, batch, args.amp)

    # Same warm-up as ours: one processBatch and one trainStep per warm-up step.
    for _ in range(args.warmup):
        forward()
        train()
    train_ms, forward_ms = [], []
    for _ in range(args.repeats):
        train_ms.append(time_per_call(train, args.iterations, synchronize))
        forward_ms.append(time_per_call(forward, args.iterations, synchronize))

    def per_sec(ms):
        return spread([args.batch_size * 1000 / m for m in ms])

    return {
        "trainSamplesPerSec": per_sec(train_ms),
        "forwardSamplesPerSec": per_sec(forward_ms),
        "msPerTrainStep": spread(train_ms),
        "msPerForward": spread(forward_ms),
    }


# ---- environment -------------------------------------------------------------
def loaded_blas_libraries():
    with open("/proc/self/maps") as maps:
        paths = {line.split()[-1] for line in maps if "/" in line}
    return sorted(p for p in paths if "blas" in p.rsplit("/", 1)[-1])


def configure_blas(threads):
    """Limit OpenBLAS to `threads` and describe the BLAS torch calls.

    torch.set_num_threads does not reach a BLAS that torch was not built
    against (BLAS_INFO=generic), and OpenBLAS otherwise uses every core.
    """
    torch.mm(torch.ones(2, 2), torch.ones(2, 2))  # make sure the BLAS is loaded
    match = re.search(r"BLAS_INFO=(\w+)", torch.__config__.show())
    description = "built-in"
    for path in loaded_blas_libraries():
        lib = ctypes.CDLL(path)
        is_openblas = hasattr(lib, "openblas_set_num_threads")
        if is_openblas:
            lib.openblas_set_num_threads(threads)
        # torch links libblas.so.3; an OpenBLAS pulled in only by liblapack does no GEMMs.
        if path.rsplit("/", 1)[-1].startswith("libblas"):
            description = describe_openblas(lib) if is_openblas else "/".join(path.split("/")[-2:])
    return f"{match.group(1) if match else 'unknown'} -> {description}"


def describe_openblas(lib):
    lib.openblas_get_config.restype = ctypes.c_char_p
    lib.openblas_get_corename.restype = ctypes.c_char_p
    version = " ".join(lib.openblas_get_config().decode().split()[:2])
    core = lib.openblas_get_corename().decode()
    return f"{version} ({core}), {lib.openblas_get_num_threads()} thread(s)"


def cpu_model():
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


# ---- command line ------------------------------------------------------------
def whole_number(minimum, maximum):
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a whole number, got '{text}'")
        if not minimum <= value <= maximum:
            raise argparse.ArgumentTypeError(f"must be from {minimum} to {maximum:,}, got {value}")
        return value
    return parse


def thread_count(text):
    """A whole number of threads, or 'auto': the fastest count found by a short trial (see choose_threads)."""
    return "auto" if text == "auto" else whole_number(1, 1_024)(text)


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description="PyTorch reference for `npx quadra bench`: trainStep and processBatch "
                    "throughput of the Quadra Matrix model on the CPU (or a CUDA GPU with --device cuda).")
    parser.add_argument("--batch-size", type=whole_number(1, 1_000_000), default=64, metavar="N",
                        help="rows per batch (default 64)")
    parser.add_argument("--spike-gradient", choices=("surrogate", "none"), default="surrogate",
                        help="spiking-network gradient (default surrogate)")
    parser.add_argument("--iterations", type=whole_number(1, 1_000_000), default=50, metavar="N",
                        help="timed steps per repeat (default 50)")
    parser.add_argument("--repeats", type=whole_number(1, 1_000), default=5, metavar="R",
                        help="timed repeats (default 5)")
    parser.add_argument("--warmup", type=whole_number(0, 100_000), default=20, metavar="N",
                        help="untimed warm-up steps (default 20)")
    parser.add_argument("--threads", type=thread_count, default=1, metavar="N|auto",
                        help="intra-op, inter-op and BLAS threads (default 1); 'auto': the fastest of "
                             "1, 2, 4, ... and every usable core, by a short timed trial (CPU only)")
    parser.add_argument("--field-size", type=whole_number(1, 100_000), default=100, metavar="F",
                        help="field size F (default 100)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="where the model runs (default cpu)")
    parser.add_argument("--amp", action="store_true",
                        help="CUDA only: float16 autocast and a GradScaler (mixed precision)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if args.amp and args.device != "cuda":
        parser.error("--amp needs --device cuda (it is torch.autocast float16 on CUDA)")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error(f"--device cuda: torch {torch.__version__} sees no CUDA GPU "
                     f"(built with CUDA {torch.version.cuda}; torch.cuda.is_available() is False)")
    return args


def format_line(label, rate, ms, unit):
    return (f"{label:<14}{round(rate['median']):,} samples/s "
            f"(min {round(rate['min'])}, max {round(rate['max'])})  {ms['median']:.2f} ms/{unit}")


def usable_cores():
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def trial_rate(args, threads):
    """Training samples/s at `threads` from a short run (2 untimed steps, then 3-20 steps, ~0.25 s)."""
    torch.set_num_threads(threads)
    configure_blas(threads)
    torch.manual_seed(MODEL_SEED)
    model = build_model(args.field_size, args.spike_gradient)
    optimisers = make_optimizers(model, {})  # the engine's defaults
    batch = torch.randn(args.batch_size, args.field_size, generator=torch.Generator().manual_seed(BATCH_SEED))
    for _ in range(2):
        train_step(model, optimisers, batch)
    steps, start = 0, time.perf_counter()
    while steps < 3 or (steps < 20 and time.perf_counter() - start < 0.25):
        train_step(model, optimisers, batch)
        steps += 1
    return args.batch_size * steps / (time.perf_counter() - start)


def choose_threads(args):
    """--threads auto on the CPU: try 1, 2, 4, ... and every usable core; keep the fastest.

    Returns (threads, trials). On CUDA the CPU threads barely matter: torch's default, no trials.
    """
    if args.device == "cuda":
        return torch.get_num_threads(), []
    cores = usable_cores()
    counts, n = [], 1
    while n < cores:
        counts.append(n)
        n *= 2
    counts.append(cores)
    trials = [{"threads": t, "trainSamplesPerSec": trial_rate(args, t)} for t in counts]
    best = max(trials, key=lambda trial: trial["trainSamplesPerSec"])
    return best["threads"], trials


def main(argv=None):
    args = parse_args(argv)
    trials = None
    if args.threads == "auto":
        args.threads, trials = choose_threads(args)
    torch.set_num_threads(args.threads)
    try:
        torch.set_num_interop_threads(args.threads)
    except RuntimeError:
        pass  # only settable before inter-op work starts; eager training never uses that pool
    blas = configure_blas(args.threads)
    result = run_bench(args)
    # Extra keys on CUDA only, so the CPU output stays exactly as it was.
    cuda = {}
    if args.device == "cuda":
        cuda = {
            "device": "cuda",
            "gpu": torch.cuda.get_device_name(),
            "cuda": torch.version.cuda,
            "precision": "mixed" if args.amp else "fp32",
            "amp": args.amp,
            "tf32Matmul": torch.backends.cuda.matmul.allow_tf32,
        }
    summary = {
        "torch": torch.__version__,
        "blas": blas,
        "threads": args.threads,
        # Only with --threads auto: each count tried and its trial rate, so the choice can be checked.
        **({"threadTrials": trials} if trials is not None else {}),
        "batchSize": args.batch_size,
        "fieldSize": args.field_size,
        "spikeGradient": args.spike_gradient,
        "iterations": args.iterations,
        "repeats": args.repeats,
        "warmup": args.warmup,
        **result,
        "cpu": cpu_model(),
        **cuda,
    }
    if args.json:
        print(json.dumps(summary))
    elif cuda:
        print(f"torch {summary['torch']}, CUDA {cuda['cuda']} on {cuda['gpu']}, "
              f"{'AMP float16' if args.amp else 'float32'}, batch {args.batch_size}, "
              f"field {args.field_size}, spike gradient {args.spike_gradient}, "
              f"{args.repeats} × {args.iterations} steps")
        print(format_line("trainStep", result["trainSamplesPerSec"], result["msPerTrainStep"], "step"))
        print(format_line("processBatch", result["forwardSamplesPerSec"], result["msPerForward"], "batch"))
    else:
        print(f"torch {summary['torch']}, {args.threads} thread(s), batch {args.batch_size}, "
              f"field {args.field_size}, spike gradient {args.spike_gradient}, "
              f"BLAS {blas}, CPU {summary['cpu']}, {args.repeats} × {args.iterations} steps")
        print(format_line("trainStep", result["trainSamplesPerSec"], result["msPerTrainStep"], "step"))
        print(format_line("processBatch", result["forwardSamplesPerSec"], result["msPerForward"], "batch"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
