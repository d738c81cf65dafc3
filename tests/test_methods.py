"""The method registry: every registered method honours the allocation contract, and a method
registered in a test is usable by allocate() without editing any other file."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import numpy as np
import pytest
import torch

from slamp_deploy.errors import UnknownTargetError, UsageError
from slamp_deploy.geometry import LayerGeometry
from slamp_deploy.prune import methods
from slamp_deploy.prune.allocate import ChipCaps, allocate, global_keep
from slamp_deploy.prune.masks import magnitude_mask
from slamp_deploy.prune.methods import (
    DensityMethod,
    ScoreMethod,
    available_methods,
    get_method,
    register_method,
)

METHOD_NAMES = available_methods()
SCORE_NAMES = available_methods("score")


def _layers(seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    shapes = [(8, 4), (12, 8), (4, 2, 3, 3), (10, 12), (5, 10)]
    return {f"l{i}": torch.randn(s, generator=g) * (i + 1) for i, s in enumerate(shapes)}


def _alive(weights: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {n: torch.ones_like(w, dtype=torch.bool) for n, w in weights.items()}


def _lambdas(weights: Mapping[str, torch.Tensor]) -> dict[str, float]:
    return {n: 1.0 + 0.5 * i for i, n in enumerate(weights)}


@pytest.fixture
def registry() -> Iterator[None]:
    """Registrations made inside a test are undone afterwards."""
    saved = dict(methods._REGISTRY)
    try:
        yield
    finally:
        methods._REGISTRY.clear()
        methods._REGISTRY.update(saved)


def test_the_builtin_methods_in_their_order() -> None:
    assert METHOD_NAMES == ("slamp", "lamp", "global", "uniform", "uniform+", "erk")
    assert SCORE_NAMES == ("slamp", "lamp", "global")
    assert available_methods("density") == ("uniform", "uniform+", "erk")
    assert [get_method(n).uses_lambdas for n in METHOD_NAMES] == [True] + [False] * 5


def test_unknown_method_lists_the_known_names() -> None:
    with pytest.raises(UnknownTargetError, match="slamp, lamp, global, uniform, uniform\\+, erk"):
        get_method("snip")


def test_a_name_registers_once(registry: None) -> None:
    with pytest.raises(UsageError, match="'lamp' is registered twice"):
        @register_method
        class Again(DensityMethod):
            name = "lamp"

            def densities(self, shapes, density, order):  # type: ignore[no-untyped-def]
                return {}


@pytest.mark.parametrize("name", METHOD_NAMES)
@pytest.mark.parametrize("sparsity", [0.5, 0.8])  # targets every built-in rule can meet
def test_every_method_reaches_the_target_within_one_weight_per_layer(name: str,
                                                                     sparsity: float) -> None:
    weights = _layers(1)
    plan = allocate(name, weights, _alive(weights), sparsity, lambdas=_lambdas(weights))
    k = global_keep(sum(w.numel() for w in weights.values()), sparsity)
    assert plan.method == name and [lay.name for lay in plan.layers] == list(weights)
    assert plan.n_kept == sum(plan.keep.values())
    if get_method(name).kind == "score":
        # the global top-k is exact, plus one weight for each layer the threshold would empty
        floor = sum(b == "min_one_per_layer" for b in plan.binding.values())
        assert plan.n_kept == k + floor
    else:
        assert abs(plan.n_kept - k) <= len(weights)  # each layer rounds by at most half a weight
        for lay in plan.layers:
            assert lay.layer_score is not None
            assert abs(lay.n_kept - lay.layer_score * lay.n_weights) <= 0.5 or lay.n_kept == 1
    for lay in plan.layers:
        assert 1 <= lay.n_kept <= lay.n_weights
        assert lay.binding.startswith(name + ".") or lay.binding == "min_one_per_layer"


@pytest.mark.parametrize("name", METHOD_NAMES)
def test_every_method_is_deterministic(name: str) -> None:
    a = allocate(name, _layers(2), _alive(_layers(2)), 0.85, lambdas=_lambdas(_layers(2)))
    b = allocate(name, _layers(2), _alive(_layers(2)), 0.85, lambdas=_lambdas(_layers(2)))
    assert a.keep == b.keep and a.binding == b.binding and a.layer_score == b.layer_score


@pytest.mark.parametrize("name", SCORE_NAMES)
def test_score_methods_keep_magnitude_order_within_a_layer_where_they_claim_to(name: str) -> None:
    m = get_method(name)
    assert isinstance(m, ScoreMethod)
    for w in _layers(3).values():
        s = m.scores(w, 2.5).flatten()
        by_mag = torch.argsort(w.abs().flatten(), stable=True)
        if m.magnitude_order:
            assert bool((s[by_mag].diff() >= 0).all())


@pytest.mark.parametrize("name", SCORE_NAMES)
def test_sorted_scores_are_the_scores_sorted_bit_for_bit(name: str) -> None:
    """The one definition of a method's score: the fast count path must equal it exactly."""
    m = get_method(name)
    assert isinstance(m, ScoreMethod)
    g = torch.Generator().manual_seed(4)
    w = torch.round(torch.randn(9, 7, generator=g) * 4) / 4  # ties and zeros
    for lam in (1.0, 3.25):
        fast = m.sorted_scores(w, lam)
        slow = torch.sort(m.scores(w, lam).flatten(), descending=True).values.neg()
        assert fast.dtype == torch.float64 and torch.equal(fast, slow)


