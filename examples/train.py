"""Train a dense spiking VGG or ResNet baseline on CIFAR-10, CIFAR-100 or CIFAR10-DVS.

    python examples/train.py --data cifar10:PATH --model vgg11 [--epochs 100] [--timesteps 4]
        [--encoding direct] [--readout spikes] [--device cuda] [--batch-size 64] [--lr 1e-3]
        [--seed 0] [--no-augment] [--out vgg11_cifar10.pt]

BPTT through snnTorch's surrogate gradients, with slamp-deploy's own runner and loss (spike
counts into cross-entropy for ``--readout spikes``, the per-step membrane for ``membrane``), so
the network trains exactly as slamp-deploy runs and retrains it. Adam with a cosine schedule;
random 4-pixel-padded crops and horizontal flips on static images (flips only on DVS frames).

Static images are normalised per channel for ``--encoding direct``; with ``rate`` or
``latency`` (which read intensities in [0, 1]) the script adds ``norm=none`` to the spec.

Trains on the data set's training part and reports top-1 accuracy on its fixed test set (the
part slamp-deploy evaluates on). Writes the state_dict (``--out``) and, next to it, a .json of
how it was trained and the test accuracy, then prints the slamp-deploy command that prunes it.
``--data`` takes the specs of docs/datasets.md, options included (e.g. ``?max=500&max_test=200``
to try it on a CPU).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path
from types import ModuleType

import torch
from slamp_deploy.examples import cifar_resnet, cifar_vgg

from slamp_deploy.data import ENCODINGS, Dataset, encode
from slamp_deploy.datasets import KINDS, load_data_spec, parse_spec
from slamp_deploy.errors import SlampError, UsageError
from slamp_deploy.model.graph import SpikingGraph, trace
from slamp_deploy.model.runner import READOUTS, check_readout, logits, loss, run

DEFAULT_TIMESTEPS = 4  # static images; event data brings its own number of frames


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="cifar10:PATH, cifar100:PATH or "
                    "cifar10-dvs:PATH, with ?options (docs/datasets.md)")
    ap.add_argument("--model", default="vgg11",
                    choices=("vgg11", "vgg16", "resnet19", "resnet18"),
                    help="examples/cifar_vgg.py or examples/cifar_resnet.py")
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument("--timesteps", type=int, help=f"time steps (static images, default "
                    f"{DEFAULT_TIMESTEPS}) or frames per DVS recording (default: the spec's "
                    f"frames, 10)")
    ap.add_argument("--encoding", default="direct", choices=ENCODINGS)
    ap.add_argument("--readout", default="spikes", choices=READOUTS)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                    choices=("cpu", "cuda"))
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-augment", action="store_true", help="no random crops or flips")
    ap.add_argument("--out", type=Path, help="checkpoint path (default: MODEL_DATASET.pt)")
    args = ap.parse_args(argv)
    for name in ("epochs", "batch_size"):
        if getattr(args, name) < 1:
            ap.error(f"--{name.replace('_', '-')} {getattr(args, name)}: must be at least 1")
    if args.timesteps is not None and args.timesteps < 1:
        ap.error(f"--timesteps {args.timesteps}: must be at least 1")
    if args.device == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda: no CUDA device is available; use --device cpu")
    return args


def augment(x: torch.Tensor, sequence: bool, gen: torch.Generator) -> torch.Tensor:
    """Random horizontal flips (per sample, the same at every step) and, for static images,
    random crops of the image zero-padded by 4 pixels."""
    n_dim = 1 if sequence else 0
    n = x.shape[n_dim]
    flip = torch.rand(n, generator=gen, device=gen.device) < 0.5
    shape = [1] * x.dim()
    shape[n_dim] = n
    x = torch.where(flip.view(shape), x.flip(-1), x)
    if sequence:
        return x
    h, w = x.shape[-2:]
    xp = torch.nn.functional.pad(x, (4, 4, 4, 4))
    dy = torch.randint(0, 9, (n,), generator=gen, device=gen.device)
    dx = torch.randint(0, 9, (n,), generator=gen, device=gen.device)
    rows = (dy[:, None] + torch.arange(h, device=x.device))[:, :, None]  # [N, H, 1]
    cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, :]  # [N, 1, W]
    idx = torch.arange(n, device=x.device)[:, None, None]
    return xp.permute(0, 2, 3, 1)[idx, rows, cols].permute(0, 3, 1, 2).contiguous()


@torch.no_grad()
def accuracy(graph: SpikingGraph, data: Dataset, *, timesteps: int, encoding: str, readout: str,
             device: torch.device, seed: int, batch_size: int = 256) -> float:
    """Top-1 accuracy, computed as slamp-deploy's evaluation does."""
    graph.model.eval()
    gen = torch.Generator(device=device).manual_seed(seed)
    correct = 0
    for xb, yb in data.batches(batch_size):
        x = encode(xb.to(device), timesteps, encoding, sequence=data.sequence, generator=gen)
        correct += int((logits(run(graph, x), readout).argmax(1).cpu() == yb).sum())
    return correct / len(data)


def main(argv: list[str] | None = None) -> dict[str, object]:
    args = parse_args(argv)
    try:
        return _train(args)
    except SlampError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(e.exit_code) from None


