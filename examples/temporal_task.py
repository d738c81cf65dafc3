"""A task where time matters: synthetic event-camera (DVS-like) motion classes on a 1-D sensor.

An object a few pixels wide moves along a 32-pixel line sensor for ``TIMESTEPS`` = 24 steps; each
step every object pixel fires an event with probability 0.7 and every pixel fires a background
(noise) event with probability 0.02. There is one polarity channel, so a single frame does not say
which way the object moves. The 8 classes are four motions times two directions:

====  =========================================================================
0, 1  slow drift right / left (0.4 to 0.6 pixel per step)
2, 3  fast sweep right / left (1.0 to 1.4 pixel per step)
4, 5  jump right / left: still at one place, then (half way, +-3 steps) 6 to 10 pixels away
6, 7  out and back: right then left / left then right (0.8 to 1.2 pixel per step)
====  =========================================================================

Start position, width (2 to 4 pixels), speed, onset (0 to 3 steps late) and the events are drawn
from one seeded generator, so :func:`make_events` is a pure function of ``(n, seed)``. Every class
is the mirror image of its partner in space, and slow/fast/out-and-back visit the same pixels
whichever the direction, so a network that sums memoryless per-step responses over time cannot tell
directions apart: the classes need the neurons' memory.

``build_model()`` is a 3-layer spiking MLP whose layers integrate over clearly different time
scales (beta 0.3, 0.9, 0.97): the case in which SLAMP's temporal layer scores differ from LAMP's.
The trained weights ``temporal_mlp.pt`` come from ``examples/train_temporal.py``.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np
import snntorch as snn
from torch import nn

TIMESTEPS = 24
PIXELS = 32
CLASSES = 8
BETAS = (0.3, 0.9, 0.97)
HIDDEN = 128
READOUT = "spikes"
#: seeds of the fixed training and evaluation sets (disjoint streams of one generator family)
TRAIN_SEED, EVAL_SEED = 1234, 5678
TRAIN_SAMPLES, EVAL_SAMPLES = 3000, 1000

_EVENT_P, _NOISE_P = 0.7, 0.02


def _trajectory(rng: np.random.Generator, cls: int) -> np.ndarray:
    """Object centre per step (float pixels, NaN before onset), for class ``cls``."""
    T = TIMESTEPS
    kind, direction = divmod(cls, 2)
    sign = 1.0 if direction == 0 else -1.0
    onset = int(rng.integers(0, 4))
    steps = np.arange(T - onset, dtype=np.float64)
    if kind == 0:  # slow drift
        v = rng.uniform(0.4, 0.6)
        rel = sign * v * steps
    elif kind == 1:  # fast sweep
        v = rng.uniform(1.0, 1.4)
        rel = sign * v * steps
    elif kind == 2:  # jump
        at = (T - onset) // 2 + int(rng.integers(-3, 4))
        d = float(rng.integers(6, 11))
        rel = np.where(steps < at, 0.0, sign * d)
    else:  # out and back
        v = rng.uniform(0.8, 1.2)
        half = (T - onset) / 2.0
        rel = sign * v * np.where(steps < half, steps, 2 * half - steps)
    lo, hi = rel.min(), rel.max()
    # a start position that keeps the whole path on the sensor (margin 2 pixels)
    start = rng.uniform(2 - lo, PIXELS - 3 - hi) if hi - lo < PIXELS - 5 else 2 - lo
    path = np.full(T, np.nan)
    path[onset:] = start + rel
    return path


def make_events(n: int, seed: int, first: int | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
    """``n`` samples as events ``x`` [T, n, PIXELS] (float32, 0/1) and labels ``y`` [n] (int64).

    Deterministic: the same ``(n, seed)`` gives bit-identical arrays. Classes are balanced
    (``i % CLASSES``) and shuffled. ``first`` generates only the first samples of the ``n``,
    bit-identical to slicing the full arrays: the labels are drawn for all ``n``, then the
    generator draws sample by sample (the quick benchmark uses 200 of 3000).
    """
    rng = np.random.default_rng(seed)
    y = rng.permutation(np.arange(n) % CLASSES).astype(np.int64)
    if first is not None:
        y = y[:first]
    x = np.zeros((TIMESTEPS, len(y), PIXELS), dtype=np.float32)
    pix = np.arange(PIXELS, dtype=np.float64)
    for i, cls in enumerate(y):
        path = _trajectory(rng, int(cls))
        width = float(rng.integers(2, 5))
        on = np.abs(pix[None, :] - path[:, None]) < width / 2.0  # NaN rows compare False
        fire = rng.random((TIMESTEPS, PIXELS)) < _EVENT_P
        noise = rng.random((TIMESTEPS, PIXELS)) < _NOISE_P
        x[:, i, :] = ((on & fire) | noise).astype(np.float32)
    return x, y


def build_model() -> nn.Sequential:
    """FC(32->128) beta 0.3 -> FC(128->128) beta 0.9 -> FC(128->8) beta 0.97, zero reset."""

    def lif(beta: float, **kw: object) -> snn.Leaky:
        return snn.Leaky(beta=beta, threshold=1.0, init_hidden=True, reset_mechanism="zero", **kw)

    return nn.Sequential(
        nn.Linear(PIXELS, HIDDEN),
        lif(BETAS[0]),
        nn.Linear(HIDDEN, HIDDEN),
        lif(BETAS[1]),
        nn.Linear(HIDDEN, CLASSES),
        lif(BETAS[2], output=True),
    )


def weights_path() -> Path:
    """Where the trained state_dict ships (package data)."""
    return Path(str(resources.files("slamp_deploy.examples") / "temporal_mlp.pt"))


def write_npz(directory: str | Path) -> tuple[Path, Path]:
    """Write the fixed training and evaluation sets as ``temporal_{train,eval}.npz``."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    out = []
    for name, n, seed in (("train", TRAIN_SAMPLES, TRAIN_SEED), ("eval", EVAL_SAMPLES, EVAL_SEED)):
        x, y = make_events(n, seed)
        p = d / f"temporal_{name}.npz"
        np.savez(p, x=x, y=y)
        out.append(p)
    return out[0], out[1]
