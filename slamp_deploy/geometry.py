"""The neutral counting vocabulary: a synaptic layer's geometry, its exact connectivity counts,
the contiguous core groups, the neuron populations, and the caps an allocator honours.

Chip-neutral: the fit check (``slamp_deploy.fit``), the chip families (``slamp_deploy.chips``),
the capped allocator and the activity report all count with these, so fan-in and fan-out have
one implementation.

Counting conventions (exact, from the mask and the conv geometry):

* A *unit* is one output of the synaptic op (``out_shape``, flattened channel-major). Every unit
  is one on-chip neuron (compartment) that receives synapses.
* ``fan_in`` of a unit is the number of kept weights that reach it from inside the input (padding
  taps do not count). ``fan_out`` of an input unit is the number of (output position, output
  channel) pairs whose kept tap reads it. Both come from one correlation of the kept kernel with
  the valid-tap map, so ``sum(fan_in) == sum(fan_out) == kept synapses``.
* Core groups: a layer's units split into ``k`` contiguous, equal groups
  (``starts = arange(k) * n // k``, :func:`core_starts`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from slamp_deploy.errors import ModelError

__all__ = [
    "IDENTITY",
    "INPUT",
    "LayerCaps",
    "LayerGeometry",
    "LayerStats",
    "LayerTraits",
    "NeuronTraits",
    "Pool",
    "conv_params",
    "core_starts",
    "layer_stats",
    "population_members",
    "with_masks",
]

INPUT = "@input"  # LayerGeometry.source value naming the network input
IDENTITY = "identity"  # LayerGeometry.kind of a one-to-one connection (identity shortcut)


@dataclass(frozen=True, slots=True, kw_only=True)
class Pool:
    """A pooling op on a layer's path to the next synaptic op (chip rules read it: Speck)."""

    kind: str  # "avgpool" | "maxpool"
    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    after_neurons: bool  # True: it pools the layer's spikes; False: its currents


@dataclass(frozen=True, slots=True, kw_only=True)
class NeuronTraits:
    """The neuron parameters chip rules read (Speck's IF-only cores, Xylo's bit-shift decays and
    subtractive reset): distinct values only, as plain floats."""

    kind: str  # "leaky" | "synaptic"
    betas: tuple[float, ...]  # distinct membrane decays (snnTorch beta, clamped to [0, 1])
    alphas: tuple[float, ...] = ()  # distinct synaptic decays (Synaptic only)
    reset_mechanism: str = "subtract"


@dataclass(frozen=True, slots=True, kw_only=True)
class LayerTraits:
    """What a layer is beyond its connectivity, for the chip rules that need it. ``None`` on a
    :class:`LayerGeometry` built without a model (those rules then report ``not_checked``)."""

    bias: str = "none"  # "none" | "zero" (a bias tensor of zeros) | "nonzero"
    # a linear layer read through a Flatten: the (C, H, W) shape that was flattened (sinabs
    # turns such a layer into a convolution whose kernel is that whole map)
    flat_from: tuple[int, ...] = ()
    pools: tuple[Pool, ...] = ()
    neuron: NeuronTraits | None = None  # None: a non-spiking readout


@dataclass(frozen=True)
class LayerGeometry:
    name: str  # module fully-qualified name, e.g. "features.0"
    kind: str  # "linear" | "conv1d" | "conv2d"
    in_shape: tuple[
        int, ...
    ]  # per-sample input shape of the synaptic op: (F,) or (C, L) or (C, H, W)
    out_shape: tuple[int, ...]  # per-sample output shape of the synaptic op
    mask: np.ndarray  # bool, same shape as the weight; True = kept
    neuron_shape: tuple[int, ...]  # shape of the spiking neuron layer this op feeds; () if none
    stride: tuple[int, ...] = ()  # conv only
    padding: tuple[int, ...] = ()
    dilation: tuple[int, ...] = ()
    groups: int = 1
    weight_bits_hint: int | None = None
    # Name of the layer whose neurons feed this op; None = the previous layer in the sequence
    # (the network input for the first layer); "@input" = the network input explicitly.
    source: str | None = None
    # Name of the neuron population this op's current drives, where several ops drive one
    # (residual joins): such ops are mapped together, onto the cores of one set of neurons, and
    # their fan-ins add up. kind "identity" is a one-to-one connection of weight 1 (an identity
    # shortcut): mask (n,) all True, in_shape = out_shape = the population's shape.
    population: str | None = None
    traits: LayerTraits | None = None  # bias, flatten, pooling and neuron facts (see above)


# --------------------------------------------------------------------------------------------
# Exact per-layer statistics


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class LayerStats:
    """Exact connectivity counts of one layer under its mask."""

    n_out: int  # units (post-synaptic neurons)
    n_in: int  # input units
    kept_weights: int
    fan_in: np.ndarray  # (n_out,) int64
    fan_out: np.ndarray  # (n_in,) int64
    # (starts, stop) -> (n_in, len(starts)) kept synapses per group; group j is units
    # starts[j]..starts[j+1] (the last ends at ``stop``, default n_out), so the groups of a
    # mapping can be taken a chunk at a time
    incidence: Callable[..., np.ndarray]
    # (starts, stop) -> [(group indices, counts, weights)]: the same groups' nonzero counts per
    # input, each block's rows any inputs (a conv group narrower than a channel reads a window
    # of its inputs only), each row standing for ``weights`` inputs with that count (None: one;
    # input channels with the same kept taps count alike); what a per-group sum over inputs
    # needs, at a fraction of the incidence's cells. None: use ``incidence``.
    column_blocks: Callable[..., Iterable[tuple[np.ndarray, np.ndarray, np.ndarray | None]]] \
        | None = None

    @property
    def synapses(self) -> int:
        return int(self.fan_in.sum())


