"""Calibration feeds SLAMP: T = 1 and memoryless neurons give exactly LAMP's allocation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from slamp_deploy.data import from_arrays
from slamp_deploy.model.graph import trace
from slamp_deploy.prune.allocate import allocate
from slamp_deploy.prune.calibrate import calibrate

from .conftest import tiny_mlp


def _data(n=64):
    rng = np.random.default_rng(0)
    return from_arrays(rng.random((n, 64)).astype(np.float32), rng.integers(0, 10, n),
                       source="toy")


def _scaled(beta1, beta2):
    torch.manual_seed(0)
    m = tiny_mlp(beta1, beta2)
    with torch.no_grad():
        for mod in m:
            if isinstance(mod, torch.nn.Linear):
                mod.weight.mul_(3)
    return trace(m, (64,))


def _lamp_equal(g, stats):
    weights = {la.name: la.weight for la in g.layers}
    alive = {n: torch.ones_like(w, dtype=torch.bool) for n, w in weights.items()}
    for s in (0.5, 0.8, 0.95):
        a = allocate("slamp", weights, alive, s, lambdas=stats.lambdas())
        b = allocate("lamp", weights, alive, s)
        assert a.keep == b.keep


@pytest.mark.parametrize("variant", ["max", "l2", "sqrt", "downstream"])
def test_single_timestep_is_lamp(variant):
    g = _scaled(0.8, 0.9)
    stats = calibrate(g, _data(), timesteps=1, encoding="direct", readout="spikes")
    assert stats.lambdas(variant) == {"0": 1.0, "2": 1.0}
    _lamp_equal(g, stats)


def test_memoryless_neurons_are_lamp():
    g = _scaled(0.0, 0.0)
    stats = calibrate(g, _data(), timesteps=8, encoding="direct", readout="spikes")
    assert stats.lambdas() == {"0": 1.0, "2": 1.0}
    _lamp_equal(g, stats)


def test_leaky_layers_get_temporal_factor_and_stats_shapes():
    g = _scaled(0.8, 0.9)
    stats = calibrate(g, _data(), timesteps=8, encoding="direct", readout="spikes")
    # direct encoding: the same input at every step, so layer 0 sees uniform activity and
    # lambda is the closed form (1 - beta^T) / (1 - beta)
    assert stats.lambdas()["0"] == pytest.approx((1 - 0.8**8) / (1 - 0.8), rel=1e-6)
    assert stats.lambdas()["2"] >= 1.0
    assert stats.activity_rms["0"].shape == (8,)
    assert np.allclose(stats.activity_rms["0"], stats.activity_rms["0"][0])
    assert stats.firing_rate["1"].shape == (8,)
    assert np.all(stats.timestep_weights == 1.0)


def test_gradient_timestep_weights_are_normalised():
    g = _scaled(0.8, 0.9)
    stats = calibrate(g, _data(), timesteps=8, encoding="direct", readout="spikes",
                      timestep_weights="gradient")
    w = stats.timestep_weights
    assert w.shape == (8,) and w.max() == pytest.approx(1.0) and np.all(w >= 0)
    assert stats.timestep_weights_source == "gradient"
    assert all(p.grad is None for p in g.model.parameters())
