"""The audio-like benchmark task: deterministic data, pairs that need memory, shipped weights."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from slamp_deploy.examples import audio_task as at

from slamp_deploy.model.graph import neuron_spec, trace


def test_audio_task_is_deterministic_balanced_and_fits_xylo_inputs() -> None:
    x1, y1 = at.make_spikes(64, 3)
    x2, y2 = at.make_spikes(64, 3)
    assert x1.shape == (at.TIMESTEPS, 64, at.CHANNELS) == (32, 64, 16)
    assert x1.dtype == np.float32 and set(np.unique(x1)) <= {0.0, 1.0}
    assert np.array_equal(x1, x2) and np.array_equal(y1, y2)
    assert np.bincount(y1, minlength=at.CLASSES).tolist() == [8] * at.CLASSES
    assert not np.array_equal(x1, at.make_spikes(64, 4)[0])


def test_audio_pairs_share_their_bands() -> None:
    """Summed over time, each pair lights the same bands about equally: only the order (chirps,
    steps, out-and-back) or the rhythm (pulses) tells them apart, which needs memory."""
    x, y = at.make_spikes(1600, 0)
    counts = x.sum(0)  # [N, CHANNELS]: what a memoryless sum over time sees
    for k in range(0, at.CLASSES, 2):
        a, b = counts[y == k].mean(0), counts[y == k + 1].mean(0)
        assert np.abs(a - b).sum() / a.sum() < 0.15, k
    # while the order differs: the up-chirp's centre of mass in time rises with the band
    t = np.arange(at.TIMESTEPS)[:, None]
    up, down = x[:, y == 0].sum(1), x[:, y == 1].sum(1)  # [T, CHANNELS]
    com_up = (t * up).sum(0) / up.sum(0)
    com_down = (t * down).sum(0) / down.sum(0)
    assert com_up[12] - com_up[4] > 2 and com_down[4] - com_down[12] > 2


def test_filter_bank_puts_a_tone_in_its_band() -> None:
    n = at.TIMESTEPS * at.HOP
    lo, hi = (np.sin(2 * np.pi * f * np.arange(n) / at.FS) for f in (300.0, 2400.0))
    assert at.band_energies(lo).mean(0).argmax() < at.band_energies(hi).mean(0).argmax()


def test_model_mixes_time_constants_inside_layers_and_ships_trained_weights() -> None:
    model = at.build_model()
    g = trace(model, (at.CHANNELS,))
    kinds = [la.neuron.kind for la in g.layers]
    assert kinds == ["leaky", "synaptic", "leaky"]
    b0 = neuron_spec(g.layers[0].neuron).beta
    assert b0.shape == (at.HIDDEN,) and float(b0.min()) == pytest.approx(0.5)
    assert float(b0.max()) == pytest.approx(0.95)
    state = torch.load(at.weights_path(), weights_only=True)
    model.load_state_dict(state, strict=False)
    meta = json.loads(at.weights_path().with_suffix(".json").read_text())
    assert meta["eval_accuracy"] > 3 * meta["chance"]
    # the shipped weights classify fresh samples of the evaluation seed far above chance
    from slamp_deploy.examples.train_temporal import run

    x, y = at.make_spikes(200, at.EVAL_SEED)
    model.eval()
    with torch.no_grad():
        acc = (run(model, torch.from_numpy(x)).argmax(1) == torch.from_numpy(y)).float().mean()
    assert float(acc) > 2 * meta["chance"]


def test_the_first_samples_are_the_full_sets_prefix():
    """``first`` (what the quick benchmark uses) generates exactly the first samples of the n."""
    from slamp_deploy.examples.temporal_task import make_events

    for make in (at.make_spikes, make_events):
        x, y = make(40, 7)
        xf, yf = make(40, 7, first=9)
        assert np.array_equal(xf, x[:, :9]) and np.array_equal(yf, y[:9])
        assert np.array_equal(make(40, 7, first=99)[0], x)
