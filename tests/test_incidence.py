"""The conv incidence (kept synapses from each input to each core group, the count behind the
per-core axon and Loihi 1 memory rules) is vectorised over core groups; it equals a brute-force
count synapse by synapse, for groups larger and smaller than a channel, taken whole or in
chunks, with stride, padding, dilation and grouped convolutions."""

from __future__ import annotations

import itertools

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
    ])


def _conv(cin, cout, hw, k, stride, pad, dil, groups, *, seed):  # type: ignore[no-untyped-def]
    """A conv layer's geometry with a random half of its synapses kept."""
    rng = np.random.default_rng(seed)
    d = len(hw)
    out_hw = tuple(_out(n, k, stride, pad, dil) for n in hw)
    mask = rng.random((cout, cin // groups, *([k] * d))) < 0.5
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
def test_column_blocks_hold_each_groups_nonzero_counts(cin, cout, hw, k, stride, pad, dil,
                                                       groups):
    """The core mapper's cheap path: every group's nonzero counts, as the incidence has them
    (rows may differ: a group narrower than a channel is counted over its input window)."""
    lay, _mask, out_hw = _conv(cin, cout, hw, k, stride, pad, dil, groups, seed=cin * 10 + cout)
    st = layer_stats(lay)
    assert st.column_blocks is not None
    n_pos = int(np.prod(out_hw))
    for n_groups in sorted({1, cout, 2 * cout + 1, st.n_out // 2, st.n_out // 3 + 1,
                            st.n_out - 1, st.n_out}):
        starts = core_starts(st.n_out, n_groups)
        want = st.incidence(starts)
        got: dict[int, np.ndarray] = {}
        for idx, counts in st.column_blocks(starts):
            for col, j in enumerate(idx):
                assert int(j) not in got
                got[int(j)] = counts[:, col]
        assert sorted(got) == list(range(n_groups))
        for j in range(n_groups):
            np.testing.assert_array_equal(np.sort(got[j][got[j] != 0]),
                                          np.sort(want[:, j][want[:, j] != 0]))
    assert n_pos > 1
