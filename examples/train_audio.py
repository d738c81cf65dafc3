"""Train the audio-task network (examples/audio_task.py) and save its state_dict.

    python examples/train_audio.py [--epochs 30] [--seed 0]

Trains on the fixed training set ``make_spikes(TRAIN_SAMPLES, TRAIN_SEED)`` and reports accuracy
on the disjoint evaluation set ``make_spikes(EVAL_SAMPLES, EVAL_SEED)``, which the benchmarks also
evaluate on. Writes ``examples/audio_mlp.pt`` and ``examples/audio_mlp.json`` (how it was
trained, and the dense accuracy it reached). The loop is the temporal task's
(``examples/train_temporal.py``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from slamp_deploy.examples.audio_task import (
    CLASSES,
    EVAL_SAMPLES,
    EVAL_SEED,
    TIMESTEPS,
    TRAIN_SAMPLES,
    TRAIN_SEED,
    build_model,
    make_spikes,
)
from slamp_deploy.examples.train_temporal import run
from torch import nn

HERE = Path(__file__).resolve().parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--out", type=Path, default=HERE / "audio_mlp.pt")
    args = ap.parse_args()

    torch.manual_seed(args.seed)
    torch.set_num_threads(1)  # a small net: one thread is faster than two on a loaded machine
    xtr, ytr = (torch.from_numpy(a) for a in make_spikes(TRAIN_SAMPLES, TRAIN_SEED))
    xev, yev = (torch.from_numpy(a) for a in make_spikes(EVAL_SAMPLES, EVAL_SEED))
    model = build_model()
    with torch.no_grad():  # 16 sparse inputs: the default init needs a little gain to fire
        model[0].weight.mul_(1.5)  # (the motion task's 4x / 3x silenced this subtract-reset net)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, args.epochs)
    gen = torch.Generator().manual_seed(args.seed)
    t0 = time.time()
    acc = 0.0
    for epoch in range(args.epochs):
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
                if k.rsplit(".", 1)[-1] not in ("mem", "syn")}, args.out)
    meta = {"epochs": args.epochs, "seed": args.seed, "timesteps": TIMESTEPS,
            "lr": args.lr, "eval_accuracy": round(acc, 4), "chance": round(1 / CLASSES, 4),
            "eval_samples": len(yev), "train_samples": len(ytr),
            "train_seconds": round(time.time() - t0, 1)}
    args.out.with_suffix(".json").write_text(json.dumps(meta, indent=2) + "\n")
    print(json.dumps(meta))


if __name__ == "__main__":
    main()