def _geometry(weights: Mapping[str, torch.Tensor]) -> tuple[LayerGeometry, ...]:
    return tuple(LayerGeometry(name=n, kind="linear", in_shape=(w.shape[1],),
                               out_shape=(w.shape[0],), mask=np.ones(tuple(w.shape), bool),
                               neuron_shape=(w.shape[0],))
                 for n, w in weights.items() if w.dim() == 2)


@pytest.mark.parametrize("name", METHOD_NAMES)
def test_caps_that_never_bind_give_the_uncapped_plan(name: str) -> None:
    # layers of one scale: no layer needs the uncapped one-weight floor, which the capped greedy
    # (global count only) does not repeat
    weights = {n: w / (i + 1) for i, (n, w) in enumerate(_layers(5).items()) if w.dim() == 2}
    alive, lam = _alive(weights), _lambdas(weights)
    free = allocate(name, weights, alive, 0.8, lambdas=lam)
    capped = allocate(name, weights, alive, 0.8, lambdas=lam,
                      caps=ChipCaps(layers=_geometry(weights), caps={}))
    assert capped.keep == free.keep and capped.binding == free.binding
    assert capped.layer_score == free.layer_score
    for lay in capped.layers:
        assert lay.mask is not None
        mag = magnitude_mask(weights[lay.name], lay.n_kept, alive[lay.name]).numpy()
        assert (lay.mask == mag).all()


def test_a_toy_method_registered_here_is_usable_by_allocate(registry: None) -> None:
    @register_method
    class EveryOther(DensityMethod):
        """Even layers keep twice the odd layers' density."""

        name = "toy-every-other"

        def densities(self, shapes: Mapping[str, tuple[int, ...]], density: float,
                      order: Sequence[str]) -> dict[str, float]:
            return {n: min(1.0, density * (4 / 3 if i % 2 == 0 else 2 / 3))
                    for i, n in enumerate(order)}

    @register_method
    class SmallestFirst(ScoreMethod):
        """Keeps the smallest weights: not the magnitude order, so the plan carries masks."""

        name = "toy-smallest"
        magnitude_order = False

        def scores(self, weight: torch.Tensor, lam: float) -> torch.Tensor:
            w = weight.detach().abs().double()
            return torch.where(w > 0, 1.0 / (1.0 + w), 0.0)

    assert available_methods()[-2:] == ("toy-every-other", "toy-smallest")
    weights = _layers(6)
    alive = _alive(weights)
    dens = allocate("toy-every-other", weights, alive, 0.7)
    assert dens.binding["l0"] == "toy-every-other.density"
    assert dens.layer_score["l0"] == pytest.approx(2 * dens.layer_score["l1"])
    small = allocate("toy-smallest", weights, alive, 0.7)
    assert small.n_kept == global_keep(sum(w.numel() for w in weights.values()), 0.7)
    for lay in small.layers:
        w = weights[lay.name].abs().numpy()
        assert lay.mask is not None and int(lay.mask.sum()) == lay.n_kept
        if 0 < lay.n_kept < lay.n_weights:
            assert w[lay.mask].max() <= w[~lay.mask].min()
