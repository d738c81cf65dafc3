"""Masks stay fixed through retraining (one-shot and iterative); current matching is exact."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from slamp_deploy.config import PipelineConfig
from slamp_deploy.data import from_arrays
from slamp_deploy.model.graph import trace
from slamp_deploy.pipeline import run as pipeline
from slamp_deploy.prune.masks import apply_masks, magnitude_mask
from slamp_deploy.prune.recover import match_currents, synaptic_current
from slamp_deploy.prune.retrain import retrain

from .conftest import tiny_mlp


def _toy_data(n: int = 96, seed: int = 0):
    rng = np.random.default_rng(seed)
    return from_arrays(rng.random((n, 64)).astype(np.float32), rng.integers(0, 10, n),
                       source="toy")


def test_retraining_keeps_pruned_weights_exactly_zero():
    torch.manual_seed(0)
    g = trace(tiny_mlp(), (64,))
    masks = {la.name: magnitude_mask(la.weight, la.n_weights // 5) for la in g.layers}
    apply_masks(g, masks)
    before = {la.name: la.weight.detach().clone() for la in g.layers}
    retrain(g, masks, _toy_data(), epochs=2, timesteps=4, encoding="rate", readout="spikes",
            lr=0.05, batch_size=16)
    for la in g.layers:
        assert torch.all(la.weight[~masks[la.name]] == 0)
        assert not torch.equal(la.weight, before[la.name]), "kept weights were trained"


@pytest.mark.slow
def test_iterative_rounds_are_nested_and_stay_zero(tmp_path, monkeypatch, tiny_model_file,
                                                   tiny_weights, digits_npz):
    seen = []
    real = pipeline.masks_from_plan

    def spy(graph, alloc, alive):
        masks = real(graph, alloc, alive)
        seen.append({k: v.clone() for k, v in masks.items()})
        return masks

    monkeypatch.setattr(pipeline, "masks_from_plan", spy)
    cfg = PipelineConfig(model=f"{tiny_model_file}:build", weights=str(tiny_weights),
                         data=str(digits_npz), timesteps=4, sparsity=0.8, epochs=1,
                         schedule="iterative", rounds=3, calib_samples=64,
                         out=str(tmp_path / "o"))
    result = pipeline.run(cfg)
    assert len(seen) == 3
    for a, b in itertools.pairwise(seen):
        for k in a:
            assert torch.all(a[k] | ~b[k]), "a later round revived a pruned weight"
    kept = [sum(int(m.sum()) for m in s.values()) for s in seen]
    assert kept[0] > kept[1] > kept[2] == round(0.2 * (64 * 32 + 32 * 10))
    for la in result.graph.layers:
        assert torch.equal(la.weight != 0, seen[-1][la.name] & (la.weight != 0))
        assert torch.all(la.weight[~seen[-1][la.name]] == 0)


def test_current_matching_is_the_least_squares_factor():
    torch.manual_seed(1)
    g = trace(tiny_mlp(), (64,))
    data = _toy_data(32)
    dense = {la.name: la.weight.detach().clone() for la in g.layers}
    masks = {la.name: magnitude_mask(la.weight, la.n_weights // 4) for la in g.layers}
    apply_masks(g, masks)
    first = g.layers[0]
    pruned_w = first.weight.detach().clone()
    factors = match_currents(g, dense, masks, data, timesteps=3, encoding="direct")
    # first layer: the input is the data itself at every step
    x = data.x
    ip = synaptic_current(first, x, pruned_w)
    idn = synaptic_current(first, x, dense[first.name])
    expected = (ip * idn).sum(0) / (ip * ip).sum(0)
    expected = torch.where(expected > 0, expected, torch.ones_like(expected))
    assert torch.allclose(torch.tensor(factors[first.name]), expected, rtol=1e-5)
    assert torch.all(first.weight[~masks[first.name]] == 0)
    # the corrected current is closer to the dense one than the uncorrected current
    corrected = synaptic_current(first, x, first.weight.detach())
    assert (corrected - idn).norm() < (ip - idn).norm()


def test_encoders():
    from slamp_deploy.data import encode

    x = torch.tensor([[0.0, 0.5, 1.0, 0.2]])
    lat = encode(x, 5, "latency")
    assert lat.shape == (5, 1, 4)
    assert lat.sum(0).tolist() == [[0.0, 1.0, 1.0, 1.0]]  # one spike per non-zero input
    assert lat[:, 0, 2].argmax() == 0 and lat[:, 0, 1].argmax() == 2 and lat[:, 0, 3].argmax() == 3
    d = encode(x, 3, "direct")
    assert torch.equal(d[2], x)
    g1, g2 = torch.Generator().manual_seed(4), torch.Generator().manual_seed(4)
    r1, r2 = encode(x, 50, "rate", generator=g1), encode(x, 50, "rate", generator=g2)
    assert torch.equal(r1, r2) and r1[:, 0, 0].sum() == 0 and r1[:, 0, 2].sum() == 50


def _stable_sort_mask(weight, keep, alive):
    """magnitude_mask's definition: the first ``keep`` of a stable descending sort of |w|
    (dead weights last), so ties go to the lower flat index."""
    w = weight.abs().flatten().double()
    if alive is not None:
        w = torch.where(alive.flatten(), w, torch.tensor(-1.0, dtype=w.dtype))
    mask = torch.zeros(w.numel(), dtype=torch.bool)
    mask[torch.sort(-w, stable=True).indices[:max(0, min(keep, w.numel()))]] = True
    if alive is not None:
        mask &= alive.flatten()
    return mask.reshape(weight.shape)


def test_magnitude_mask_is_the_stable_sorts_first_keep_ties_and_dead_weights_included():
    gen = torch.Generator().manual_seed(0)
    for trial in range(60):
        n = int(torch.randint(1, 40, (1,), generator=gen))
        w = torch.randint(-3, 4, (n,), generator=gen).float()  # many ties, zeros among them
        alive = torch.rand(n, generator=gen) < 0.7 if trial % 2 else None
        for keep in range(-1, n + 2):
            assert torch.equal(magnitude_mask(w, keep, alive), _stable_sort_mask(w, keep, alive))
