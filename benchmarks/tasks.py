"""The benchmark tasks: data files, model and weights, as the pipeline takes them.

* ``digits``: the built-in example (scikit-learn digits, conv SNN, beta 0.5..0.95, T = 8, direct
  encoding). The evaluation set is the held-out part of the seed-0 split that
  ``examples/train_digits.py`` trained on, so no seed evaluates on samples the dense network saw.
* ``digits-resnet``: the same digits data and split with a residual network
  (``examples/cifar_resnet.py:resnet_tiny_digits``: stem, an identity-shortcut block and a
  1x1-conv-shortcut block, one Linear layer; all beta 0.9), to see the method on a DAG.
* ``temporal``: synthetic event-camera motion classes (``examples/temporal_task.py``), sequences
  ``[T=24, N, 32]``, a 3-layer MLP with beta 0.3 / 0.9 / 0.97; fixed training and evaluation sets
  drawn from disjoint seeds.
* ``audio``: synthetic tone patterns through a 16-band filter bank into spikes
  (``examples/audio_task.py``), sequences ``[T=32, N, 16]``, a 3-layer MLP with time constants
  mixed inside its layers (per-neuron beta 0.5-0.95 Leaky, alpha 0.6 / beta 0.7-0.97 Synaptic,
  beta 0.9 Leaky; subtract reset); fixed training and evaluation sets from disjoint seeds.

Each task is written once into a work folder as ``<task>_train.npz`` / ``<task>_eval.npz``; the
benchmark then passes them as ``--data`` / ``--eval-data``, so every seed evaluates on the same
samples and only the calibration subset and the retraining order change with the seed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

TASKS = ("digits", "digits-resnet", "temporal", "audio")


@dataclass(frozen=True)
class Task:
    """What a pipeline run needs to know about one benchmark task."""

    name: str
    model: str | None  # PipelineConfig.model (None: the built-in digits example)
    weights: str | None
    train: Path  # .npz, the retraining part (calibration subsets come from it)
    eval: Path  # .npz, the fixed evaluation set
    encoding: str
    readout: str
    timesteps: int
    description: str


def _limit(x: np.ndarray, y: np.ndarray, n: int | None, sequence: bool
           ) -> tuple[np.ndarray, np.ndarray]:
    """The first ``n`` samples (all if None)."""
    if n is None or n >= len(y):
        return x, y
    return (x[:, :n] if sequence else x[:n]), y[:n]


def prepare(name: str, workdir: str | Path, *, train_limit: int | None = None,
            eval_limit: int | None = None) -> Task:
    """Write the task's data files into ``workdir`` and describe how to run it.

    ``train_limit`` / ``eval_limit`` keep only the first samples (tiny test configurations).
    """
    d = Path(workdir)
    d.mkdir(parents=True, exist_ok=True)
    if name == "digits-resnet":
        t = prepare("digits", d, train_limit=train_limit, eval_limit=eval_limit)
        return Task(name=name, model="slamp_deploy.examples.cifar_resnet:resnet_tiny_digits",
                    weights=None, train=t.train, eval=t.eval, encoding=t.encoding,
                    readout=t.readout, timesteps=t.timesteps,
                    description="scikit-learn digits 8x8, residual SNN (two basic blocks, "
                                "identity and 1x1-conv shortcuts, beta 0.9), T=8, direct "
                                "encoding, spike-count readout")
    if name == "digits":
        from slamp_deploy.examples import digits

        from slamp_deploy.data import load_digits, split

        parts = split(load_digits(), eval_fraction=0.2, seed=0)  # train_digits.py's split
        sets = {"train": parts.train, "eval": parts.eval}
        paths = {}
        for part, lim in (("train", train_limit), ("eval", eval_limit)):
            ds = sets[part]
            x, y = _limit(ds.x.numpy(), ds.y.numpy(), lim, sequence=False)
            paths[part] = d / f"digits_{part}{'' if lim is None else f'_{lim}'}.npz"
            np.savez(paths[part], x=x, y=y)
        return Task(name="digits", model=None, weights=None, train=paths["train"],
                    eval=paths["eval"], encoding=digits.ENCODING, readout=digits.READOUT,
                    timesteps=digits.TIMESTEPS,
                    description="scikit-learn digits 8x8, conv SNN (beta 0.5/0.7/0.9/0.95), "
                                "T=8, direct encoding, spike-count readout")
    if name == "temporal":
        from slamp_deploy.examples import temporal_task as tt

        return _sequence_task(
            name, tt, tt.make_events, d, train_limit, eval_limit,
            description=f"synthetic DVS-like motion, {tt.CLASSES} classes, 1x{tt.PIXELS} "
                        f"event sensor, T={tt.TIMESTEPS}, MLP (beta "
                        f"{'/'.join(map(str, tt.BETAS))}), spike-count readout")
    if name == "audio":
        from slamp_deploy.examples import audio_task as at

        return _sequence_task(
            name, at, at.make_spikes, d, train_limit, eval_limit,
            description=f"synthetic audio-like tone patterns, {at.CLASSES} classes, "
                        f"{at.CHANNELS}-band filter bank into spikes, T={at.TIMESTEPS}, "
                        f"MLP (per-neuron beta 0.5-0.95 Leaky / Synaptic alpha "
                        f"{at.ALPHA} beta 0.7-0.97 / beta 0.9), spike-count readout")
    raise ValueError(f"unknown task {name!r}; choose one of {', '.join(TASKS)}")


def _sequence_task(name: str, mod: Any, make: Callable[..., tuple[np.ndarray, np.ndarray]],
                   d: Path, train_limit: int | None, eval_limit: int | None, *,
                   description: str) -> Task:
    """A generated sequence task (``mod`` is its example module: sample counts, seeds, weights):
    its train and eval sets written to ``d`` as .npz, then the Task that names them."""
    paths = {}
    for part, n, seed, lim in (("train", mod.TRAIN_SAMPLES, mod.TRAIN_SEED, train_limit),
                               ("eval", mod.EVAL_SAMPLES, mod.EVAL_SEED, eval_limit)):
        x, y = make(n, seed, first=lim)  # the first lim of n, without generating the rest
        paths[part] = d / f"{name}_{part}{'' if lim is None else f'_{lim}'}.npz"
        np.savez(paths[part], x=x, y=y)
    return Task(name=name, model=f"{mod.__name__}:build_model", weights=str(mod.weights_path()),
                train=paths["train"], eval=paths["eval"], encoding="direct", readout=mod.READOUT,
                timesteps=mod.TIMESTEPS, description=description)
