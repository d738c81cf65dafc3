"""The conv incidence (kept synapses from each input to each core group, the count behind the
per-core axon and Loihi 1 memory rules) is vectorised over core groups; it equals a brute-force
count synapse by synapse, for groups larger and smaller than a channel, taken whole or in
chunks, with stride, padding, dilation and grouped convolutions."""

from __future__ import annotations

import itertools
from collections import Counter

import numpy as np
import pytest

from slamp_deploy.geometry import LayerGeometry, core_starts, layer_stats


def _out(n: int, k: int, s: int, p: int, d: int) -> int:
    return (n + 2 * p - d * (k - 1) - 1) // s + 1


def _brute(mask, in_shape, out_shape, stride, pad, dil, groups, starts):
    """Walk every kept synapse (output, input) and count it in its output's core group."""
    cin, cout = in_shape[0], out_shape[0]
    cin_g, cout_g = cin // groups, cout // groups
    isz, osz = in_shape[1:], out_shape[1:]
    n_pos, n_ipos = int(np.prod(osz)), int(np.prod(isz))
    out = np.zeros((cin * n_ipos, len(starts)), dtype=np.int64)
    for co, ci_g, *taps in zip(*np.nonzero(mask), strict=True):
        ci = (co // cout_g) * cin_g + ci_g
        for opos in itertools.product(*[range(o) for o in osz]):
            ipos = [o * s - p + t * dd for o, s, p, t, dd in zip(opos, stride, pad, taps, dil,
                                                                strict=True)]
            if any(i < 0 or i >= n for i, n in zip(ipos, isz, strict=True)):
                continue
            flat_o = co * n_pos + int(np.ravel_multi_index(opos, osz))
            flat_i = ci * n_ipos + int(np.ravel_multi_index(ipos, isz))
            out[flat_i, np.searchsorted(starts, flat_o, side="right") - 1] += 1
    return out


# (in channels, out channels, map, kernel, stride, padding, dilation, groups): 2-d and 1-d,
# strided, padded, dilated and grouped convolutions
CONV_CASES = pytest.mark.parametrize(
    ("cin", "cout", "hw", "k", "stride", "pad", "dil", "groups"), [
        (3, 4, (6, 6), 3, 1, 1, 1, 1),
        (4, 6, (7, 5), 3, 2, 1, 1, 2),
        (2, 3, (6, 6), 3, 1, 2, 2, 1),
        (4, 4, (9,), 3, 1, 1, 1, 4),
        (3, 5, (11,), 5, 2, 0, 1, 1),
        (2, 3, (9, 9), 5, 1, 2, 1, 1),  # 25 taps: reach codes sorted, not looked up
        (2, 2, (10, 10), 8, 1, 3, 1, 1),  # 64 taps: codes of two words, no column keys
    ])


def _conv(cin, cout, hw, k, stride, pad, dil, groups, *, seed,  # type: ignore[no-untyped-def]
          patterns=0):
    """A conv layer's geometry with a random half of its synapses kept (``patterns`` > 0: each
    (output, input channel) pair takes one of that many random kept-tap patterns, or all taps
    with 1, so input channels share patterns as in a dense or structured mask)."""
    rng = np.random.default_rng(seed)
    d = len(hw)
    out_hw = tuple(_out(n, k, stride, pad, dil) for n in hw)
    mask = rng.random((cout, cin // groups, *([k] * d))) < 0.5
    if patterns:
        pick = (rng.random((patterns, *([k] * d))) < 0.5) if patterns > 1 else \
            np.ones((1, *([k] * d)), dtype=bool)
        mask = pick[rng.integers(0, patterns, (cout, cin // groups))]
    lay = LayerGeometry(name="c", kind=f"conv{d}d", in_shape=(cin, *hw),
                        out_shape=(cout, *out_hw), mask=mask, neuron_shape=(cout, *out_hw),
                        stride=(stride,) * d, padding=(pad,) * d, dilation=(dil,) * d,
                        groups=groups)
    return lay, mask, out_hw


@CONV_CASES
def test_vectorised_conv_incidence_equals_a_synapse_by_synapse_count(cin, cout, hw, k, stride,
                                                                       pad, dil, groups):
    lay, mask, out_hw = _conv(cin, cout, hw, k, stride, pad, dil, groups, seed=cin * 100 + cout)
    d = len(hw)
    st = layer_stats(lay)
    n_pos = int(np.prod(out_hw))
    # fewer groups than channels, about one per channel, several per channel, one per neuron
    for n_groups in sorted({1, 2, cout, 2 * cout + 1, max(1, st.n_out // 3), st.n_out}):
        starts = core_starts(st.n_out, n_groups)
        want = _brute(mask, (cin, *hw), (cout, *out_hw), (stride,) * d, (pad,) * d, (dil,) * d,
                      groups, starts)
        got = st.incidence(starts)
        assert got.dtype == np.int64
        np.testing.assert_array_equal(got, want)
        # a chunk of groups at a time, as the core mapper streams them
        parts = [st.incidence(starts[a:a + 3], int(starts[a + 3]) if a + 3 < n_groups
                              else st.n_out) for a in range(0, n_groups, 3)]
        np.testing.assert_array_equal(np.hstack(parts), want)
    assert n_pos > 1
    assert st.incidence(np.zeros(0, dtype=np.int64)).shape == (st.n_in, 0)


@CONV_CASES
@pytest.mark.parametrize("patterns", [0, 1, 2])
def test_column_blocks_hold_each_groups_nonzero_counts(cin, cout, hw, k, stride, pad, dil,
                                                       groups, patterns):
    """The core mapper's cheap path: every group's nonzero counts, as the incidence has them
    (rows may differ: a group narrower than a channel is counted over its input window, and a
    group across a channel boundary over its two pieces' windows, summed where they meet)."""
    lay, _mask, out_hw = _conv(2 * cin, cout, hw, k, stride, pad, dil, groups,
                               seed=cin * 10 + cout, patterns=patterns)
    st = layer_stats(lay)
    assert st.column_blocks is not None
    n_pos = int(np.prod(out_hw))
    # whole channels, groups crossing channel boundaries (nearly a channel wide, a little
    # wider than half, one more group than channels: most cross), inside a channel, one neuron
    for n_groups in sorted({1, max(1, cout - 1), cout, cout + 1, 2 * cout + 1,
                            st.n_out // max(1, n_pos - 1) + 1,
                            st.n_out // 2, st.n_out // 3 + 1, st.n_out - 1, st.n_out}):
        starts = core_starts(st.n_out, n_groups)
        want = st.incidence(starts)
        got: dict[int, Counter] = {}
        for idx, counts, weights in st.column_blocks(starts):
            w = np.ones_like(counts) if weights is None else weights
            for col, j in enumerate(idx):
                assert int(j) not in got
                c: Counter = Counter()
                for v, n in zip(counts[:, col], w[:, col], strict=True):
                    if v:
                        c[int(v)] += int(n)  # n inputs with v synapses into group j
                got[int(j)] = c
        assert sorted(got) == list(range(n_groups))
        for j in range(n_groups):
            assert got[j] == Counter(int(v) for v in want[:, j] if v), (n_groups, j)
    assert n_pos > 1


def test_joined_layers_blocks_add_up_per_group_as_their_stacked_incidence():
    """A residual join (a conv and an identity shortcut, part of it pruned, onto one
    population): each group's counts over both layers' inputs, the blocks of both added."""
    from slamp_deploy.fit.check import _stacked_blocks, _StackedIncidence

    lay, _mask, out_hw = _conv(4, 4, (6, 6), 3, 1, 1, 1, 1, seed=3, patterns=2)
    n = 4 * int(np.prod(out_hw))
    rng = np.random.default_rng(4)
    ident = LayerGeometry(name="i", kind="identity", in_shape=(4, *out_hw),
                          out_shape=(4, *out_hw), mask=rng.random(n) < 0.7,
                          neuron_shape=(4, *out_hw))
    parts = [layer_stats(lay), layer_stats(ident)]
    incidence, blocks = _StackedIncidence(parts), _stacked_blocks(parts)
    assert blocks is not None
    for n_groups in (1, 4, 5, 9, n // 7, n - 1, n):
        starts = core_starts(n, n_groups)
        want = incidence(starts)
        got = [Counter() for _ in range(n_groups)]
        for idx, counts, weights in blocks(starts):
            w = np.ones_like(counts) if weights is None else weights
            for col, j in enumerate(idx):
                for v, k in zip(counts[:, col], w[:, col], strict=True):
                    if v:
                        got[int(j)][int(v)] += int(k)
        for j in range(n_groups):
            assert got[j] == Counter(int(v) for v in want[:, j] if v), (n_groups, j)


@pytest.mark.parametrize("collide", [False, True])
def test_unique_rows_are_the_distinct_nonzero_rows_with_their_counts(monkeypatch, collide):
    from slamp_deploy import geometry

    if collide:  # every row hashes alike: the check sees it and sorts the rows instead
        monkeypatch.setattr(geometry, "_ROW_HASH", np.zeros(4096, dtype=np.int64))
    rng = np.random.default_rng(1)
    for _ in range(50):
        rows = rng.integers(0, 3, (int(rng.integers(1, 40)), int(rng.integers(1, 12))))
        u, c = geometry._unique_rows(rows)
        want = Counter(tuple(r) for r in rows.tolist() if any(r))
        assert dict(zip(map(tuple, u.astype(int).tolist()), c.tolist(), strict=True)) == want


def _pruned_chain() -> list[LayerGeometry]:
    """A pruned conv chain (padded, strided) into a residual block whose shortcut joins the
    block's last conv in one population: every output channel with its own kept-tap patterns,
    maps wide enough that the core-grid chips split channels into many core groups."""
    rng = np.random.default_rng(7)

    def conv(name, cin, cout, hw, stride, **kw):  # type: ignore[no-untyped-def]
        out = (hw + 2 - 3) // stride + 1
        return LayerGeometry(name=name, kind="conv2d", in_shape=(cin, hw, hw),
                             out_shape=(cout, out, out), mask=rng.random((cout, cin, 3, 3)) < 0.15,
                             neuron_shape=(cout, out, out), stride=(stride, stride),
                             padding=(1, 1), **kw)

    n = 12 * 16 * 16
    return [conv("c1", 3, 12, 32, 1, source="@input"), conv("c2", 12, 12, 32, 2),
            conv("c3", 12, 12, 16, 1), conv("c4", 12, 12, 16, 1, population="p"),
            LayerGeometry(name="sc", kind="identity", in_shape=(12, 16, 16),
                          out_shape=(12, 16, 16), mask=rng.random(n) < 0.9,
                          neuron_shape=(12, 16, 16), source="c2", population="p")]


@pytest.mark.parametrize("target", ["loihi", "loihi2", "truenorth", "spinnaker", "spinnaker2"])
def test_fit_from_the_column_blocks_equals_the_fit_from_the_full_incidence(target, monkeypatch):
    """The whole check of a pruned chain and a residual block, per target: the column blocks
    (reach codes, distinct columns) give the verdicts, cores and per-core usages that the full
    (input x core group) incidence gives."""
    import dataclasses

    from slamp_deploy.chips import load_profile
    from slamp_deploy.fit import check

    prof = load_profile(target)
    got = check.check_fit(_pruned_chain(), prof).to_dict()
    monkeypatch.setattr(check, "layer_stats",
                        lambda lay: dataclasses.replace(layer_stats(lay), column_blocks=None))
    want = check.check_fit(_pruned_chain(), prof).to_dict()
    assert got == want
    if target in ("loihi", "truenorth", "spinnaker"):  # some layer's groups < a channel
        assert any(lf["cores"] and lf["cores"] > 12 for lf in got["layers"])


def test_loihi1_group_usage_from_blocks_equals_the_incidence_at_every_core_count():
    """Loihi 1's per-group input axons and synapse-memory bits, from the column blocks and
    from the incidence, at core counts of whole channels, crossing groups, pieces of a channel
    and one neuron per core, on each layer of the pruned chain."""
    import dataclasses

    from slamp_deploy.chips import load_profile
    from slamp_deploy.chips.core_grid import _GroupUsage
    from slamp_deploy.chips.loihi import Loihi

    prof = load_profile("loihi")
    for lay in _pruned_chain()[:4]:
        st = layer_stats(lay)
        memory = Loihi().synapse_memory(lay, prof)
        assert memory is not None
        fast = _GroupUsage(lay, st, memory)
        slow = _GroupUsage(lay, dataclasses.replace(st, column_blocks=None), memory)
        for k in (1, 5, 12, 13, 25, 40, 97, 300, 1001, *((st.n_out,) if st.n_out < 4096
                                                       else ())):
            assert (fast.axons(k), fast.bits(k)) == (slow.axons(k), slow.bits(k)), (lay.name, k)
