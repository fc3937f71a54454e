"""Continues a Quadra Matrix run with PyTorch DistributedDataParallel (see README.md).

Launch with torchrun (one process per GPU, or per CPU slot on gloo). Every rank starts from the
same checkpoint (start.safetensors: weights, Adam moments, steps), reads its DistributedSampler
shard of the training rows, and all-reduces gradients (the mean over ranks), so the ranks stay
identical; rank 0 writes checkpoints in the workstation's safetensors format, which
`quadra checkpoints import FILE` brings back as a run.

The global batch is --batch-size rows per step, split evenly over the ranks.
"""
import argparse
import json
import math
import os
import struct
import sys
import time
from datetime import datetime, timezone

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from model import QuadraMatrix, engine_loss, make_optimizers  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
EXP_AVG, EXP_AVG_SQ, FIELD_STATE = "optimizer.exp_avg.", "optimizer.exp_avg_sq.", "field_state"


# ---- our safetensors checkpoints (Debian 12 has no safetensors package; the format is small) ----
def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    metadata = header.pop("__metadata__", {}) or {}
    tensors = {}
    for name, e in header.items():
        begin, end = e["data_offsets"]
        dtype = {"F32": "<f4", "F16": "<f2"}.get(e["dtype"])
        if dtype is None:
            raise SystemExit(f"{path}: tensor {name} is {e['dtype']}; only F32 and F16 are read")
        array = np.frombuffer(data[8 + n + begin:8 + n + end], dtype=dtype).astype(np.float32)
        tensors[name] = torch.from_numpy(array.copy()).reshape(e["shape"])
    return tensors, metadata


