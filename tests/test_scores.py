"""Pruning invariants of the scores and the allocation (property tests where they fit)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from slamp_deploy.errors import UnknownTargetError, UsageError
from slamp_deploy.prune.allocate import allocate, global_keep
from slamp_deploy.prune.masks import magnitude_mask
from slamp_deploy.prune.methods import available_methods, get_method, lamp_scores
from slamp_deploy.prune.temporal import impulse_response, temporal_factor


def reference_lamp(weight: torch.Tensor) -> torch.Tensor:
    """jaeho-lee/layer-adaptive-sparsity ``_normalize_scores`` applied to w**2."""
    scores = weight.double() ** 2
    sorted_scores, sorted_idx = scores.view(-1).sort(descending=False)
    cumsum_temp = sorted_scores.cumsum(dim=0)
    cumsum = torch.zeros(cumsum_temp.shape, dtype=torch.float64)
    cumsum[1:] = cumsum_temp[: len(cumsum_temp) - 1]
    sorted_scores /= scores.sum() - cumsum
    new = torch.zeros(cumsum.shape, dtype=torch.float64)
    new[sorted_idx] = sorted_scores
    return new.view(scores.shape)


layer_shapes = st.sampled_from([(5,), (4, 3), (7, 2), (3, 2, 3, 3), (16, 9)])


@settings(max_examples=60, deadline=None)
@given(shape=layer_shapes, seed=st.integers(0, 10_000))
def test_lamp_matches_reference_definition(shape, seed):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(shape, generator=g)
    ours = lamp_scores(w)
    assert torch.allclose(ours, reference_lamp(w), rtol=1e-12, atol=0)
    # and the plain definition: w^2 / sum of squares of weights at least as large (no ties here)
    sq = (w.double() ** 2).flatten()
    direct = torch.stack([sq[i] / sq[sq >= sq[i]].sum() for i in range(sq.numel())])
    assert torch.allclose(ours.flatten(), direct, rtol=1e-12)


@settings(max_examples=40, deadline=None)
@given(shape=layer_shapes, seed=st.integers(0, 10_000), scale=st.floats(1e-3, 1e3))
def test_lamp_range_max_one_scale_invariant(shape, seed, scale):
    w = torch.randn(shape, generator=torch.Generator().manual_seed(seed))
    s = lamp_scores(w)
    assert float(s.max()) == pytest.approx(1.0, abs=1e-12)
    assert float(s.flatten()[w.abs().flatten().argmax()]) == pytest.approx(1.0, abs=1e-12)
    assert torch.all((s > 0) & (s <= 1 + 1e-12))
    assert torch.allclose(lamp_scores(w * scale), s, rtol=1e-5)  # float32 product


def test_lamp_pruned_weights_score_zero():
    w = torch.tensor([0.0, 0.5, 0.0, -2.0])
    s = lamp_scores(w)
    assert s[0] == 0 and s[2] == 0 and s[3] == 1.0
    assert s[1] == pytest.approx(0.25 / 4.25)


@settings(max_examples=60, deadline=None)
@given(beta=st.floats(0.0, 0.99), T=st.integers(1, 32))
def test_lambda_closed_forms(beta, T):
    h = impulse_response("leaky", beta, 0.0, T)
    ones = np.ones(T)
    assert temporal_factor(h, ones, ones) == pytest.approx((1 - beta**T) / (1 - beta), rel=1e-9)
    last = np.zeros(T)
    last[-1] = 0.7
    assert temporal_factor(h, last, ones) == pytest.approx(1.0)
    # T = 1 and beta = 0 give LAMP (lambda = 1) whatever the activity
    assert temporal_factor(h[:1], np.array([0.3]), np.array([1.0])) == 1.0
    h0 = impulse_response("leaky", 0.0, 0.0, T)
    act = np.linspace(0.1, 1.0, T)
    assert temporal_factor(h0, act, ones) == pytest.approx(1.0)
    for variant in ("l2", "sqrt"):
        assert temporal_factor(h[:1], np.array([0.3]), np.array([1.0]), variant) == 1.0
        assert temporal_factor(h0, act, ones, variant) == pytest.approx(1.0)


def test_synaptic_impulse_response():
    h = impulse_response("synaptic", 0.5, 0.5, 3)  # beta, alpha
    assert h.tolist() == pytest.approx([1.0, 1.0, 0.75])
    assert temporal_factor(np.array([1.0, 0.0]), np.ones(2), np.ones(2)) == 1.0


def _random_layers(seed: int, n_layers: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    shapes = [(8, 4), (6, 8), (3, 2, 3, 3), (10, 6), (5, 5)][:n_layers]
    return {f"l{i}": torch.randn(s, generator=g) * (i + 1) for i, s in enumerate(shapes)}


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 1000), n_layers=st.integers(1, 5),
       sparsity=st.floats(0.0, 0.999), method=st.sampled_from(available_methods()),
       lam=st.lists(st.floats(1.0, 8.0), min_size=5, max_size=5))
def test_allocation_invariants(seed, n_layers, sparsity, method, lam):
    weights = _random_layers(seed, n_layers)
    alive = {n: torch.ones_like(w, dtype=torch.bool) for n, w in weights.items()}
    lambdas = {n: lam[i] for i, n in enumerate(weights)}
    alloc = allocate(method, weights, alive, sparsity, lambdas=lambdas)
    total = sum(w.numel() for w in weights.values())
    k = global_keep(total, sparsity)
    for n, w in weights.items():
        keep = alloc.keep[n]
        assert 1 <= keep <= w.numel(), "no layer is ever emptied"
        m = magnitude_mask(w, keep, alive[n])
        assert int(m.sum()) == keep
        if keep < w.numel():  # within a layer: every kept weight is at least every pruned one
            assert float(w.abs()[m].min()) >= float(w.abs()[~m].max())
    if get_method(method).kind == "score":
        # the global count is exact, except that a layer the threshold would empty keeps one
        assert 0 <= sum(alloc.keep.values()) - k <= n_layers
        if method == "lamp" and k >= n_layers:
            assert sum(alloc.keep.values()) == k
    elif method == "uniform+":
        names = list(weights)
        first, last = names[0], names[-1]
        assert alloc.keep[first] == weights[first].numel(), "uniform+ keeps the first layer dense"
        floor = weights[first].numel() + (0.2 * weights[last].numel() if n_layers > 1 else 0)
        if k >= floor + n_layers:  # the rule's fixed layers fit the budget: the rest rounds
            assert abs(sum(alloc.keep.values()) - k) <= n_layers
    else:  # uniform, erk: per-layer rounding (<= 0.5 each) and at least one weight per layer
        assert abs(sum(alloc.keep.values()) - k) <= n_layers


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 1000), s1=st.floats(0.0, 0.98), ds=st.floats(0.0, 0.5))
def test_raising_the_target_never_unprunes(seed, s1, ds):
    weights = _random_layers(seed, 4)
    alive = {n: torch.ones_like(w, dtype=torch.bool) for n, w in weights.items()}
    lambdas = {n: 1.0 + i for i, n in enumerate(weights)}
    s2 = min(0.999, s1 + ds)
    a1 = allocate("slamp", weights, alive, s1, lambdas=lambdas)
    a2 = allocate("slamp", weights, alive, s2, lambdas=lambdas)
    for n in weights:
        assert a2.keep[n] <= a1.keep[n]


def test_slamp_with_unit_lambdas_is_lamp():
    weights = _random_layers(3, 5)
    alive = {n: torch.ones_like(w, dtype=torch.bool) for n, w in weights.items()}
    for s in (0.3, 0.7, 0.9, 0.97):
        a = allocate("slamp", weights, alive, s, lambdas={n: 1.0 for n in weights})
        b = allocate("lamp", weights, alive, s)
        assert a.keep == b.keep


def test_magnitude_mask_never_revives():
    w = torch.tensor([3.0, 2.0, 1.0, 0.5])
    alive = torch.tensor([False, True, True, True])
    m = magnitude_mask(w, 2, alive)
    assert m.tolist() == [False, True, True, False]


def test_uniform_plus_keeps_first_dense_and_last_at_least_20_percent():
    weights = _random_layers(0, 4)
    alive = {n: torch.ones_like(w, dtype=torch.bool) for n, w in weights.items()}
    a = allocate("uniform+", weights, alive, 0.9)
    assert a.keep["l0"] == weights["l0"].numel()
    assert a.keep["l3"] >= math.floor(0.2 * weights["l3"].numel())


def test_erk_densities_follow_shape_rule():
    weights = {"a": torch.randn(100, 100), "b": torch.randn(10, 100)}
    alive = {n: torch.ones_like(w, dtype=torch.bool) for n, w in weights.items()}
    a = allocate("erk", weights, alive, 0.9)
    da, db = a.layer_score["a"], a.layer_score["b"]
    # density proportional to (n_in + n_out) / (n_in * n_out)
    assert db / da == pytest.approx((110 / 1000) / (200 / 10000), rel=1e-9)


@pytest.mark.parametrize(("method", "sparsity", "error"), [
    ("nope", 0.5, UnknownTargetError), ("lamp", 1.0, UsageError), ("lamp", -0.1, UsageError)])
def test_allocate_rejects_bad_input(method, sparsity, error):
    w = {"a": torch.randn(3, 3)}
    with pytest.raises(error):
        allocate(method, w, {"a": torch.ones(3, 3, dtype=torch.bool)}, sparsity)


def reference_counts(method, weights, alive, sparsity, lambdas):
    """The straightforward allocation: one stable global sort of all scores (what allocate()
    did before it learnt to sort each layer once and bisect for the threshold)."""
    names = list(weights)
    total = sum(w.numel() for w in weights.values())
    k = min(global_keep(total, sparsity), sum(int(a.sum()) for a in alive.values()))
    scores = []
    for n in names:
        w = weights[n] * alive[n]
        if method == "global":
            scores.append(w.abs().double().flatten())
        else:
            lam = lambdas[n] if method == "slamp" else 1.0
            scores.append((lamp_scores(w) * lam).flatten())
    owner = torch.cat([torch.full((s.numel(),), i) for i, s in enumerate(scores)])
    top = torch.sort(-torch.cat(scores), stable=True).indices[:k]
    counts = torch.bincount(owner[top], minlength=len(names)).tolist()
    return {n: (1 if c == 0 and int(alive[n].sum()) > 0 else c)
            for n, c in zip(names, counts, strict=True)}


@settings(max_examples=80, deadline=None)
@given(seed=st.integers(0, 10_000), ties=st.booleans(), sparsity=st.floats(0.0, 0.999),
       method=st.sampled_from(["slamp", "lamp", "global"]))
def test_allocation_equals_the_global_sort_reference(seed, ties, sparsity, method):
    g = torch.Generator().manual_seed(seed)
    weights = {f"l{i}": torch.randn(int(torch.randint(1, 200, (1,), generator=g)), generator=g)
               * float(10 ** torch.randn(1, generator=g)) for i in range(4)}
    if ties:
        weights = {k: torch.round(v * 2) / 2 for k, v in weights.items()}  # ties and zeros
    alive = {k: (v != 0) & (torch.rand(v.shape, generator=g) > 0.2) for k, v in weights.items()}
    lambdas = {k: 1.0 + 4 * float(torch.rand(1, generator=g)) for k in weights}
    got = allocate(method, weights, alive, sparsity, lambdas=lambdas).keep
    assert got == reference_counts(method, weights, alive, sparsity, lambdas)
