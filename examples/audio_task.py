"""A third temporal task, audio-like: tone patterns through a 16-band filter bank into spikes.

Each sample is a 0.256 s synthetic waveform at 8 kHz (a tone whose frequency follows one of 8
patterns, plus white noise), cut into ``TIMESTEPS`` = 32 frames of 8 ms. A bank of ``CHANNELS``
= 16 triangular band-pass filters on a log-frequency axis (150 Hz to 3.6 kHz, applied to the
frame's short-time spectrum, window 16 ms) gives one band energy per channel and frame; a band
fires a spike in a frame with probability ``0.85 * e / e_max`` (``e_max`` the clip's largest band
energy), plus 1% background spikes. This is the shape of an audio front-end like Xylo's (16
spiking input channels), so the network also fits the XyloAudio profiles' input count.

====  ==================================================================================
0, 1  up-chirp / down-chirp (log-linear sweep over 1.6 to 2.6 octaves)
2, 3  two-tone step up / step down (a low tone, then a tone 1.3 to 2.3 octaves higher)
4, 5  rise-fall / fall-rise (a sweep out and back to the start frequency)
6, 7  pulsed tone, slow (2 pulses) / fast (6 pulses), same duty cycle
====  ==================================================================================

Start frequency, sweep span, onset (0 to 4 frames), duration (22 to 28 frames), amplitude,
signal-to-noise ratio (3 to 15 dB) and the spikes come from one seeded generator, so
:func:`make_spikes` is a pure function of ``(n, seed)``. The pairs differ in kind from the
motion task: 0/1, 2/3 and 4/5 light the same bands in the opposite order, and 6/7 light the same
band for the same total time at two rhythms, so a network that sums memoryless per-frame
responses cannot separate any pair (tested: ``test_audio_pairs_share_their_bands``).

``build_model()`` mixes time constants inside its layers, unlike the motion task's one beta per
layer: FC(16->128) Leaky with per-neuron beta spread evenly from 0.5 to 0.95, FC(128->128)
Synaptic (alpha 0.6, per-neuron beta 0.7 to 0.97), FC(128->8) Leaky beta 0.9; subtract reset.
The trained weights ``audio_mlp.pt`` come from ``examples/train_audio.py``.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np
import snntorch as snn
import torch
from torch import nn

TIMESTEPS = 32
CHANNELS = 16
CLASSES = 8
HIDDEN = 128
READOUT = "spikes"
#: per-layer decay ranges (first and last value of an even per-neuron spread; equal: one value)
BETA_RANGES = ((0.5, 0.95), (0.7, 0.97), (0.9, 0.9))
ALPHA = 0.6  # synaptic-current decay of the second layer
RESET = "subtract"
TRAIN_SEED, EVAL_SEED = 4321, 8765
TRAIN_SAMPLES, EVAL_SAMPLES = 3000, 1000

FS = 8000  # Hz
HOP = 64  # samples per frame (8 ms)
WIN = 128  # STFT window (16 ms)
F_LO, F_HI = 150.0, 3600.0
_SPIKE_P, _NOISE_P = 0.85, 0.01


def _filter_bank() -> np.ndarray:
    """[CHANNELS, WIN//2+1] triangular filters, centres log-spaced in [F_LO, F_HI]."""
    freqs = np.fft.rfftfreq(WIN, 1.0 / FS)
    edges = np.geomspace(F_LO * 0.8, F_HI * 1.25, CHANNELS + 2)
    bank = np.zeros((CHANNELS, len(freqs)))
    for b in range(CHANNELS):
        lo, mid, hi = edges[b], edges[b + 1], edges[b + 2]
        up = (freqs - lo) / (mid - lo)
        down = (hi - freqs) / (hi - mid)
        bank[b] = np.clip(np.minimum(up, down), 0.0, None)
    return bank / np.maximum(bank.sum(axis=1, keepdims=True), 1e-12)


def _frequency_track(rng: np.random.Generator, cls: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame frequency (Hz) and on/off gate (0/1) of class ``cls``, both ``[TIMESTEPS]``."""
    T = TIMESTEPS
    kind, variant = divmod(cls, 2)
    onset = int(rng.integers(0, 5))
    dur = min(int(rng.integers(22, 29)), T - onset)
    u = np.linspace(0.0, 1.0, dur)
    gate = np.zeros(T)
    gate[onset:onset + dur] = 1.0
    if kind == 0:  # chirp: octaves linear in time
        span = rng.uniform(1.6, 2.6)
        f0 = rng.uniform(F_LO * 1.3, F_HI / 2 ** span / 1.1)
        oct_ = span * (u if variant == 0 else 1.0 - u)
    elif kind == 1:  # two-tone step
        span = rng.uniform(1.3, 2.3)
        f0 = rng.uniform(F_LO * 1.3, F_HI / 2 ** span / 1.1)
        at = dur // 2 + int(rng.integers(-2, 3))
        high = np.arange(dur) >= at
        oct_ = span * (high if variant == 0 else ~high).astype(np.float64)
    elif kind == 2:  # out and back
        span = rng.uniform(1.3, 2.3)
        f0 = rng.uniform(F_LO * 1.3, F_HI / 2 ** span / 1.1)
        tri = 1.0 - np.abs(2.0 * u - 1.0)
        oct_ = span * (tri if variant == 0 else 1.0 - tri)
    else:  # pulsed tone: 2 or 6 pulses, duty cycle 1/2
        f0 = rng.uniform(F_LO * 2, F_HI / 2)
        oct_ = np.zeros(dur)
        pulses = 2 if variant == 0 else 6
        phase = (np.arange(dur) * pulses / dur) % 1.0
        gate[onset:onset + dur] = (phase < 0.5).astype(np.float64)
    f = np.full(T, f0)
    f[onset:onset + dur] = f0 * 2.0 ** oct_
    return f, gate


def _waveform(rng: np.random.Generator, f: np.ndarray, gate: np.ndarray) -> np.ndarray:
    """The tone following ``f`` (per frame, interpolated per sample) under ``gate``, plus noise."""
    n = TIMESTEPS * HOP
    frame_t = (np.arange(TIMESTEPS) + 0.5) * HOP
    inst = np.interp(np.arange(n), frame_t, f)
    env = np.interp(np.arange(n), frame_t, gate)
    phase = 2 * np.pi * np.cumsum(inst) / FS + rng.uniform(0, 2 * np.pi)
    amp = rng.uniform(0.3, 1.0)
    snr_db = rng.uniform(3.0, 15.0)
    noise = rng.standard_normal(n) * amp / np.sqrt(2) / 10 ** (snr_db / 20)
    return amp * env * np.sin(phase) + noise


def band_energies(wave: np.ndarray) -> np.ndarray:
    """[TIMESTEPS, CHANNELS] filter-bank magnitudes of one waveform (Hann-windowed frames)."""
    padded = np.pad(wave, (WIN // 2, WIN // 2))
    idx = np.arange(TIMESTEPS)[:, None] * HOP + np.arange(WIN)[None, :]
    spec = np.abs(np.fft.rfft(padded[idx] * np.hanning(WIN), axis=1)) ** 2
    return np.sqrt(spec @ _filter_bank().T)


def make_spikes(n: int, seed: int, first: int | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
    """``n`` samples as spikes ``x`` [T, n, CHANNELS] (float32, 0/1) and labels ``y`` [n] (int64).

    Deterministic: the same ``(n, seed)`` gives bit-identical arrays. Classes are balanced
    (``i % CLASSES``) and shuffled. ``first`` generates only the first samples of the ``n``,
    bit-identical to slicing the full arrays: the labels are drawn for all ``n``, then the
    generator draws sample by sample (the quick benchmark uses 200 of 3000).
    """
    rng = np.random.default_rng(seed)
    y = rng.permutation(np.arange(n) % CLASSES).astype(np.int64)
    if first is not None:
        y = y[:first]
    x = np.zeros((TIMESTEPS, len(y), CHANNELS), dtype=np.float32)
    for i, cls in enumerate(y):
        f, gate = _frequency_track(rng, int(cls))
        e = band_energies(_waveform(rng, f, gate))
        p = _SPIKE_P * e / max(float(e.max()), 1e-12)
        fire = rng.random(p.shape) < p
        noise = rng.random(p.shape) < _NOISE_P
        x[:, i, :] = (fire | noise).astype(np.float32)
    return x, y


def _spread(lo: float, hi: float, n: int) -> torch.Tensor | float:
    return lo if lo == hi else torch.linspace(lo, hi, n)


def build_model() -> nn.Sequential:
    """FC(16->128) Leaky (beta 0.5..0.95 per neuron) -> FC(128->128) Synaptic (alpha 0.6, beta
    0.7..0.97 per neuron) -> FC(128->8) Leaky beta 0.9; subtract reset, threshold 1."""
    (a0, a1), (b0, b1), (c0, c1) = BETA_RANGES
    common = {"threshold": 1.0, "init_hidden": True, "reset_mechanism": RESET}
    return nn.Sequential(
        nn.Linear(CHANNELS, HIDDEN),
        snn.Leaky(beta=_spread(a0, a1, HIDDEN), **common),
        nn.Linear(HIDDEN, HIDDEN),
        snn.Synaptic(alpha=ALPHA, beta=_spread(b0, b1, HIDDEN), **common),
        nn.Linear(HIDDEN, CLASSES),
        snn.Leaky(beta=_spread(c0, c1, CLASSES), output=True, **common),
    )


def weights_path() -> Path:
    """Where the trained state_dict ships (package data)."""
    return Path(str(resources.files("slamp_deploy.examples") / "audio_mlp.pt"))