def write_safetensors(path, tensors, metadata):
    """tensors: (name, float32 tensor) in order; metadata: str -> str. Written beside, then renamed."""
    header, chunks, offset = {"__metadata__": metadata}, [], 0
    for name, t in tensors:
        raw = t.detach().to("cpu", torch.float32).contiguous().numpy().astype("<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for chunk in chunks:
            f.write(chunk)
    os.replace(tmp, path)


def named_parameters(model):
    """Checkpoint names: each network's state_dict key with its prefix."""
    for network in ("field_network", "spike_network"):
        for key, p in getattr(model, network).named_parameters():
            yield f"{network}.{key}", p


def load_start(model, optimizers, path):
    tensors, metadata = read_safetensors(path)
    params = dict(named_parameters(model))
    with torch.no_grad():
        for name, p in params.items():
            if name not in tensors:
                raise SystemExit(f"{path}: missing tensor {name}")
            p.copy_(tensors[name].reshape(p.shape))
    steps = {"field_network": int(metadata.get("optimizer_field_step", 0)),
             "spike_network": int(metadata.get("optimizer_spike_step", 0))}
    for network, opt in zip(("field_network", "spike_network"), optimizers):
        step = steps[network]
        names = [f"{network}.{key}" for key, _ in getattr(model, network).named_parameters()]
        if step == 0 or any(EXP_AVG + n not in tensors for n in names):
            continue
        state = opt.state_dict()
        state["state"] = {i: {"step": torch.tensor(float(step)), "exp_avg": tensors[EXP_AVG + n].clone(),
                              "exp_avg_sq": tensors[EXP_AVG_SQ + n].clone()} for i, n in enumerate(names)}
        opt.load_state_dict(state)
    return tensors.get(FIELD_STATE), int(metadata.get("step", 0)), metadata


def optimizer_step(opt, fallback):
    for s in opt.state.values():
        if "step" in s:
            return int(float(s["step"]))
    return fallback


def save_checkpoint(path, model, optimizers, field_state, config, step, start_steps):
    params = list(named_parameters(model))
    tensors = [(n, p) for n, p in params]
    if field_state is not None:
        tensors.append((FIELD_STATE, field_state))
    moments = {}
    for opt in optimizers:
        for p, s in opt.state.items():
            if "exp_avg" in s:
                moments[id(p)] = (s["exp_avg"], s["exp_avg_sq"])
    tensors += [(EXP_AVG + n, moments.get(id(p), (torch.zeros_like(p),))[0]) for n, p in params]
    tensors += [(EXP_AVG_SQ + n, moments.get(id(p), (None, torch.zeros_like(p)))[1]) for n, p in params]
    metadata = {
        "format": "quadra-matrix",
        "format_version": "1",
        "config": json.dumps(config),
        "step": str(step),
        "optimizer_field_step": str(optimizer_step(optimizers[0], start_steps[0])),
        "optimizer_spike_step": str(optimizer_step(optimizers[1], start_steps[1])),
        "versions": json.dumps({"torch": torch.__version__, "python": sys.version.split()[0]}),
        "created": datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "trained_with": "torchrun",
    }
    write_safetensors(path, tensors, metadata)


# ---- data -------------------------------------------------------------------------------------
def load_rows(path, field_size, synthetic, seed):
    if path is None:
        if synthetic is None:
            raise SystemExit("no training data: pass --data FILE (.npy or .csv)")
        # PyTorch's generator, not the workstation's: the same count and distribution, other rows.
        generator = torch.Generator().manual_seed(seed)
        return torch.randn(synthetic, field_size, generator=generator)
    if path.endswith(".npy"):
        rows = np.load(path).astype(np.float32)
    else:
        rows = np.loadtxt(path, delimiter=",", dtype=np.float32, ndmin=2)
    if rows.ndim != 2 or rows.shape[1] != field_size:
        raise SystemExit(f"{path}: rows of width {rows.shape[-1]}, but the model's field size is {field_size}")
    return torch.from_numpy(np.ascontiguousarray(rows))


# ---- training ---------------------------------------------------------------------------------
def parse_args(package):
    run = package.get("run") or {}
    parser = argparse.ArgumentParser(description="Continue a Quadra Matrix run with DistributedDataParallel.")
    parser.add_argument("--start", default=os.path.join(HERE, "start.safetensors"), help="checkpoint to start from")
    default_data = os.path.join(HERE, "data.npy")
    parser.add_argument("--data", default=default_data if os.path.exists(default_data) else None,
                        help="training rows, .npy or .csv (default: data.npy beside this script)")
    parser.add_argument("--epochs", type=int, default=run.get("epochs", 1))
    parser.add_argument("--batch-size", type=int, default=package["engine"]["batchSize"],
                        help="rows per step over all ranks (split evenly)")
    parser.add_argument("--validation-fraction", type=float, default=run.get("validationFraction", 0.1))
    parser.add_argument("--last-batch", choices=("drop", "wrap"), default=run.get("lastBatch", "drop"))
    parser.add_argument("--checkpoint-every", type=int, default=run.get("checkpointEveryEpochs", 1), metavar="N",
                        help="write checkpoints/epoch-N.safetensors every N epochs (0: never)")
    parser.add_argument("--checkpoint-dir", default="checkpoints")
    parser.add_argument("--out", default="final.safetensors", help="the final checkpoint (our safetensors format)")
    parser.add_argument("--amp", action="store_true", help="mixed precision: float16 autocast + GradScaler on CUDA, bfloat16 on CPU")
    parser.add_argument("--no-shuffle", action="store_true", help="batches in row order (for comparing runs)")
    parser.add_argument("--print-losses", action="store_true", help="print every step's loss on every rank")
    parser.add_argument("--max-steps", type=int, default=0, help="stop after this many steps (0: no limit)")
    parser.add_argument("--checksum-dir", default=None, help="each rank also writes its weights' checksum to DIR/rank-N.txt")
    return parser.parse_args()


def main():
    with open(os.path.join(HERE, "config.json")) as f:
        package = json.load(f)
    args = parse_args(package)
    engine = package["engine"]
    cuda = torch.cuda.is_available()
    dist.init_process_group("nccl" if cuda else "gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    device = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    torch.manual_seed(engine["seed"] + rank)  # dropout masks differ per rank, as in the workstation

    model = QuadraMatrix(engine["model"])
    optimizers = make_optimizers(model, engine["optimizer"])
    field_state, step, start_meta = load_start(model, optimizers, args.start)
    start_steps = (int(start_meta.get("optimizer_field_step", 0)), int(start_meta.get("optimizer_spike_step", 0)))
    if engine["model"].get("spikeGradient", "surrogate") == "none":
        # No gradient reaches the spiking network; DDP must not wait for one.
        for p in model.spike_network.parameters():
            p.requires_grad_(False)
    model.to(device)
    for opt in optimizers:  # moments follow their parameters to the device
        for s in opt.state.values():
            for k, v in s.items():
                if torch.is_tensor(v) and k != "step":
                    s[k] = v.to(device)
    ddp = DistributedDataParallel(model, device_ids=[local_rank] if cuda else None)

    data_spec = (package.get("run") or {}).get("data")
    synthetic = data_spec.get("synthetic") if isinstance(data_spec, dict) else None
    rows = load_rows(args.data, engine["model"]["fieldSize"], synthetic, engine["seed"])
    # The split is PyTorch's own permutation of the rows (not the workstation's), seeded alike on every rank.
    order = torch.randperm(len(rows), generator=torch.Generator().manual_seed(engine["seed"]))
    validation = int(math.floor(len(rows) * args.validation_fraction))
    train_rows = rows[torch.sort(order[validation:]).values] if validation else rows
    per_rank = max(1, args.batch_size // world)
    sampler = DistributedSampler(TensorDataset(train_rows), num_replicas=world, rank=rank,
                                 shuffle=not args.no_shuffle, seed=engine["seed"], drop_last=args.last_batch == "drop")
    loader = DataLoader(TensorDataset(train_rows), batch_size=per_rank, sampler=sampler,
                        drop_last=args.last_batch == "drop", pin_memory=cuda)

    amp_dtype = torch.float16 if cuda else torch.bfloat16
    scaler = torch.cuda.amp.GradScaler() if args.amp and cuda else None
    weight = engine["model"].get("spikeLossWeight", 0.1)
    if rank == 0:
        print(f"world {world} ({'nccl' if cuda else 'gloo'}), {len(train_rows)} training rows, "
              f"{per_rank} per rank per step, from step {step}", flush=True)
    started = time.time()
    steps_done = 0
    for epoch in range(1, args.epochs + 1):
        sampler.set_epoch(epoch)
        model.train()
        for (x,) in loader:
            x = x.to(device, non_blocking=True)
            for opt in optimizers:
                opt.zero_grad(set_to_none=True)
            with torch.autocast(device_type=device.type, dtype=amp_dtype, enabled=args.amp):
                field_out, spikes = ddp(x)
            loss, _, _ = engine_loss(field_out.float(), spikes.float(), x, weight)
            if scaler is None:
                loss.backward()
                for opt in optimizers:
                    opt.step()
            else:
                scaler.scale(loss).backward()
                for opt in optimizers:
                    if any(p.grad is not None for g in opt.param_groups for p in g["params"]):
                        scaler.step(opt)
                scaler.update()
            step += 1
            steps_done += 1
            if args.print_losses:
                print(f"rank {rank} step {step} loss {loss.item():.9g}", flush=True)
            if args.max_steps and steps_done >= args.max_steps:
                break
        if rank == 0:
            print(f"epoch {epoch}: loss {loss.item():.6g} ({time.time() - started:.1f} s)", flush=True)
        if rank == 0 and args.checkpoint_every and epoch % args.checkpoint_every == 0 and epoch < args.epochs:
            os.makedirs(args.checkpoint_dir, exist_ok=True)
            save_checkpoint(os.path.join(args.checkpoint_dir, f"epoch-{epoch}.safetensors"), model, optimizers,
                            field_state, engine, step, start_steps)
        if args.max_steps and steps_done >= args.max_steps:
            break

    # Every rank must hold the same weights: compare the elementwise min and max over ranks.
    flat = torch.cat([p.detach().reshape(-1) for _, p in named_parameters(model)])
    low, high = flat.clone(), flat.clone()
    dist.all_reduce(low, op=dist.ReduceOp.MIN)
    dist.all_reduce(high, op=dist.ReduceOp.MAX)
    identical = bool(torch.equal(low, high))
    checksum = float(flat.double().sum())
    print(f"rank {rank} checksum {checksum:.17g} identical {identical}", flush=True)
    if args.checksum_dir:
        # A file per rank: the launcher's shared stdout may lose or interleave a rank's line.
        os.makedirs(args.checksum_dir, exist_ok=True)
        with open(os.path.join(args.checksum_dir, f"rank-{rank}.txt"), "w") as handle:
            handle.write(f"{checksum:.17g} {identical}\n")
    if not identical:
        raise SystemExit(f"rank {rank}: the ranks' weights differ")
    if rank == 0:
        save_checkpoint(args.out, model, optimizers, field_state, engine, step, start_steps)
        print(f"wrote {args.out} (step {step})", flush=True)
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
