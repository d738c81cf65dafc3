"""Train the built-in example network on scikit-learn's digits and save its state_dict.

    python examples/train_digits.py [--epochs 40] [--seed 0] [--arch csnn|resnet]

Trains on the retraining part of the same seeded split that ``slamp-deploy`` uses (evaluation
fraction 0.2, seed 0), so the accuracy slamp-deploy reports is on samples this script never saw.
Writes ``examples/digits_csnn.pt`` and ``examples/digits_csnn.json`` (how it was trained, and the
dense accuracy it reached); with ``--arch resnet``, the residual miniature of
``examples/cifar_resnet.py`` (``resnet_tiny``) to ``examples/digits_resnet.pt`` / ``.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from slamp_deploy.examples.cifar_resnet import resnet_tiny
from slamp_deploy.examples.digits import ENCODING, TIMESTEPS, build_model
from torch import nn

from slamp_deploy.data import encode, load_digits, split
from slamp_deploy.model.graph import reset_state

HERE = Path(__file__).resolve().parent


def run(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Spike counts of the output layer over TIMESTEPS steps, [N, 10]."""
    reset_state(model)  # slamp-deploy's own reset (snntorch.utils.reset misses nested blocks)
    seq = encode(x, TIMESTEPS, ENCODING)
    counts = 0
    for t in range(TIMESTEPS):
        spk, _mem = model(seq[t])
        counts = counts + spk
    return counts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--arch", choices=("csnn", "resnet"), default="csnn")
    ap.add_argument("--out", type=Path, help="default: examples/digits_csnn.pt or "
                    "examples/digits_resnet.pt")
    args = ap.parse_args()
    args.out = args.out or HERE / f"digits_{args.arch}.pt"

    torch.manual_seed(args.seed)
    parts = split(load_digits(), eval_fraction=0.2, seed=0)
    model = build_model() if args.arch == "csnn" else resnet_tiny()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, args.epochs)
    gen = torch.Generator().manual_seed(args.seed)
    t0 = time.time()
    for epoch in range(args.epochs):
        model.train()
        for xb, yb in parts.train.batches(64, shuffle=True, generator=gen):
            loss = nn.functional.cross_entropy(run(model, xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
        model.eval()
        with torch.no_grad():
            acc = (run(model, parts.eval.x).argmax(1) == parts.eval.y).float().mean().item()
        print(f"epoch {epoch + 1:3d}  loss {loss.item():.3f}  eval accuracy {acc:.4f}")
    torch.save(model.state_dict(), args.out)
    meta = {"arch": args.arch, "epochs": args.epochs, "seed": args.seed, "timesteps": TIMESTEPS,
            "encoding": ENCODING, "eval_accuracy": round(acc, 4),
            "eval_samples": len(parts.eval), "train_samples": len(parts.train),
            "train_seconds": round(time.time() - t0, 1)}
    args.out.with_suffix(".json").write_text(json.dumps(meta, indent=2) + "\n")
    print(json.dumps(meta))


if __name__ == "__main__":
    main()
