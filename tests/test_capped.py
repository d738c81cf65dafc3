"""Capped allocation: optimal under laminar caps, never exceeds a cap; pruning until it fits."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slamp_deploy.chips import load_profile
from slamp_deploy.chips.family import profile_caps
from slamp_deploy.errors import InfeasibleTargetError, ModelError
from slamp_deploy.fit.check import check_fit
from slamp_deploy.fit.search import find_fit_keep
from slamp_deploy.geometry import LayerCaps, LayerGeometry
from slamp_deploy.prune.allocate import allocate_capped
from tests.golden.regenerate import fit_models


def _linear(name: str, n_in: int, n_out: int) -> LayerGeometry:
    return LayerGeometry(
        name=name,
        kind="linear",
        in_shape=(n_in,),
        out_shape=(n_out,),
        mask=np.ones((n_out, n_in), bool),
        neuron_shape=(n_out,),
    )


def _groups(caps: LayerCaps, n_rows: int) -> np.ndarray:
    starts = np.asarray(caps.group_starts)
    return np.searchsorted(starts, np.arange(n_rows), side="right") - 1


@st.composite
def instances(draw, max_weights: int = 60):  # type: ignore[no-untyped-def]
    n_layers = draw(st.integers(1, 3))
    layers, scores, caps = [], {}, {}
    for i in range(n_layers):
        rows, cols = draw(st.integers(1, 5)), draw(st.integers(1, 4))
        name = f"l{i}"
        layers.append(_linear(name, cols, rows))
        vals = draw(st.lists(st.integers(0, 6), min_size=rows * cols, max_size=rows * cols))
        scores[name] = np.asarray(vals, dtype=float).reshape(rows, cols)
        fan = draw(st.none() | st.integers(0, cols))
        if draw(st.booleans()):
            cuts = sorted(draw(st.sets(st.integers(1, max(rows - 1, 1)), max_size=rows - 1)))
            starts = tuple([0, *[c for c in cuts if c < rows]])
            gmax = draw(st.integers(0, rows * cols))
        else:
            starts, gmax = None, None
        lmax = draw(st.none() | st.integers(0, rows * cols))
        caps[name] = LayerCaps(fan_in_max=fan, group_starts=starts, group_max=gmax, layer_max=lmax)
    total = sum(s.size for s in scores.values())
    keep = draw(st.none() | st.integers(0, total))
    return layers, scores, caps, keep


def _assert_caps(layers, scores, caps, keep, alloc) -> None:  # type: ignore[no-untyped-def]
    total = 0
    for lay, cl in zip(layers, alloc.layers, strict=True):
        m, c = cl.mask, caps[lay.name]
        assert m.shape == lay.mask.shape and m.dtype == bool
        assert not (m & (scores[lay.name] <= 0)).any()  # pruned weights never come back
        if c.fan_in_max is not None:
            assert m.sum(axis=1).max(initial=0) <= c.fan_in_max
        if c.group_starts is not None and c.group_max is not None:
            per_group = np.bincount(_groups(c, m.shape[0]), weights=m.sum(axis=1))
            assert per_group.max(initial=0) <= c.group_max
        if c.layer_max is not None:
            assert m.sum() <= c.layer_max
        assert cl.n_kept == int(m.sum())
        total += int(m.sum())
    assert total == alloc.n_kept
    if keep is not None:
        assert total <= keep


@settings(max_examples=150, deadline=None)
@given(instances())
def test_no_cap_exceeded_and_deterministic(inst) -> None:  # type: ignore[no-untyped-def]
    layers, scores, caps, keep = inst
    a = allocate_capped(scores, layers, None, keep, extra_caps=caps)
    _assert_caps(layers, scores, caps, keep, a)
    b = allocate_capped(scores, layers, None, keep, extra_caps=caps)
    assert all((x.mask == y.mask).all() for x, y in zip(a.layers, b.layers, strict=True))
    assert [x.binding for x in a.layers] == [y.binding for y in b.layers]


@settings(max_examples=150, deadline=None)
@given(instances())
def test_keep_is_respected_exactly_when_caps_allow(inst) -> None:  # type: ignore[no-untyped-def]
    layers, scores, caps, keep = inst
    free = allocate_capped(scores, layers, None, None, extra_caps=caps)
    a = allocate_capped(scores, layers, None, keep, extra_caps=caps)
    assert a.n_kept == (free.n_kept if keep is None else min(keep, free.n_kept))
    # Raising keep never un-keeps a weight (nested allocations, which find_fit_keep relies on).
    if keep is not None and keep > 0:
        smaller = allocate_capped(scores, layers, None, keep - 1, extra_caps=caps)
        for s, big in zip(smaller.layers, a.layers, strict=True):
            assert not (s.mask & ~big.mask).any()


def _brute_best(layers, scores, caps, keep) -> float:  # type: ignore[no-untyped-def]
    items = [
        (lay.name, idx)
        for lay in layers
        for idx in np.ndindex(scores[lay.name].shape)
        if scores[lay.name][idx] > 0
    ]
    best = 0.0
    limit = len(items) if keep is None else min(keep, len(items))
    for r in range(limit + 1):
        for subset in itertools.combinations(items, r):
            ok = True
            for lay in layers:
                c = caps[lay.name]
                m = np.zeros(scores[lay.name].shape, bool)
                for name, idx in subset:
                    if name == lay.name:
                        m[idx] = True
                if (
                    (c.fan_in_max is not None and m.sum(axis=1).max(initial=0) > c.fan_in_max)
                    or (
                        c.group_starts is not None
                        and c.group_max is not None
                        and np.bincount(_groups(c, m.shape[0]), weights=m.sum(axis=1)).max(
                            initial=0
                        )
                        > c.group_max
                    )
                    or (c.layer_max is not None and m.sum() > c.layer_max)
                ):
                    ok = False
                if not ok:
                    break
            if ok:
                best = max(best, sum(scores[n][i] for n, i in subset))
    return best


@settings(max_examples=60, deadline=None)
@given(instances())
def test_greedy_equals_brute_force_optimum(inst) -> None:  # type: ignore[no-untyped-def]
    layers, scores, caps, keep = inst
    if sum(int((s > 0).sum()) for s in scores.values()) > 10:  # keep the enumeration tiny
        scores = {
            k: np.where(np.arange(v.size).reshape(v.shape) < 4, v, 0.0) for k, v in scores.items()
        }
    a = allocate_capped(scores, layers, None, keep, extra_caps=caps)
    got = sum(float(scores[cl.name][cl.mask].sum()) for cl in a.layers)
    assert got == _brute_best(layers, scores, caps, keep)


def test_ties_broken_by_flat_index_and_binding_reported() -> None:
    lay = _linear("fc", 3, 2)  # weight rows: 2 neurons x 3 inputs
    scores = {"fc": np.array([[1.0, 1.0, 1.0], [2.0, 1.0, 1.0]])}
    a = allocate_capped(scores, [lay], None, 3, extra_caps={"fc": LayerCaps(fan_in_max=2)})
    # Row 1 keeps its 2.0 and the first 1.0; row 0 keeps its first two 1.0s; global keep 3
    # takes 2.0 then the earliest 1.0s by flat index: (0,0), (0,1).
    assert a.layers[0].mask.tolist() == [[True, True, False], [True, False, False]]
    assert a.layers[0].binding == "fan_in"  # the best refused weight, (0,2), fell to fan-in
    assert dict(a.layers[0].refused) == {"fan_in": 2, "core_synapses": 0, "layer": 0, "global": 1}


def test_conv_fan_in_cap_is_per_output_channel_kernel() -> None:
    lay = LayerGeometry(
        name="c",
        kind="conv2d",
        in_shape=(2, 5, 5),
        out_shape=(3, 5, 5),
        mask=np.ones((3, 2, 3, 3), bool),
        neuron_shape=(3, 5, 5),
        padding=(1, 1),
    )
    rng = np.random.default_rng(1)
    a = allocate_capped({"c": rng.random((3, 2, 3, 3))}, [lay],
                        profile_caps([lay], load_profile("dynapse2")), None)
    assert a.layers[0].mask.reshape(3, -1).sum(axis=1).tolist() == [18, 18, 18]  # 18 <= 64
    caps = {"c": LayerCaps(fan_in_max=5)}
    a = allocate_capped({"c": rng.random((3, 2, 3, 3))}, [lay], None, None, extra_caps=caps)
    assert a.layers[0].mask.reshape(3, -1).sum(axis=1).tolist() == [5, 5, 5]
    # and check_fit agrees: no neuron of the pruned conv reads more than 5 inputs.
    pruned = LayerGeometry(**{**lay.__dict__, "mask": a.layers[0].mask})
    assert check_fit([pruned], load_profile("truenorth")).layers[0].max_fan_in <= 5


def test_profile_caps() -> None:
    layers = fit_models()["spinnaker2"]
    caps = profile_caps(layers, load_profile("spinnaker2"))
    # fc1: 1500 neurons -> 2 groups of 750 rows (the check_fit mapping), 1 M synapses each.
    assert caps["fc1"].group_starts == (0, 750) and caps["fc1"].group_max == 1_000_000
    assert caps["fc2"].group_starts is None  # 10 x 1500 can never exceed 1 M
    assert profile_caps(layers, load_profile("truenorth"))["fc1"].fan_in_max == 256


def test_bad_scores() -> None:
    lay = _linear("fc", 3, 2)
    with pytest.raises(ModelError, match=r"layer 'fc': scores shape \(3, 2\) != weight shape"):
        allocate_capped({"fc": np.ones((3, 2))}, [lay], None, 1)
    with pytest.raises(ModelError, match="no scores for layer 'fc'"):
        allocate_capped({}, [lay], None, 1)
    with pytest.raises(ModelError, match="non-negative"):
        allocate_capped({"fc": np.full((2, 3), np.nan)}, [lay], None, 1)


# ---- pruning until it fits


def test_truenorth_dense_fan_in_fits_after_find_fit_keep() -> None:
    layers = fit_models()["truenorth"]  # 288 -> 64 -> 10, dense
    tn = load_profile("truenorth")
    assert not check_fit(layers, tn).fits
    rng = np.random.default_rng(0)
    scores = {lay.name: rng.random(lay.mask.shape) + 0.01 for lay in layers}
    keep, alloc, report = find_fit_keep(scores, layers, tn)
    assert report.fits
    pruned = [LayerGeometry(**{**lay.__dict__, "mask": alloc.masks[lay.name]}) for lay in layers]
    again = check_fit(pruned, tn)
    assert again.fits and max(lf.max_fan_in for lf in again.layers) <= 256
    # 64 neurons keep 256 of 288 inputs each, fc2 stays dense: 64 * 256 + 640.
    assert keep == 64 * 256 + 640 and alloc.binding == {"fc1": "fan_in", "fc2": "none"}


def test_loihi_dense_too_big_for_synapse_memory_fits_after_find_fit_keep() -> None:
    layers = [fit_models()["loihi"][0]]  # dense 256 -> 512 needs 2 cores of synapse memory
    loihi = load_profile("loihi")
    before = check_fit(layers, loihi, cores=1)
    assert not before.fits and before.violations[0].rule == "chip.cores"
    rng = np.random.default_rng(0)
    keep, alloc, report = find_fit_keep(
        {"fc1": rng.random((512, 256)) + 0.01}, layers, loihi, cores=1
    )
    assert report.fits and report.cores_used == 1 and 0 < keep < 512 * 256
    pruned = [LayerGeometry(**{**layers[0].__dict__, "mask": alloc.masks["fc1"]})]
    assert check_fit(pruned, loihi, cores=1).fits
    # keep is the largest that fits: one more weight does not.
    one_more = allocate_capped({"fc1": rng.random((512, 256))}, layers,
                               profile_caps(layers, loihi), keep + 1)
    assert one_more.n_kept == keep + 1


def test_infeasible_speck_shapes() -> None:
    big = LayerGeometry(
        name="big",
        kind="conv2d",
        in_shape=(16, 64, 64),
        out_shape=(32, 64, 64),
        mask=np.ones((32, 16, 3, 3), bool),
        neuron_shape=(32, 64, 64),
        padding=(1, 1),
    )
    with pytest.raises(
        InfeasibleTargetError,
        match=r"^layer big: neuron memory words 131,072 > "
        r"65,536 .*pruning cannot relieve this rule; neuron memory depends only",
    ):
        find_fit_keep({"big": np.ones((32, 16, 3, 3))}, [big], load_profile("speck"))


def test_infeasible_neuron_count() -> None:
    layers = [_linear("fc", 64, 300)]  # 300 neurons need 2 TrueNorth cores; allow 1 core
    with pytest.raises(InfeasibleTargetError, match=r"pruning cannot relieve"):
        find_fit_keep({"fc": np.ones((300, 64))}, layers, load_profile("truenorth"), cores=1)