def _factory(model: str, kind: str, size: int) -> tuple[ModuleType, str]:
    """The example module and factory name for ``--model`` on a data kind and image size."""
    module = cifar_resnet if model.startswith("resnet") else cifar_vgg
    name = module.FACTORIES.get((kind, model))
    if name is None:
        have = [m for k, m in module.FACTORIES if k == kind]
        raise UsageError(f"--model {model}: no {model} for {kind} in "
                         f"examples/{module.__name__.rsplit('.', 1)[-1]}.py; available: "
                         f"{', '.join(have)}")
    return module, name.format(size=size)


def _train_epoch(args: argparse.Namespace, graph: SpikingGraph, pool: Dataset,
                 opt: torch.optim.Optimizer, *, timesteps: int, device: torch.device,
                 shuffle: torch.Generator, draws: torch.Generator) -> tuple[float, int]:
    """One pass over the shuffled training set; the summed batch losses and the batch count."""
    total, batches = 0.0, 0
    for xb, yb in pool.batches(args.batch_size, shuffle=True, generator=shuffle):
        xb, yb = xb.to(device), yb.to(device)
        if not args.no_augment:
            xb = augment(xb, pool.sequence, draws)
        x = encode(xb, timesteps, args.encoding, sequence=pool.sequence, generator=draws)
        batch_loss = loss(run(graph, x), yb, args.readout)
        opt.zero_grad(set_to_none=True)
        batch_loss.backward()
        opt.step()
        total += float(batch_loss.detach())
        batches += 1
    return total, batches


def _train(args: argparse.Namespace) -> dict[str, object]:
    spec = parse_spec(args.data)
    if spec.kind not in KINDS:
        raise UsageError(f"--data {args.data!r}: train.py trains the example VGGs on "
                         f"{', '.join(k + ':PATH' for k in KINDS)}; for an .npz, write a factory "
                         f"for its shapes")
    if (args.encoding != "direct" and spec.kind in ("cifar10", "cifar100")
            and "norm" not in spec.options):
        # rate and latency encoding read pixel intensities in [0, 1]: no mean/std shift. Written
        # into the spec, so the printed slamp-deploy command loads the same inputs.
        args.data += ("&" if "?" in args.data else "?") + "norm=none"
    pool, test = load_data_spec(args.data, frames=args.timesteps)
    assert test is not None
    timesteps = int(pool.x.shape[0]) if pool.sequence else (args.timesteps or DEFAULT_TIMESTEPS)
    size = pool.sample_shape[-1]
    module, factory = _factory(args.model, spec.kind, size)
    device = torch.device(args.device)
    torch.manual_seed(args.seed)
    model = getattr(module, factory)().to(device)
    graph = trace(model, pool.sample_shape)
    check_readout(graph, args.readout)
    if graph.n_outputs <= int(pool.y.max()):
        raise UsageError(f"--model {args.model}: {factory} has {graph.n_outputs} outputs but "
                         f"{pool.source} has label {int(pool.y.max())}")
    out = args.out or Path(f"{args.model}_{spec.kind.replace('-', '_')}.pt")
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, args.epochs)
    shuffle = torch.Generator().manual_seed(args.seed)
    draws = torch.Generator(device=device).manual_seed(args.seed)  # augmentation and encoding
    print(f"training {factory} on {pool.source}: {len(pool)} samples, {timesteps} steps, "
          f"{graph.n_weights:,} weights, device {device}", flush=True)
    t0 = time.time()
    acc = 0.0
    for epoch in range(args.epochs):
        model.train()
        total, batches = _train_epoch(args, graph, pool, opt, timesteps=timesteps, device=device,
                                      shuffle=shuffle, draws=draws)
        sched.step()
        acc = accuracy(graph, test, timesteps=timesteps, encoding=args.encoding,
                       readout=args.readout, device=device, seed=args.seed)
        print(f"epoch {epoch + 1:4d}/{args.epochs}  loss {total / batches:.4f}  "
              f"test accuracy {acc:.4f}  ({time.time() - t0:.0f} s)", flush=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, out)
    model_spec = f"{module.__name__}:{factory}"
    meta: dict[str, object] = {
        "model": model_spec, "data": args.data, "train_source": pool.source,
        "test_source": test.source, "train_samples": len(pool), "test_samples": len(test),
        "timesteps": timesteps, "encoding": args.encoding, "readout": args.readout,
        "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr,
        "optimizer": "Adam, cosine annealing to 0 over the epochs",
        "augment": "none" if args.no_augment else (
            "horizontal flip" if pool.sequence else "4-pixel padded random crop, horizontal flip"),
        "seed": args.seed, "device": str(device), "torch": torch.__version__,
        "test_accuracy": round(acc, 4), "train_seconds": round(time.time() - t0, 1),
    }
    out.with_suffix(".json").write_text(json.dumps(meta, indent=2) + "\n")
    cmd = ["slamp-deploy", "--model", model_spec, "--weights", str(out), "--data", args.data,
           "--encoding", args.encoding, "--readout", args.readout, "--device", args.device,
           "--target", "loihi2"]
    if not pool.sequence:
        cmd[7:7] = ["--timesteps", str(timesteps)]
    print(f"test accuracy {acc:.4f}; wrote {out} and {out.with_suffix('.json')}")
    print("prune it next with:\n  " + shlex.join(cmd))
    return meta


if __name__ == "__main__":
    main()