def _validate(layer: LayerGeometry) -> None:
    """Shape checks; raises ModelError naming the layer."""
    where = f"layer {layer.name!r}"
    if layer.kind not in ("linear", "conv1d", "conv2d", IDENTITY):
        raise ModelError(f"{where}: kind = {layer.kind!r}: expected linear, conv1d, conv2d or "
                         f"{IDENTITY}")
    mask = layer.mask
    if not isinstance(mask, np.ndarray) or mask.dtype != np.bool_:
        raise ModelError(f"{where}: mask must be a numpy bool array")
    if layer.kind == IDENTITY:
        n = math.prod(layer.out_shape)
        if math.prod(layer.in_shape) != n or mask.shape != (n,):
            raise ModelError(f"{where}: an identity connection needs in_shape and out_shape of "
                             f"{n} units and a mask of shape ({n},); got {layer.in_shape}, "
                             f"{layer.out_shape}, {mask.shape}")
        return
    if layer.kind == "linear":
        if len(layer.in_shape) != 1 or len(layer.out_shape) != 1:
            raise ModelError(
                f"{where}: linear in_shape/out_shape must be (F,), got "
                f"{layer.in_shape} -> {layer.out_shape}"
            )
        if mask.shape != (layer.out_shape[0], layer.in_shape[0]):
            raise ModelError(
                f"{where}: mask shape {mask.shape} != (out, in) = "
                f"{(layer.out_shape[0], layer.in_shape[0])}"
            )
        return
    d = 1 if layer.kind == "conv1d" else 2
    if len(layer.in_shape) != d + 1 or len(layer.out_shape) != d + 1 or mask.ndim != d + 2:
        raise ModelError(
            f"{where}: {layer.kind} needs (C, *{d} spatial) shapes and a "
            f"{d + 2}-d mask; got {layer.in_shape}, {layer.out_shape}, {mask.shape}"
        )
    cin, cout, g = layer.in_shape[0], layer.out_shape[0], layer.groups
    if g < 1 or cin % g or cout % g or mask.shape[:2] != (cout, cin // g):
        raise ModelError(
            f"{where}: mask shape {mask.shape} does not match Cout={cout}, Cin/groups={cin}/{g}"
        )
    s, p, dl = conv_params(layer)
    for i in range(d):
        k = mask.shape[2 + i]
        expect = (layer.in_shape[1 + i] + 2 * p[i] - dl[i] * (k - 1) - 1) // s[i] + 1
        if expect != layer.out_shape[1 + i]:
            raise ModelError(
                f"{where}: out_shape {layer.out_shape} does not follow from in_shape "
                f"{layer.in_shape}, kernel {mask.shape[2:]}, stride {s}, padding {p}, "
                f"dilation {dl} (expected spatial dim {i} = {expect})"
            )


def conv_params(layer: LayerGeometry) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    d = len(layer.in_shape) - 1

    def norm(t: tuple[int, ...], default: int, what: str) -> tuple[int, ...]:
        if not t:
            return (default,) * d
        if len(t) == 1:
            return tuple(t) * d
        if len(t) != d:
            raise ModelError(f"layer {layer.name!r}: {what} {t} must have {d} entries")
        return tuple(int(x) for x in t)

    return (
        norm(layer.stride, 1, "stride"),
        norm(layer.padding, 0, "padding"),
        norm(layer.dilation, 1, "dilation"),
    )


def layer_stats(layer: LayerGeometry) -> LayerStats:
    """Exact fan-in, fan-out and per-core-group incidence of one layer."""
    _validate(layer)
    mask = layer.mask
    if layer.kind == IDENTITY:
        one = mask.astype(np.int64)

        def one_to_one(starts: np.ndarray, stop: int | None = None) -> np.ndarray:
            out = np.zeros((one.size, len(starts)), dtype=np.int64)
            if len(starts):
                units = np.arange(int(starts[0]), one.size if stop is None else stop)
                core = np.searchsorted(starts, units, side="right") - 1
                out[units, core] = one[units]
            return out

        kept_before = np.concatenate([[0], np.cumsum(one)])

        def one_each(starts: np.ndarray, stop: int | None = None
                     ) -> Iterable[tuple[np.ndarray, np.ndarray, np.ndarray | None]]:
            # each kept unit of a group reads its own input through one synapse
            bounds = np.append(np.asarray(starts, dtype=np.int64),
                               one.size if stop is None else stop)
            kept = kept_before[bounds[1:]] - kept_before[bounds[:-1]]
            return [(np.arange(len(starts)), np.ones((1, len(starts)), dtype=np.int64),
                     kept[None, :])]

        return LayerStats(n_out=one.size, n_in=one.size, kept_weights=int(one.sum()),
                          fan_in=one, fan_out=one.copy(), incidence=one_to_one,
                          column_blocks=one_each)
    if layer.kind == "linear":
        m = mask.astype(np.int64)
        fan_in = m.sum(axis=1)
        fan_out = m.sum(axis=0)

        def incidence(starts: np.ndarray, stop: int | None = None) -> np.ndarray:
            if not m.shape[0] or not len(starts):
                return np.zeros((m.shape[1], len(starts)), dtype=np.int64)
            rows = m[int(starts[0]) : m.shape[0] if stop is None else stop]
            return np.add.reduceat(rows, np.asarray(starts) - int(starts[0]), axis=0).T

        return LayerStats(
            n_out=m.shape[0],
            n_in=m.shape[1],
            kept_weights=int(m.sum()),
            fan_in=fan_in,
            fan_out=fan_out,
            incidence=incidence,
        )
    return _conv_stats(layer)


def _conv_stats(layer: LayerGeometry) -> LayerStats:
    mask = layer.mask
    s, p, dl = conv_params(layer)
    d = len(layer.in_shape) - 1
    cin, cout, g = layer.in_shape[0], layer.out_shape[0], layer.groups
    cin_g, cout_g = cin // g, cout // g
    ksz, isz, osz = mask.shape[2:], layer.in_shape[1:], layer.out_shape[1:]
    # Per spatial dim: input index of (tap, output position), and whether it lies inside.
    grids = []
    for i in range(d):
        t = np.arange(ksz[i])[:, None]
        o = np.arange(osz[i])[None, :]
        grids.append(o * s[i] - p[i] + t * dl[i])  # (K_i, O_i)
    n_taps = int(np.prod(ksz))
    n_pos = int(np.prod(osz))
    n_ipos = int(np.prod(isz))
    # in_flat[t, o]: flat input position read by tap t at output position o, -1 when padding.
    if d == 1:
        idx = grids[0]
        valid = (idx >= 0) & (idx < isz[0])
        in_flat = np.where(valid, idx, -1)
    else:
        iy, ix = grids
        vy = (iy >= 0) & (iy < isz[0])
        vx = (ix >= 0) & (ix < isz[1])
        valid4 = vy[:, None, :, None] & vx[None, :, None, :]  # (Ky, Kx, Oy, Ox)
        flat4 = iy[:, None, :, None] * isz[1] + ix[None, :, None, :]
        valid = valid4.reshape(n_taps, n_pos)
        in_flat = np.where(valid, flat4.reshape(n_taps, n_pos), -1)
    valid_i = valid.astype(np.int64)
    m = mask.reshape(cout, cin_g, n_taps).astype(np.int64)
    k_out = m.sum(axis=1)  # (Cout, T) kept taps per output channel
    fan_in = (k_out @ valid_i).reshape(-1)  # (Cout * P,)
    # R[t, i]: number of output positions whose tap t reads input position i (0 or 1).
    reach = np.zeros((n_taps, n_ipos), dtype=np.int64)
    tt, oo = np.nonzero(valid)
    np.add.at(reach, (tt, in_flat[tt, oo]), 1)
    k_in = np.concatenate([m[gi * cout_g : (gi + 1) * cout_g].sum(axis=0) for gi in range(g)])
    fan_out = (k_in @ reach).reshape(-1)  # (Cin * P_in,)

    def incidence(starts: np.ndarray, stop: int | None = None) -> np.ndarray:
        return _conv_incidence(m, valid, in_flat, reach, (cin, cout, g, n_pos, n_ipos),
                               np.asarray(starts, dtype=np.int64), stop)

    patterns: list[_Patterns] = []  # made on the first narrow groups, kept for every k
    cum: list[np.ndarray] = []  # made on the first wide groups, kept for every k

    def column_blocks(starts: np.ndarray, stop: int | None = None
                      ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray | None]]:
        starts = np.asarray(starts, dtype=np.int64)
        end = cout * n_pos if stop is None else stop
        bounds = np.append(starts, end)
        k = len(starts)
        if k and g == 1 and int(np.diff(bounds).max()) >= n_pos:  # channels or more
            if not cum:  # kept taps summed over the output channels before each, made once
                cum.append(np.concatenate([np.zeros((1, *m.shape[1:]), dtype=np.int64),
                                           np.cumsum(m, axis=0)]))
            yield from _whole_blocks(m, cum[0], reach, valid, in_flat, n_pos, bounds)
            return
        if not k or int(np.diff(bounds).max()) >= n_pos:  # whole channels: dense, in chunks
            chunk = max(1, _DENSE_CELLS // max(cin * n_ipos, 1))
            for a in range(0, k, chunk):
                yield (np.arange(a, min(a + chunk, k)),
                       incidence(starts[a:a + chunk], int(bounds[min(a + chunk, k)])), None)
            return
        if not patterns:
            patterns.append(_Patterns(m, cout_g, n_ipos))
        yield from _windowed_blocks(patterns[0], valid, in_flat, n_pos, bounds)

    return LayerStats(
        n_out=cout * n_pos,
        n_in=cin * n_ipos,
        kept_weights=int(mask.sum()),
        fan_in=fan_in,
        fan_out=fan_out,
        incidence=incidence,
        column_blocks=column_blocks,
    )


_WINDOW_CELLS = 1 << 23  # windowed counts are built this many (group, input) cells at a time
_DENSE_CELLS = 1 << 23  # whole-channel groups' incidence comes this many cells at a time


def _whole_blocks(m: np.ndarray, cum: np.ndarray, reach: np.ndarray, valid: np.ndarray,
                 in_flat: np.ndarray, n_pos: int, bounds: np.ndarray
                 ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Counts of core groups of about a channel or more (one conv group), a chunk of groups at
    a time: a group holds whole channels [c0, c1) and at most two partial ones (its first and
    last pieces), and input channel i at input position x gets ``(sum of m[c0:c1, i],
    m[first partial, i], m[last partial, i]) @ (reach, the partials' reach)[:, x]``; input
    positions with the same reach column (which taps read them) count alike, so each group is
    counted over its distinct columns, by multiplicity."""
    n_taps, n_ipos = m.shape[2], reach.shape[1]
    pj, pc, pa, pb = _pieces(bounds, n_pos)
    n_groups = len(bounds) - 1
    per = np.bincount(pj, minlength=n_groups)
    some = per > 0  # an empty group (none in a core mapping) keeps zero counts
    first = np.minimum(np.cumsum(per) - per, len(pj) - 1)
    last = np.maximum(np.cumsum(per) - 1, 0)
    full = (pa == 0) & (pb == n_pos)
    # a group's whole channels run from after its first piece (when partial) to before its last
    c0 = np.where(full[first], pc[first], pc[first] + 1)
    c1 = np.where(some, np.maximum(np.where(full[last], pc[last] + 1, pc[last]), c0), c0)
    ends = (np.where(full[first] | ~some, -1, first),
            np.where(full[last] | (last == first) | ~some, -1, last))
    rows = 3 * n_taps
    step = max(1, _WINDOW_CELLS // max(m.shape[1] * rows, rows * n_ipos, 1))
    for s0 in range(0, n_groups, step):
        jj = np.arange(s0, min(s0 + step, n_groups))
        taps = np.zeros((len(jj), m.shape[1], rows), dtype=np.int64)
        taps[:, :, :n_taps] = cum[c1[jj]] - cum[c0[jj]]
        cols = np.zeros((len(jj), rows, n_ipos), dtype=np.float32)  # 0/1
        cols[:, :n_taps] = np.where(some[jj, None, None], reach, 0)
        for e, q in enumerate(ends):  # the partial first and last pieces, where there are
            sel = np.nonzero(q[jj] >= 0)[0]
            if len(sel):
                qq = q[jj[sel]]
                taps[sel, :, (e + 1) * n_taps:(e + 2) * n_taps] = m[pc[qq]]
                cols[sel, (e + 1) * n_taps:(e + 2) * n_taps] = _piece_reach(
                    valid, in_flat, pa[qq], pb[qq], np.zeros(len(qq), dtype=np.int64), n_ipos)
        u, n_u = _distinct_columns_each(cols)  # (G, rows, codes), (G, codes)
        counts = np.rint(taps.astype(np.float64) @ u).astype(np.int64)  # (G, Cin, codes)
        yield _as_histograms(jj, counts, np.broadcast_to(n_u[:, None, :], counts.shape))


def _as_histograms(jj: np.ndarray, counts: np.ndarray, weights: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Groups ``jj``'s (G, ...) counts and weights as one block of histograms: rows 0..n (n the
    largest count), each weighted by the inputs with that count (fewer cells for the
    encoding's per-cell arithmetic)."""
    n1 = int(counts.max(initial=0)) + 1
    flat = (np.arange(len(jj)).reshape(-1, *[1] * (counts.ndim - 1)) * n1 + counts).ravel()
    hist = np.bincount(flat, weights=weights.ravel(), minlength=len(jj) * n1)
    return _histogram_block(jj, np.rint(hist).astype(np.int64).reshape(len(jj), n1))


def _histogram_block(jj: np.ndarray, hist: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Groups ``jj``'s histograms ``hist`` (G, counts 0..n) as a column block: the counts
    0..n as rows, each weighted by the inputs with that count."""
    rows = np.broadcast_to(np.arange(hist.shape[1], dtype=np.int64)[:, None], hist.T.shape)
    return jj, rows, hist.T


class _Patterns:
    """The distinct kept-tap patterns of a conv's (output channel, input channel) pairs, with
    how many input channels share each: every input channel of one pattern has the same count
    at every input position, so a group's sums over its inputs are sums over patterns weighted
    by these multiplicities (a dense mask has one pattern per channel). Joint patterns of two
    neighbouring output channels (a core group across their boundary) are made on demand."""

    def __init__(self, m: np.ndarray, cout_g: int, n_ipos: int) -> None:
        self.m, self.cout_g, self.n_ipos = m, cout_g, n_ipos
        self._readers: np.ndarray | None = None
        self._bands: _Bands | None = None
        rows = [_unique_rows(m[c]) for c in range(m.shape[0])]
        width = max(1, max(len(r) for r, _ in rows))
        self.pat = np.zeros((m.shape[0], width, m.shape[2]))
        self.mult = np.zeros((m.shape[0], width), dtype=np.int64)
        for c, (r, w) in enumerate(rows):
            self.pat[c, :len(r)], self.mult[c, :len(r)] = r, w
        self.ipat = self.pat.astype(np.int64)
        self._hist_width = int(self.ipat.sum(axis=2).max(initial=0)) + 1
        self._joint: tuple[np.ndarray, np.ndarray] | None = None
        # hists[c, v, n]: input channels whose kept taps in channel c give n synapses into an
        # input position that reach code v reaches (code v: which taps read it from a piece);
        # made per code on first sight and kept for every k
        self.hists = np.zeros((m.shape[0], 0, self.hist_width()), dtype=np.int64)
        self._codes: dict[bytes, int] = {}
        self._lut = (np.full(1 << m.shape[2], -1, dtype=np.int64) if m.shape[2] <= _LUT_TAPS
                     else None)

    def readers(self, valid: np.ndarray, in_flat: np.ndarray) -> np.ndarray:
        """(taps, input positions): the output position whose tap reads each input, -1 for
        none (one at most: a tap is a shift); the layer's geometry, made once."""
        if self._readers is None:
            # int32 (half the memory traffic of the per-tap gathers), padded with -1 past the
            # inputs so that a window running past the last input needs no clipping
            self._readers = np.full((valid.shape[0], 2 * self.n_ipos + 1), -1, dtype=np.int32)
            tt, oo = np.nonzero(valid)
            self._readers[tt, in_flat[tt, oo]] = oo
        return self._readers

    def bands(self, valid: np.ndarray, in_flat: np.ndarray, n_pos: int) -> _Bands | None:
        """The per-offset tables of long pieces (None: a kernel of too many taps for one
        code word); made once."""
        if self._bands is None and valid.shape[0] <= _KEY_BITS:
            self._bands = _Bands(self, self.readers(valid, in_flat), self.n_ipos, n_pos)
        return self._bands

    def hist_width(self) -> int:
        """Counts 0..n a piece of one channel can put on one input (n: the most kept taps of
        any pattern), plus one."""
        return self._hist_width

    def code_index(self, keys: np.ndarray) -> np.ndarray:
        """The index into ``hists`` of each reach code in ``keys`` (..., words), as
        :func:`_reach_keys` writes them; codes not seen before get their histograms here."""
        flat = keys.reshape(-1, keys.shape[-1])
        if self._lut is not None:  # few taps: a table over every possible code, no sort
            idx = self._lut[flat[:, 0]]
            if (idx < 0).any():
                self._add(np.unique(flat[idx < 0, 0])[:, None])
                idx = self._lut[flat[:, 0]]
            return idx.reshape(keys.shape[:-1])
        u, inverse = np.unique(flat, axis=0, return_inverse=True)
        new = [i for i in range(len(u)) if u[i].tobytes() not in self._codes]
        if new:
            self._add(u[new])
        lut = np.array([self._codes[r.tobytes()] for r in u], dtype=np.int64)
        return lut[inverse.reshape(-1)].reshape(keys.shape[:-1])

    def _add(self, words: np.ndarray) -> None:
        """Histograms for new reach codes ``words`` (codes, words)."""
        taps = np.arange(self.ipat.shape[2])
        codes = (words[:, taps // _KEY_BITS] >> (taps % _KEY_BITS)) & 1  # (codes, taps)
        base = self.hists.shape[1]
        for i, row in enumerate(words):
            self._codes[row.tobytes()] = base + i
        if self._lut is not None:
            self._lut[words[:, 0]] = base + np.arange(len(words))
        self.hists = np.concatenate([self.hists, self._code_hists(codes)], axis=1)

    def _code_hists(self, codes: np.ndarray) -> np.ndarray:
        """(channels, len(codes), hist_width()) histograms of the counts ``pattern @ code``
        over every channel's patterns, weighted by their multiplicities."""
        cout, n_pat, _ = self.ipat.shape
        n1 = self.hist_width()
        out = np.zeros((cout, len(codes), n1), dtype=np.int64)
        step = max(1, _WINDOW_CELLS // max(cout * n_pat, 1))
        for v0 in range(0, len(codes), step):
            cv = codes[v0:v0 + step]
            cnt = self.ipat @ cv.T  # (channels, patterns, codes)
            chan = np.arange(cout)[:, None, None]
            flat = ((chan * len(cv) + np.arange(len(cv))[None, None, :]) * n1 + cnt).ravel()
            w = np.broadcast_to(self.mult[:, :, None], cnt.shape).ravel()
            h = np.bincount(flat, weights=w, minlength=cout * len(cv) * n1)
            out[:, v0:v0 + len(cv)] = np.rint(h).astype(np.int64).reshape(cout, len(cv), n1)
        return out

    def joint(self) -> tuple[np.ndarray, np.ndarray]:
        """Patterns over (channel c's taps, channel c + 1's taps) for every boundary c, padded
        with zero rows, (cout - 1, patterns, 2 * taps), and their multiplicities."""
        if self._joint is None:
            m, taps = self.m, self.m.shape[2]
            rows = []
            for c in range(m.shape[0] - 1):
                if c // self.cout_g == (c + 1) // self.cout_g:  # one conv group: same inputs
                    rows.append(_unique_rows(np.concatenate([m[c], m[c + 1]], axis=1)))
                    continue
                a, wa = _unique_rows(m[c])  # different inputs: each beside the other's zeros
                b, wb = _unique_rows(m[c + 1])
                both = np.zeros((len(a) + len(b), 2 * taps))
                both[:len(a), :taps], both[len(a):, taps:] = a, b
                rows.append((both, np.concatenate([wa, wb])))
            width = max([1, *(len(r) for r, _ in rows)])
            pat = np.zeros((len(rows), width, 2 * taps))
            mult = np.zeros((len(rows), width), dtype=np.int64)
            for c, (r, w) in enumerate(rows):
                pat[c, :len(r)], mult[c, :len(r)] = r, w
            self._joint = pat, mult
        return self._joint


_ROW_HASH = np.random.default_rng(0).integers(1, 2**62, 4096, dtype=np.int64)


def _unique_rows(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct nonzero rows (small nonnegative integers) and how often each occurs.

    Rows are told apart by a hash first (one 1-d unique, not a sort of rows); every row is then
    checked against its class's representative, and a collision falls back to the row sort."""
    rows = np.ascontiguousarray(rows, dtype=np.int64)
    if rows.shape[1] <= len(_ROW_HASH):
        with np.errstate(over="ignore"):  # wrapping int64 arithmetic: a hash, checked below
            key = rows @ _ROW_HASH[:rows.shape[1]]
        _, first, inverse, counts = np.unique(key, return_index=True, return_inverse=True,
                                              return_counts=True)
        u = rows[first]
        if np.array_equal(u[inverse], rows):
            keep = u.any(axis=1)
            return u[keep].astype(np.float64), counts[keep].astype(np.int64)
    u, counts = np.unique(rows, axis=0, return_counts=True)
    keep = u.any(axis=1)
    return u[keep].astype(np.float64), counts[keep].astype(np.int64)


def _windowed_blocks(pats: _Patterns, valid: np.ndarray, in_flat: np.ndarray, n_pos: int,
                     bounds: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, np.ndarray | None]]:
    """Counts of core groups narrower than a channel. A group is split at the channel
    boundary into pieces (one, or two for a group that crosses it). A piece of channel c gives
    an input the count ``pattern @ code``, where the input channel's kept taps are the pattern
    and the input position's *reach code* says which taps read it from the piece; so a piece
    is a histogram of counts (rows 0..n, weights: inputs with that count), its channel's
    per-code histograms summed over its inputs' codes: for a long piece from per-offset tables
    (:class:`_Bands`), for a short one row by row of its window of inputs. A crossing group's
    two windows are put side by side, and where they overlap (the same inputs, both channels
    in one conv group) the second piece's taps count into the first window's rows; its counts
    are by joint pattern against the windows' distinct columns."""
    n_groups, n_taps = len(bounds) - 1, pats.m.shape[2]
    pj, pc, pa, pb = _pieces(bounds, n_pos)
    per = np.bincount(pj, minlength=n_groups)  # pieces per group: 0 (empty), 1 or 2
    blocks: list[tuple[np.ndarray, np.ndarray, np.ndarray | None]] = []
    if (per == 0).any():  # an empty group reads nothing
        empty = np.nonzero(per == 0)[0]
        blocks.append((empty, np.zeros((1, len(empty)), dtype=np.int64), None))
    if not len(pj):
        return blocks
    first = np.cumsum(per) - per  # each group's first piece
    one = np.nonzero(per == 1)[0]
    bands = pats.bands(valid, in_flat, n_pos)
    if bands is not None and len(one):  # long pieces: from the per-offset tables
        q = first[one]
        long = (pb[q] - pa[q]) > bands.spread
        if long.any():
            blocks.extend(bands.blocks(pats, one[long], pc[q[long]], pa[q[long]], pb[q[long]]))
        one = one[~long]
    if len(one):  # short pieces: each window row's reach code
        blocks.extend(_short_blocks(pats, valid, in_flat, one, (pc[first[one]],
                                    pa[first[one]], pb[first[one]])))
    two = np.nonzero(per == 2)[0]  # at most one per channel boundary
    if len(two):  # windows of the crossing groups' pieces only
        both = np.concatenate([first[two], first[two] + 1])
        lo = np.zeros(len(pa), dtype=np.int64)
        lo[both], width = _piece_windows(valid, in_flat, pa[both], pb[both])
        jp, _ = pats.joint()
        step = max(1, _WINDOW_CELLS // (max(jp.shape[1], n_taps) * 2 * width))
        for s0 in range(0, len(two), step):
            jj = two[s0:s0 + step]
            q = first[jj]
            blocks.append(_crossing(pats, valid, in_flat,
                                    (pc[q], pa[q], pb[q], lo[q], pa[q + 1], pb[q + 1], lo[q + 1]),
                                    width, jj))
    return blocks


_KEY_BITS = 62  # taps per int64 word of a reach code
_LUT_TAPS = 20  # kernels of at most this many taps look their codes up in a table


def _reach_keys(out_of: np.ndarray, pa: np.ndarray, pb: np.ndarray, lo: np.ndarray,
                width: int) -> np.ndarray:
    """(pieces, width, words) reach codes: bit t set where tap t reads window row w (input
    position lo + w) from an output position in the piece [pa, pb). ``out_of[t, x]``: the
    output position whose tap t reads x, -1 for none and past the inputs (so one gather per
    tap, no scatter; ``o - pa`` as unsigned is below ``pb - pa`` exactly inside the piece)."""
    n_taps = out_of.shape[0]
    x = (lo[:, None] + np.arange(width)[None, :]).astype(np.intp)
    a = pa.astype(out_of.dtype)[:, None]
    span = (pb - pa).astype(np.uint32)[:, None]
    keys = np.zeros((len(pa), width, -(-n_taps // _KEY_BITS)), dtype=np.int64)
    for t in range(n_taps):
        hit = (out_of[t][x] - a).view(np.uint32) < span
        word = keys[:, :, t // _KEY_BITS]
        np.bitwise_or(word, hit.astype(np.int64) << (t % _KEY_BITS), out=word)
    return keys


def _short_blocks(pats: _Patterns, valid: np.ndarray, in_flat: np.ndarray, jj_all: np.ndarray,
                  pieces: tuple[np.ndarray, np.ndarray, np.ndarray]
                  ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Groups ``jj_all`` of one piece each (channel, [pa, pb)), counted row by row of their
    windows: each row's reach code, its channel's histogram for that code, summed. The reach
    codes depend on the positions only, so pieces at the same [pa, pb) of different channels
    share them (every channel's, when the groups align with the channels): they are made
    once per distinct piece."""
    pc_all, pa_all, pb_all = pieces
    pair, first, inv = np.unique(pa_all * (int(pb_all.max(initial=0)) + 1) + pb_all,
                                 return_index=True, return_inverse=True)
    pa_u, pb_u = pa_all[first], pb_all[first]
    lo_u, width = _piece_windows(valid, in_flat, pa_u, pb_u)
    n1 = pats.hist_width()
    out_of = pats.readers(valid, in_flat)
    step = max(1, _WINDOW_CELLS // (max(8, n1) * width))
    codes_u = np.empty((len(pair), width), dtype=np.int64)
    for s0 in range(0, len(pair), step):
        sl = slice(s0, s0 + step)
        codes_u[sl] = pats.code_index(_reach_keys(out_of, pa_u[sl], pb_u[sl], lo_u[sl], width))
    n_codes = pats.hists.shape[1]
    if n_codes > width:  # fewer rows than codes: add the rows' histograms directly
        for s0 in range(0, len(jj_all), step):
            sl = slice(s0, s0 + step)
            hist = pats.hists[pc_all[sl, None], codes_u[inv[sl]]].sum(axis=1)  # (G, 0..n1 - 1)
            yield _histogram_block(jj_all[sl], hist)
        return
    # rows per code of each distinct piece, then a piece's histogram is those times its
    # channel's code histograms: one product per run of pieces of one channel
    per_u = np.bincount((np.arange(len(pair))[:, None] * n_codes + codes_u).ravel(),
                        minlength=len(pair) * n_codes).reshape(len(pair), n_codes)
    hist = np.empty((len(jj_all), n1), dtype=np.int64)
    cuts = np.flatnonzero(np.diff(pc_all)) + 1
    for a, b in zip([0, *cuts], [*cuts, len(pc_all)], strict=True):
        hist[a:b] = per_u[inv[a:b]] @ pats.hists[pc_all[a]]
    yield _histogram_block(jj_all, hist)


class _Bands:
    """The reach-code counts of a piece [pa, pb) of a channel longer than ``spread`` (the most
    output positions between the first and last reader of one input), from tables over the
    offsets, not row by row: an input all of whose readers lie in the piece has its full code
    (which taps read it at all: padding only), and the inputs read from across either end form
    a band whose codes depend only on that end. So the counts are
    ``inside[pa] - past[pb] + start_band[pa] + end_band[pb]``, the same for every channel
    (translation: every interior piece of one length and offset reads alike)."""

    def __init__(self, pats: _Patterns, out_of: np.ndarray, n_ipos: int, n_pos: int) -> None:
        r = out_of[:, :n_ipos].astype(np.int64)
        has = r >= 0
        read = has.any(axis=0)
        r, has = r[:, read], has[:, read]
        omin = np.where(has, r, n_pos).min(axis=0)
        omax = np.where(has, r, -1).max(axis=0)
        self.spread = int((omax - omin).max(initial=0))
        bit = np.int64(1) << np.arange(r.shape[0], dtype=np.int64)
        full = pats.code_index(((has * bit[:, None]).sum(axis=0))[:, None])
        d = np.arange(1, self.spread + 1)[None, :]
        cut = omin[:, None] + d  # (inputs, d): an end at output position omin + d
        held = cut <= omax[:, None]
        after = np.zeros(cut.shape, dtype=np.int64)  # readers at or after the cut
        for t in range(r.shape[0]):
            after |= (has[t][:, None] & (r[t][:, None] >= cut)).astype(np.int64) << t
        before = (has * bit[:, None]).sum(axis=0)[:, None] & ~after
        start = pats.code_index(np.where(held, after, 0)[..., None])
        end = pats.code_index(np.where(held, before, 0)[..., None])
        n_codes = pats.hists.shape[1]
        tab = np.zeros((4, n_pos + 2, n_codes), dtype=np.int64)
        np.add.at(tab[0], (omin, full), 1)
        np.add.at(tab[1], (omax, full), 1)
        np.add.at(tab[2], (cut[held], start[held]), 1)
        np.add.at(tab[3], (cut[held], end[held]), 1)
        inside = np.cumsum(tab[0][::-1], axis=0)[::-1]  # readers all at or after a
        past = np.cumsum(tab[1][::-1], axis=0)[::-1]  # some reader at or after b
        self.at_start = inside + tab[2]
        self.at_end = tab[3] - past

    def blocks(self, pats: _Patterns, jj: np.ndarray, pc: np.ndarray, pa: np.ndarray,
               pb: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        n_codes = self.at_start.shape[1]
        n1 = pats.hist_width()
        step = max(1, _WINDOW_CELLS // (n_codes * n1))
        for s0 in range(0, len(jj), step):
            sl = slice(s0, s0 + step)
            per = self.at_start[pa[sl]] + self.at_end[pb[sl]]  # (G, codes)
            yield _histogram_block(jj[sl], np.einsum("gv,gvn->gn", per,
                                                     pats.hists[pc[sl], :n_codes]))


def _crossing(pats: _Patterns, valid: np.ndarray, in_flat: np.ndarray,
              pieces: tuple[np.ndarray, ...], width: int, jj: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The counts of groups ``jj``, each across the boundary of channels c and c + 1, by joint
    pattern: (taps of c, taps of c + 1) against (its window in c, its window in c + 1)."""
    c, pa1, pb1, lo1, pa2, pb2, lo2 = pieces
    n_taps, n = pats.m.shape[2], len(jj)
    r1 = _piece_reach(valid, in_flat, pa1, pb1, lo1, width)  # (G, taps, width)
    r2 = _piece_reach(valid, in_flat, pa2, pb2, lo2, width)
    both = np.zeros((n, 2 * n_taps, 2 * width))
    both[:, :n_taps, :width] = r1
    # window row w2 of the second piece is input position lo2 + w2: row w2 + lo2 - lo1 of the
    # first window, where that row exists (for channels of two conv groups the joint patterns
    # keep their inputs in separate rows, so where a column sits changes no row's counts)
    w1 = np.arange(width)[None, :] + (lo2 - lo1)[:, None]
    gi, w2 = np.nonzero((w1 >= 0) & (w1 < width))
    both[gi, n_taps:, w1[gi, w2]] = r2[gi, :, w2]  # (gi, w1) pairs are distinct
    r2[gi, :, w2] = 0.0
    both[:, n_taps:, width:] = r2
    jp, jm = pats.joint()
    cols, n_cols = _distinct_columns_each(both)  # (G, 2 * taps, codes), (G, codes)
    counts = np.rint(jp[c] @ cols).astype(np.int64)  # (G, joint patterns, codes)
    weights = jm[c][:, :, None] * n_cols[:, None, :]
    return jj, counts.reshape(n, -1).T, weights.reshape(n, -1).T


def _column_keys(reach: np.ndarray) -> np.ndarray | None:
    """An exact int64 key per column of a 0/1 matrix (..., rows, columns), or None when there
    are too many rows for one word."""
    n_rows = reach.shape[-2]
    if n_rows > _KEY_BITS:
        return None
    bit = (np.int64(1) << np.arange(n_rows, dtype=np.int64))
    return np.einsum("...rc,r->...c", (reach > 0.5).astype(np.int64), bit)


def _key_bits(keys: np.ndarray, n_rows: int) -> np.ndarray:
    """The 0/1 columns (..., rows, codes) that :func:`_column_keys` keyed."""
    return ((keys[..., None, :] >> np.arange(n_rows, dtype=np.int64)[:, None]) & 1
            ).astype(np.float64)


def _distinct_columns_each(reach: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct columns of each ``reach[g]`` (G, rows, inputs) and how many inputs have
    each, padded with empty columns of multiplicity 0 to the most any has: a count
    ``pattern @ column`` is the same for every input of one column (a reach column is which
    taps read that input), so a sum over inputs is a sum over these, by multiplicity."""
    keys = _column_keys(reach)
    if keys is None:
        return reach, np.ones(reach.shape[::2], dtype=np.int64)
    srt = np.sort(keys, axis=1)
    first = np.ones(srt.shape, dtype=bool)
    first[:, 1:] = srt[:, 1:] != srt[:, :-1]
    rank = np.cumsum(first, axis=1) - 1
    n_codes = int(rank.max(initial=0)) + 1
    g = np.arange(len(srt))[:, None]
    codes = np.zeros((len(srt), n_codes), dtype=np.int64)
    codes[g, rank] = srt
    n = np.bincount((g * n_codes + rank).ravel(), minlength=len(srt) * n_codes)
    return _key_bits(codes, reach.shape[1]), n.reshape(len(srt), n_codes).astype(np.int64)


def _piece_windows(valid: np.ndarray, in_flat: np.ndarray, pa: np.ndarray, pb: np.ndarray
                   ) -> tuple[np.ndarray, int]:
    """First flat input position each piece [pa, pb) of a channel reads, and the widest
    window [lo, hi) of input positions any piece reads."""
    big = np.iinfo(np.int64).max
    first = np.where(valid, in_flat, big).min(axis=0)  # per output position: lowest input read
    last = np.where(valid, in_flat, -1).max(axis=0)
    lo = np.empty(len(pa), dtype=np.int64)
    hi = np.empty(len(pa), dtype=np.int64)
    span = int((pb - pa).max())
    step = max(1, _WINDOW_CELLS // max(span, 1))
    for s0 in range(0, len(pa), step):  # (pieces, span) position tables, a slice at a time
        a, b = pa[s0:s0 + step], pb[s0:s0 + step]
        o = a[:, None] + np.arange(span)[None, :]
        held = o < b[:, None]
        o = np.where(held, o, a[:, None])
        lo[s0:s0 + step] = np.where(held, first[o], big).min(axis=1)
        hi[s0:s0 + step] = np.where(held, last[o], -1).max(axis=1) + 1
    lo = np.where(hi > 0, lo, 0)  # a piece that reads nothing (all padding)
    return lo, max(1, int((hi - lo).max()))


def _piece_reach(valid: np.ndarray, in_flat: np.ndarray, pa: np.ndarray, pb: np.ndarray,
                 lo: np.ndarray, width: int) -> np.ndarray:
    """(pieces, taps, width): 1 where a tap reads that row of the piece's window from one of
    the positions [pa, pb) the piece holds (each input position is read by a tap from at most
    one output position)."""
    n_taps = valid.shape[0]
    span = int((pb - pa).max())
    o = pa[:, None] + np.arange(span)[None, :]
    held = o < pb[:, None]
    o = np.where(held, o, pa[:, None])
    r = np.zeros((len(o), n_taps, width))
    for t in range(n_taps):
        rr, cc = np.nonzero(held & valid[t][o])
        r[rr, t, in_flat[t][o[rr, cc]] - lo[rr]] = 1.0
    return r


_PIECE_CELLS = 1 << 22  # partial-channel pieces are counted this many (piece, tap, input) at once


def _pieces(bounds: np.ndarray, n_pos: int) -> tuple[np.ndarray, ...]:
    """Split each core group [bounds[j], bounds[j+1]) of flat outputs (channel-major) at the
    channel boundaries: (group, channel, first position, end position) of every piece."""
    a, b = bounds[:-1], bounds[1:]
    c0 = a // n_pos
    count = np.where(b > a, (np.maximum(b, a + 1) - 1) // n_pos - c0 + 1, 0)
    pj = np.repeat(np.arange(len(a)), count)
    first = np.cumsum(count) - count
    pc = c0[pj] + (np.arange(int(count.sum())) - first[pj])
    pa = np.maximum(a[pj], pc * n_pos) - pc * n_pos
    pb = np.minimum(b[pj], (pc + 1) * n_pos) - pc * n_pos
    return pj, pc, pa, pb


def _conv_incidence(m: np.ndarray, valid: np.ndarray, in_flat: np.ndarray, reach: np.ndarray,
                    dims: tuple[int, int, int, int, int], starts: np.ndarray,
                    stop: int | None) -> np.ndarray:
    """Kept synapses from every input to each core group of a conv layer, [n_in, groups].

    A group holds whole output channels and at most two partial ones. A whole channel c
    contributes ``m[c] @ reach`` (its kept taps times which inputs each tap reads), so the
    whole channels of a group are summed first and multiplied once; a partial channel's reach is
    built from the positions it holds. Matrix products in float64 are exact on these counts.
    """
    cin, cout, g, n_pos, n_ipos = dims
    cin_g, cout_g = cin // g, cout // g
    k, n_taps = len(starts), m.shape[2]
    out = np.zeros((k, cin, n_ipos), dtype=np.float64)
    if not k:
        return np.zeros((cin * n_ipos, 0), dtype=np.int64)
    bounds = np.append(starts, cout * n_pos if stop is None else stop)
    pj, pc, pa, pb = _pieces(bounds, n_pos)
    full = (pa == 0) & (pb == n_pos)
    mf, reach_f = m.astype(np.float64), reach.astype(np.float64)
    pos = np.arange(n_pos)
    for gi in range(g):
        sel = (pc // cout_g) == gi
        block = out[:, gi * cin_g:(gi + 1) * cin_g]
        whole = sel & full
        if whole.any():
            per_group = np.zeros((k, cin_g, n_taps))
            np.add.at(per_group, pj[whole], mf[pc[whole]])
            # one GEMM (k * Cin_g, taps) @ (taps, inputs), not k small batched products
            block += (per_group.reshape(-1, n_taps) @ reach_f).reshape(k, cin_g, n_ipos)
        part = np.nonzero(sel & ~full)[0]
        step = max(1, _PIECE_CELLS // max(n_taps * n_ipos, cin_g * n_ipos))
        for s0 in range(0, len(part), step):
            idx = part[s0:s0 + step]
            held = (pos >= pa[idx, None]) & (pos < pb[idx, None])  # (P, n_pos)
            r = np.zeros((len(idx), n_taps, n_ipos))
            for t in range(n_taps):
                ok = valid[t]
                r[:, t, in_flat[t, ok]] = held[:, ok]
            np.add.at(block, pj[idx], mf[pc[idx]] @ r)
    return np.rint(out.reshape(k, -1).T).astype(np.int64)


def core_starts(n_units: int, k: int) -> np.ndarray:
    """First unit of each of ``k`` contiguous, near-equal core groups (the core mapping)."""
    return (np.arange(k, dtype=np.int64) * n_units) // k


def population_members(layers: Sequence[LayerGeometry]) -> dict[str, list[int]]:
    """Positions of the layers that drive each neuron population (``population``), in order;
    the first of each is the one the population is mapped on."""
    members: dict[str, list[int]] = {}
    for i, lay in enumerate(layers):
        if lay.population is not None:
            members.setdefault(lay.population, []).append(i)
    return members


@dataclass(frozen=True, slots=True, kw_only=True)
class LayerCaps:
    """Caps on one layer's kept weights. ``None`` = no cap at that level."""

    fan_in_max: int | None = None  # kept per weight row
    group_starts: tuple[int, ...] | None = None  # first row of each core group (laminar in rows)
    group_max: int | None = None  # kept per core group
    layer_max: int | None = None  # kept in the layer

    def merge(self, other: LayerCaps) -> LayerCaps:
        """The tighter of two cap sets (groups: ``other``'s if it defines any)."""

        def lo(a: int | None, b: int | None) -> int | None:
            return b if a is None else a if b is None else min(a, b)

        if other.group_starts is not None:
            starts, gmax = other.group_starts, other.group_max
        else:
            starts, gmax = self.group_starts, lo(self.group_max, other.group_max)
        return LayerCaps(
            fan_in_max=lo(self.fan_in_max, other.fan_in_max),
            group_starts=starts,
            group_max=gmax,
            layer_max=lo(self.layer_max, other.layer_max),
        )


def with_masks(
    layers: Sequence[LayerGeometry], masks: Mapping[str, np.ndarray]
) -> list[LayerGeometry]:
    """The layers with the masks named in ``masks`` swapped in (the others unchanged)."""
    return [
        dataclasses.replace(lay, mask=masks[lay.name]) if lay.name in masks else lay
        for lay in layers
    ]
