"""Train the audio-task network (examples/audio_task.py) and save its state_dict.

    python examples/train_audio.py [--epochs 30] [--seed 0]

Trains on the fixed training set ``make_spikes(TRAIN_SAMPLES, TRAIN_SEED)`` and reports accuracy
on the disjoint evaluation set ``make_spikes(EVAL_SAMPLES, EVAL_SEED)``, which the benchmarks also
evaluate on. Writes ``examples/audio_mlp.pt`` and ``examples/audio_mlp.json`` (how it was
trained, and the dense accuracy it reached). The loop is the temporal task's
(``examples/train_temporal.py``).
"""

from __future__ import annotations

from pathlib import Path

import torch
from slamp_deploy.examples.audio_task import (
    CLASSES,
    EVAL_SAMPLES,
    EVAL_SEED,
    TRAIN_SAMPLES,
    TRAIN_SEED,
    build_model,
    make_spikes,
)
from slamp_deploy.examples.train_temporal import fit_and_save, training_args

HERE = Path(__file__).resolve().parent


def main() -> None:
    args = training_args(__doc__, epochs=30, lr=2e-3, out=HERE / "audio_mlp.pt")

    torch.manual_seed(args.seed)
    torch.set_num_threads(1)  # a small net: one thread is faster than two on a loaded machine
    xtr, ytr = (torch.from_numpy(a) for a in make_spikes(TRAIN_SAMPLES, TRAIN_SEED))
    xev, yev = (torch.from_numpy(a) for a in make_spikes(EVAL_SAMPLES, EVAL_SEED))
    model = build_model()
    with torch.no_grad():  # 16 sparse inputs: the default init needs a little gain to fire
        model[0].weight.mul_(1.5)  # (the motion task's 4x / 3x silenced this subtract-reset net)
    fit_and_save(model, (xtr, ytr), (xev, yev), epochs=args.epochs, lr=args.lr, seed=args.seed,
                 out=args.out, chance=1 / CLASSES)


if __name__ == "__main__":
    main()
