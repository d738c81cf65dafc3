"""Train the temporal-task network (examples/temporal_task.py) and save its state_dict.

    python examples/train_temporal.py [--epochs 60] [--seed 0]

Trains on the fixed training set ``make_events(TRAIN_SAMPLES, TRAIN_SEED)`` and reports accuracy
on the disjoint evaluation set ``make_events(EVAL_SAMPLES, EVAL_SEED)``, which the benchmarks also
evaluate on. Writes ``examples/temporal_mlp.pt`` and ``examples/temporal_mlp.json`` (how it was
trained, and the dense accuracy it reached).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import snntorch.utils
import torch
from slamp_deploy.examples.temporal_task import (
    CLASSES,
    EVAL_SAMPLES,
    EVAL_SEED,
    TRAIN_SAMPLES,
    TRAIN_SEED,
    build_model,
    make_events,
)
from torch import nn

HERE = Path(__file__).resolve().parent


def run(model: nn.Module, seq: torch.Tensor) -> torch.Tensor:
    """Output spike counts over the sequence ``[T, N, PIXELS]``, ``[N, CLASSES]``."""
    snntorch.utils.reset(model)
    counts = 0
    for t in range(seq.shape[0]):
        spk, _mem = model(seq[t])
        counts = counts + spk
    return counts


def fit_and_save(model: nn.Module, train: tuple[torch.Tensor, torch.Tensor],
                 evaluation: tuple[torch.Tensor, torch.Tensor], *, epochs: int, lr: float,
                 seed: int, out: Path, chance: float) -> float:
    """BPTT on spike counts (Adam, cosine schedule, batches of 64 in a seeded order), then save
    the state_dict without neuron states to ``out`` and how it was trained beside it (.json).
    Shared by the temporal and audio tasks' scripts; returns the final evaluation accuracy."""
    (xtr, ytr), (xev, yev) = train, evaluation
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    gen = torch.Generator().manual_seed(seed)
    t0 = time.time()
    acc = 0.0
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(ytr), generator=gen)
        for s in range(0, len(ytr), 64):
            idx = order[s:s + 64]
            loss = nn.functional.cross_entropy(run(model, xtr[:, idx]), ytr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
        model.eval()
        with torch.no_grad():
            acc = (run(model, xev).argmax(1) == yev).float().mean().item()
        print(f"epoch {epoch + 1:3d}  loss {loss.item():.3f}  eval accuracy {acc:.4f}", flush=True)
    torch.save({k: v for k, v in model.state_dict().items()
                if k.rsplit(".", 1)[-1] not in ("mem", "syn")}, out)
    meta = {"epochs": epochs, "seed": seed, "timesteps": int(xtr.shape[0]),
            "lr": lr, "eval_accuracy": round(acc, 4), "chance": round(chance, 4),
            "eval_samples": len(yev), "train_samples": len(ytr),
            "train_seconds": round(time.time() - t0, 1)}
    out.with_suffix(".json").write_text(json.dumps(meta, indent=2) + "\n")
    print(json.dumps(meta))
    return acc


def training_args(doc: str, *, epochs: int, lr: float, out: Path) -> argparse.Namespace:
    """The options of a task's training script (--epochs, --seed, --lr, --out), parsed."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=epochs)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--lr", type=float, default=lr)
    ap.add_argument("--out", type=Path, default=out)
    return ap.parse_args()


def main() -> None:
    args = training_args(__doc__, epochs=60, lr=5e-3, out=HERE / "temporal_mlp.pt")

    torch.manual_seed(args.seed)
    xtr, ytr = (torch.from_numpy(a) for a in make_events(TRAIN_SAMPLES, TRAIN_SEED))
    xev, yev = (torch.from_numpy(a) for a in make_events(EVAL_SAMPLES, EVAL_SEED))
    model = build_model()
    with torch.no_grad():  # PyTorch's default init is too small for 0/1 events to reach
        for i, gain in ((0, 4.0), (2, 3.0), (4, 3.0)):  # threshold 1: scale it up per layer
            model[i].weight.mul_(gain)
    fit_and_save(model, (xtr, ytr), (xev, yev), epochs=args.epochs, lr=args.lr, seed=args.seed,
                 out=args.out, chance=1 / CLASSES)


if __name__ == "__main__":
    main()
