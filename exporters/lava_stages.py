"""NIR graph to Lava stages and Loihi fixed point, the part of the Lava backend that needs no Lava.

:func:`build_stages` turns a NIR graph into one :class:`Stage` per neuron layer (the composed,
sparse affine map of every input branch, gains and per-neuron thresholds folded in, Loihi's
reset substitution and the Lava delay depth); :func:`quantize_stage` and :func:`quantize_input`
give their Loihi 8-bit / 24-bit fixed-point form with the error record, and
:func:`observed_a_in` the synaptic input a run produced. ``lava_runner``'s docstring describes
the network these stages become. Standard library, numpy, scipy and nir only: it runs in the
Lava interpreter and is tested in the main environment.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import scipy.sparse as sp

if __package__:
    from . import nir_graph, nir_nodes
else:  # loaded by path in the Lava interpreter (lava_runner puts this folder on sys.path)
    import nir_graph  # type: ignore[no-redef]
    import nir_nodes  # type: ignore[no-redef]

ExportError = nir_graph.ExportError

__all__ = ["LayerStats", "QuantStats", "QuantWeights", "Stage", "StageWalk", "build_stages",
           "compose_affine", "observed_a_in", "quantize", "quantize_input", "quantize_stage"]

# Loihi 2 word widths, as lava-nc 0.10.0's bit-accurate models declare them
# (lava/proc/lif/models.py PyLifModelBitAcc: vth precision=17, du/dv precision=12, u/v 24;
# lava/proc/sparse/models.py: weights precision=8, a_out precision=16; weightutils: weight_exp
# in [-8, 7]).
W_MANT_MAX = 2**8 - 1  # 8-bit weight mantissa magnitude
WEIGHT_EXP_RANGE = (-8, 7)
VTH_MAX = 2**17 - 1  # 17-bit threshold mantissa
TARGET_VTH = 2**13  # aim vth here: headroom for the 24-bit membrane
DECAY_UNITY = 4096  # du/dv are 12-bit fractions of 4096
A_IN_MAX = 2**15 - 1  # 16-bit signed synaptic input (dendritic accumulator)
MEMBRANE_MAX = 2**23 - 1  # 24-bit signed membrane / graded payload
GRADED_MAX = 255.0  # graded input payload kept within 8 bits
INPUT_SHIFT_RANGE = (-16, 16)
# Loihi 2 synaptic delays are 6 bits: a DelaySparse branch waits at most 63 steps
# (Loihi 2 architecture; lava/proc/sparse/process.py DelaySparse max_delay)
MAX_DELAY = 63
_CHUNK = 256


# --------------------------------------------------------------------------- graph -> stages


@dataclass(frozen=True, slots=True, kw_only=True)
class Stage:
    """One neuron layer and the composed affine map that feeds it (per sample)."""

    name: str
    kind: str
    linear_nodes: tuple[str, ...]
    in_shape: tuple[int, ...]
    shape: tuple[int, ...]
    matrix: sp.csr_matrix  # [n_out, n_in] float64, rows already scaled by gains/thresholds
    bias: np.ndarray | None  # [n_out] float64 (gain and leak included) or None
    threshold: float
    beta: float
    alpha: float | None
    reset_mechanism: str
    reset_substituted: bool
    refractory: bool
    threshold_normalized: bool
    # where the columns of ``matrix`` come from: one (source, size) per input branch, in column
    # order; a source is a neuron node, or None for the network input. A chain has one branch:
    # the layer before. Residual joins have several, summed into the same neurons.
    sources: tuple[tuple[str | None, int], ...]
    depth: int  # Lava steps from the input: 1 + the deepest source's depth (input: 0)

    @property
    def n_in(self) -> int:
        return int(np.prod(self.in_shape))

    @property
    def n_out(self) -> int:
        return int(np.prod(self.shape))


def compose_affine(
    graph: Any, names: list[str], in_shape: tuple[int, ...]
) -> tuple[sp.csr_matrix, np.ndarray | None, tuple[int, ...]]:
    """The chain of synaptic/shape nodes ``names`` as (sparse M [out, in], bias or None, shape).

    Each node's matrix is built from its parameters (:func:`node_matrix`: a conv's kept taps at
    every output position, a pool's window, ...), so the cost is the matrix's size, not one
    forward pass per input unit (a VGG conv layer has 65,536 inputs); the chain is their sparse
    product. Exact for a single weight node (each entry is the float weight itself) and for
    chains where each entry has one path (a pool into a conv). A node type without a builder
    falls back to running the chain on basis vectors in chunks. The bias is the chain's output
    on a zero input.
    """
    nodes = [graph.nodes[n] for n in names]
    plain = [nir_nodes.NODES[nir_nodes.type_name(node)].strip_bias(node) for node in nodes]
    zero = _run_chain(names, nodes, np.zeros((1, *in_shape)))
    out_shape = tuple(zero.shape[1:])
    bias = zero.reshape(-1)
    mat = _chain_product(plain, in_shape)
    if mat is None:
        mat = _basis_matrix(names, plain, in_shape)
    mat.eliminate_zeros()
    mat.sort_indices()
    return mat, (bias if np.any(bias) else None), out_shape


def _run_chain(names: list[str], chain: list[Any], x: np.ndarray) -> np.ndarray:
    for n, node in zip(names, chain, strict=True):
        x = nir_nodes.apply_node(n, node, x)
    return x


def _chain_product(plain: list[Any], in_shape: tuple[int, ...]) -> sp.csr_matrix | None:
    """The product of the chain's node matrices (last node first), or None if one node has no
    builder."""
    mat: sp.csr_matrix | None = None
    shape = tuple(in_shape)
    n_in = int(np.prod(in_shape)) if in_shape else 1
    for node in plain:
        built = node_matrix(node, shape)
        if built is None:
            return None
        m, shape = built
        mat = m if mat is None else sp.csr_matrix(m @ mat)
    return sp.identity(n_in, format="csr") if mat is None else mat


def _basis_matrix(names: list[str], plain: list[Any], in_shape: tuple[int, ...]
                  ) -> sp.csr_matrix:
    """The chain run on the unit vectors of its input, _CHUNK at a time."""
    n_in = int(np.prod(in_shape)) if in_shape else 1
    blocks = []
    for start in range(0, n_in, _CHUNK):
        stop = min(start + _CHUNK, n_in)
        basis = np.zeros((stop - start, n_in))
        basis[np.arange(stop - start), np.arange(start, stop)] = 1.0
        cols = _run_chain(names, plain, basis.reshape((stop - start, *in_shape)))
        blocks.append(sp.csr_matrix(cols.reshape(stop - start, -1).T))
    return sp.hstack(blocks, format="csr")


def node_matrix(node: Any, in_shape: tuple[int, ...]
                ) -> tuple[sp.csr_matrix, tuple[int, ...]] | None:
    """A bias-free synaptic or shape node as (sparse [out, in] float64 matrix, output shape),
    built from its parameters; None for a type that has no builder here."""
    build = _MATRICES.get(nir_nodes.type_name(node))
    return None if build is None else build(node, tuple(int(v) for v in in_shape))


def _dense_matrix(node: Any, in_shape: tuple[int, ...]
                  ) -> tuple[sp.csr_matrix, tuple[int, ...]] | None:
    w = np.asarray(node.weight, dtype=np.float64)
    if w.ndim != 2 or w.shape[1] != int(np.prod(in_shape)):
        return None  # apply_node names the mismatch
    return sp.csr_matrix(w), (int(w.shape[0]),)


def _conv_matrix(node: Any, in_shape: tuple[int, ...]
                 ) -> tuple[sp.csr_matrix, tuple[int, ...]] | None:
    """Every kept tap (co, ci, k) at every output position o reads input o * stride - pad +
    k * dilation, where that lies inside the input (torch's cross-correlation, zero padding).

    Built row by row in CSR order, one output channel at a time: the taps of a channel in
    C order (ci, then k) give increasing columns at every position, so nothing is sorted."""
    w = np.asarray(node.weight, dtype=np.float64)
    nd = w.ndim - 2
    if len(in_shape) != nd + 1 or in_shape[0] != w.shape[1] * int(node.groups):
        return None
    stride, dilation, pads = nir_nodes.conv_geometry(node, w)
    space, ks = in_shape[1:], w.shape[2:]
    cout, cin_g = w.shape[0], w.shape[1]
    cout_g = cout // int(node.groups)
    out_sp = tuple((space[d] + pads[d][0] + pads[d][1] - dilation[d] * (ks[d] - 1) - 1)
                   // stride[d] + 1 for d in range(nd))
    n_pos, n_space = int(np.prod(out_sp)), int(np.prod(space))
    # flat input offset (within one channel) of every (output position, kernel tap), both in C
    # order; -1 where the tap falls on padding
    flat = np.zeros((1, 1), dtype=np.int64)
    valid = np.ones((1, 1), dtype=bool)
    for d in range(nd):
        c = (np.arange(out_sp[d])[:, None] * stride[d] - pads[d][0]
             + np.arange(ks[d])[None, :] * dilation[d])  # [O_d, K_d]
        shape = (flat.shape[0] * out_sp[d], flat.shape[1] * ks[d])
        flat = (flat[:, None, :, None] * space[d] + c[None, :, None, :]).reshape(shape)
        valid = (valid[:, None, :, None]
                 & ((c >= 0) & (c < space[d]))[None, :, None, :]).reshape(shape)
    flat[~valid] = -1
    idx_dtype = np.int32 if in_shape[0] * n_space < 2**31 else np.int64
    flat = flat.astype(idx_dtype)
    data, indices, counts = [], [], []
    for co in range(cout):
        wc = w[co].reshape(cin_g, -1)  # [cin_g, K]
        ci_l, k_l = np.nonzero(wc)  # C order: columns increase with (ci, k) at every position
        if ci_l.size == 0:
            counts.append(np.zeros(n_pos, dtype=np.int64))
            continue
        cols = flat[:, k_l]  # [P, taps]: the input offset within the channel, or -1
        ok = cols >= 0
        cols += (((co // cout_g) * cin_g + ci_l) * n_space).astype(idx_dtype)[None, :]
        data.append(np.broadcast_to(wc[ci_l, k_l][None, :], ok.shape)[ok])
        indices.append(cols[ok])
        counts.append(np.count_nonzero(ok, axis=1))
    indptr = np.concatenate([[0], np.cumsum(np.concatenate(counts))])
    # indptr holds the running count of synapses, which may pass 2**31 before the columns do
    indptr = indptr.astype(idx_dtype if int(indptr[-1]) < 2**31 else np.int64)
    mat = sp.csr_matrix((np.concatenate(data) if data else np.zeros(0),
                         np.concatenate(indices) if indices else np.zeros(0, idx_dtype),
                         indptr), shape=(cout * n_pos, in_shape[0] * n_space))
    mat.has_sorted_indices = True
    return mat, (cout, *out_sp)


def _pool_matrix(average: bool) -> Any:
    def build(node: Any, in_shape: tuple[int, ...]
              ) -> tuple[sp.csr_matrix, tuple[int, ...]] | None:
        if len(in_shape) != 3:
            return None
        k, s, p = nir_nodes.pool_geometry(node)
        c, h, w_ = in_shape
        oh, ow = (h + 2 * p[0] - k[0]) // s[0] + 1, (w_ + 2 * p[1] - k[1]) // s[1] + 1
        # count_include_pad=True (torch's default), as nir_nodes._pool2d divides
        value = 1.0 / np.float64(k[0] * k[1]) if average else 1.0
        oy, ox, ky, kx = np.meshgrid(np.arange(oh), np.arange(ow), np.arange(k[0]),
                                     np.arange(k[1]), indexing="ij")
        iy, ix = oy * s[0] - p[0] + ky, ox * s[1] - p[1] + kx
        ok = (iy >= 0) & (iy < h) & (ix >= 0) & (ix < w_)
        out_flat, in_flat = (oy * ow + ox)[ok], (iy * w_ + ix)[ok]
        ch = np.arange(c)[:, None]
        rows = (ch * oh * ow + out_flat[None, :]).reshape(-1)
        cols = (ch * h * w_ + in_flat[None, :]).reshape(-1)
        mat = sp.csr_matrix((np.full(rows.size, value), (rows, cols)),
                            shape=(c * oh * ow, c * h * w_))
        return mat, (c, oh, ow)
    return build


def _flatten_matrix(node: Any, in_shape: tuple[int, ...]
                    ) -> tuple[sp.csr_matrix, tuple[int, ...]]:
    n = int(np.prod(in_shape)) if in_shape else 1  # C-order: the flat index does not move
    return sp.identity(n, format="csr"), nir_nodes.flat_shape(node, in_shape)


def _scale_matrix(node: Any, in_shape: tuple[int, ...]
                  ) -> tuple[sp.csr_matrix, tuple[int, ...]] | None:
    scale = np.asarray(node.scale, dtype=np.float64)
    try:
        if np.broadcast_shapes(scale.shape, in_shape) != in_shape:
            return None
    except ValueError:
        return None
    return sp.diags(np.broadcast_to(scale, in_shape).reshape(-1), format="csr"), in_shape


_MATRICES: dict[str, Any] = {
    "Affine": _dense_matrix, "Linear": _dense_matrix, "Conv1d": _conv_matrix,
    "Conv2d": _conv_matrix, "AvgPool2d": _pool_matrix(True), "SumPool2d": _pool_matrix(False),
    "Flatten": _flatten_matrix, "Scale": _scale_matrix}


def _uniform(name: str, what: str, arr: np.ndarray) -> float:
    vals = np.unique(np.asarray(arr, dtype=np.float64))
    if vals.size != 1:
        raise ExportError(
            f"NIR node {name!r}: Lava's LIF takes one {what} per layer but the node has "
            f"{vals.size} distinct values ({vals.min():.6g}..{vals.max():.6g}); give the layer "
            "a single value or skip the Lava export"
        )
    return float(vals[0])


@dataclass(frozen=True, slots=True, kw_only=True)
class _Inputs:
    """The input branches of one neuron node, composed and side by side."""

    matrix: sp.csr_matrix
    bias: np.ndarray | None
    sources: tuple[tuple[str | None, int], ...]
    linear_nodes: tuple[str, ...]
    in_shape: tuple[int, ...]
    shape: tuple[int, ...]
    depth: int


class _Walk:
    """What build_stages knows while it walks the graph: sources, neurons, finished stages."""

    def __init__(self, graph: Any) -> None:
        self.graph = graph
        self.order, self.preds = nir_graph.check_nir_graph(graph, nir_nodes.NODES)
        self.inp = self.order[0]
        self.in_shape = nir_graph.node_shape(graph.nodes[self.inp], "output")
        self.neuron = {n for n in self.order if nir_nodes.is_neuron(graph.nodes[n])}
        self.by_name: dict[str, Stage] = {}
        self.used: set[str] = set()

    def branch(self, head: str) -> tuple[list[str], str]:
        """The chain of synaptic/shape nodes from ``head`` back to a neuron node or the input
        (first node first), and where it starts."""
        chain: list[str] = []
        cur = head
        while cur != self.inp and cur not in self.neuron:
            if len(self.preds[cur]) != 1:
                raise ExportError(
                    f"NIR node {cur!r} has {len(self.preds[cur])} inputs; the Lava backend joins "
                    f"branches only at neuron nodes (sum the currents before the neurons)")
            chain.append(cur)
            cur = self.preds[cur][0]
        chain.reverse()
        return chain, cur

    def inputs(self, n: str) -> _Inputs:
        """One branch per edge into neuron node ``n`` (NIR sums the edges into a node)."""
        mats, biases, srcs, linear, shapes = [], [], [], [], []
        for head in self.preds[n]:
            chain, cur = self.branch(head)
            src_shape = self.in_shape if cur == self.inp else self.by_name[cur].shape
            mat_b, bias_b, shape_b = compose_affine(self.graph, chain, src_shape)
            mats.append(mat_b)
            biases.append(bias_b)
            srcs.append((None if cur == self.inp else cur,
                         int(np.prod(src_shape)) if src_shape else 1))
            linear.extend(chain)
            shapes.append(shape_b)
            self.used.update(chain)
        if len(set(shapes)) > 1:
            raise ExportError(f"NIR node {n!r} sums inputs of shapes "
                              f"{', '.join(map(str, shapes))}")
        bias = None
        for b in biases:
            if b is not None:
                bias = b if bias is None else bias + b
        first = srcs[0][0]
        in_shape = ((sum(k for _, k in srcs),) if len(srcs) > 1 else
                    self.in_shape if first is None else self.by_name[first].shape)
        depth = 1 + max(0 if src is None else self.by_name[src].depth for src, _ in srcs)
        return _Inputs(matrix=sp.hstack(mats, format="csr") if len(mats) > 1 else mats[0],
                       bias=bias, sources=tuple(srcs), linear_nodes=tuple(linear),
                       in_shape=in_shape, shape=shapes[0], depth=depth)


def _stage(n: str, p: Any, ins: _Inputs) -> Stage:
    """Neuron node ``n`` (parameters ``p``) fed by ``ins`` as one Lava layer."""
    if tuple(p.threshold.shape) != ins.shape:
        raise ExportError(
            f"NIR node {n!r} has neuron shape {p.threshold.shape} but receives {ins.shape}"
        )
    if p.has_v_reset:
        raise ExportError(f"NIR node {n!r}: Loihi resets to 0, v_reset != 0 is not supported")
    beta = _uniform(n, "voltage decay (beta)", np.clip(p.beta, 0.0, 1.0))
    alpha = None
    row = p.gain.reshape(-1).astype(np.float64)
    if p.has_syn:
        alpha = _uniform(n, "current decay (alpha)", np.clip(p.alpha, 0.0, 1.0))
        row = row * p.gain_syn.reshape(-1)
        if p.has_leak:
            raise ExportError(f"NIR node {n!r}: CubaLIF with v_leak != 0 is not supported")
    unit = p.unit_gain and (not p.has_syn or p.unit_gain_syn)
    thr = p.threshold.reshape(-1)
    normalized = bool(np.unique(thr).size != 1)
    if normalized:
        if np.any(thr <= 0):
            raise ExportError(f"NIR node {n!r}: thresholds must be > 0 for Lava")
        row = row / thr
    mat, bias = ins.matrix, ins.bias
    if not unit or normalized:
        mat = sp.diags(row) @ mat
        bias = None if bias is None else bias * row
    if not p.has_syn and p.has_leak:
        leak = p.leak.reshape(-1) / (thr if normalized else 1.0)
        bias = leak if bias is None else bias + leak
    mech = p.reset_mechanism
    return Stage(
        name=n, kind=p.kind, linear_nodes=ins.linear_nodes, in_shape=ins.in_shape,
        shape=ins.shape, matrix=sp.csr_matrix(mat), bias=bias,
        threshold=1.0 if normalized else float(thr[0]), beta=beta, alpha=alpha,
        reset_mechanism=mech, reset_substituted=mech != "zero",
        refractory=p.has_syn and p.reset_delay,
        threshold_normalized=normalized, sources=ins.sources, depth=ins.depth,
    )


class StageWalk:
    """The neuron layers of a NIR graph in order, built one at a time as they are iterated.

    Only the stage being handed out holds its matrix; the walk keeps each finished layer's
    shape and depth, so a caller that runs and drops each stage (the layer-by-layer Lava run)
    holds one layer's synapses at a time. Iterate once; then :meth:`ignored`.
    """

    def __init__(self, graph: Any) -> None:
        self._walk = _Walk(graph)
        self._dt = nir_graph.graph_dt(graph)
        self._count = 0

    def __iter__(self) -> Iterator[Stage]:
        walk = self._walk
        for n in walk.order[1:]:
            if n not in walk.neuron:
                continue
            p = nir_nodes.neuron_params(n, walk.graph.nodes[n], self._dt)
            stage = _stage(n, p, walk.inputs(n))
            # what later layers read of it: shape and depth, not its synapses
            walk.by_name[n] = replace(stage, matrix=sp.csr_matrix((stage.n_out, 0)), bias=None)
            self._count += 1
            yield stage
        if not self._count:
            raise ExportError("NIR graph has no neuron node (LIF, IF or CubaLIF): nothing to run")

    def ignored(self) -> list[str]:
        """Nodes after the last neuron layer (a trailing readout Affine, say): not run in Lava."""
        walk = self._walk
        return [n for n in walk.order[1:] if n not in walk.neuron and n not in walk.used
                and nir_nodes.type_name(walk.graph.nodes[n]) != "Output"]


def build_stages(graph: Any) -> tuple[list[Stage], list[str]]:
    """Neuron layers in order, each with its composed input map; plus ignored trailing nodes."""
    walk = StageWalk(graph)
    stages = list(walk)
    return stages, walk.ignored()


# --------------------------------------------------------------------------- fixed point


@dataclass(frozen=True, slots=True, kw_only=True)
class QuantWeights:
    """8-bit mantissas of one weight set with a shared exponent, plus the error record."""

    matrix: sp.csr_matrix  # int32 mantissas
    weight_exp: int
    sign_mode: str  # "MIXED" | "EXCITATORY" | "INHIBITORY" | "NULL"
    scale: float  # mantissa units per real unit, at weight_exp 0
    stats: dict = field(default_factory=dict)


def _sign_mode(data: np.ndarray) -> tuple[str, int, int, int]:
    """(mode, lo, hi, step) of Loihi 8-bit mantissas for these (nonzero) values."""
    if data.size == 0:
        return "NULL", 0, 0, 1
    if data.min() >= 0:
        return "EXCITATORY", 0, W_MANT_MAX, 1
    if data.max() <= 0:
        return "INHIBITORY", -W_MANT_MAX, 0, 1
    return "MIXED", -W_MANT_MAX - 1, W_MANT_MAX - 1, 2  # Lava drops the LSB of mixed


def quantize(mat: sp.csr_matrix, q: float, lo: int, hi: int, step: int
             ) -> tuple[np.ndarray, dict]:
    """Mantissas round(w*q) on a grid of ``step`` clipped to [lo, hi], and the error stats."""
    w = mat.data.astype(np.float64)
    scaled = w * q
    mant = np.round(scaled / step) * step
    clipped = (mant > hi) | (mant < lo)
    mant = np.clip(mant, lo, hi).astype(np.int32)
    err = mant / q - w if q else -w
    rms_w = float(np.sqrt(np.mean(w**2))) if w.size else 0.0
    stats = {
        "n_nonzero": int(w.size),
        "clipped_fraction": float(clipped.mean()) if w.size else 0.0,
        "zeroed_fraction": float(((mant == 0) & (w != 0)).mean()) if w.size else 0.0,
        "max_abs_error": float(np.abs(err).max()) if w.size else 0.0,
        "rms_error": float(np.sqrt(np.mean(err**2))) if w.size else 0.0,
        "rel_rms_error": float(np.sqrt(np.mean(err**2)) / rms_w) if rms_w else 0.0,
        "max_abs_weight": float(np.abs(w).max()) if w.size else 0.0,
    }
    return mant, stats


def _csr_with(mat: sp.csr_matrix, data: np.ndarray) -> sp.csr_matrix:
    out = sp.csr_matrix((data, mat.indices.copy(), mat.indptr.copy()), shape=mat.shape)
    out.eliminate_zeros()
    return out


def _neuron_fixed(st: Stage, scale: float) -> dict[str, Any]:
    """vth, dv, du of one stage in Loihi's integer units, with their errors."""
    neuron: dict[str, Any] = {}
    vth_real = st.threshold * scale
    vth = int(min(max(round(vth_real), 0), VTH_MAX))
    neuron["vth"] = vth
    neuron["threshold_rel_error"] = abs(vth / scale - st.threshold) / st.threshold if (
        st.threshold) else 0.0
    neuron["threshold_clipped"] = bool(round(vth_real) > VTH_MAX)
    dv = int(min(max(round((1.0 - st.beta) * DECAY_UNITY), 0), DECAY_UNITY - 1))
    neuron["dv"] = dv
    neuron["beta"] = st.beta
    neuron["beta_effective"] = 1.0 - dv / DECAY_UNITY
    if st.alpha is None:
        neuron["du"] = DECAY_UNITY - 1
        neuron["alpha_effective"] = 0.0
    else:
        # Loihi adds 1 to du
        du = int(min(max(round((1.0 - st.alpha) * DECAY_UNITY) - 1, 0), DECAY_UNITY - 1))
        neuron["du"] = du
        neuron["alpha"] = st.alpha
        neuron["alpha_effective"] = 1.0 - (du + 1) / DECAY_UNITY
    return neuron


def _bias_fixed(bias: np.ndarray, scale: float) -> tuple[QuantWeights, float]:
    """The bias column as 8-bit mantissas with its own exponent; and its largest a_in units."""
    bcol = sp.csr_matrix(bias.reshape(-1, 1))
    bmode, blo, bhi, bstep = _sign_mode(bcol.data)
    bmax = float(np.abs(bcol.data).max())
    full = bhi if bmode != "INHIBITORY" else -blo
    e_b = math.ceil(math.log2(bmax * scale / full)) if bmax > 0 else 0
    e_b = int(min(max(e_b, WEIGHT_EXP_RANGE[0]), WEIGHT_EXP_RANGE[1]))
    q_b = scale / 2.0**e_b
    bmant, bstats = quantize(bcol, q_b, blo, bhi, bstep)
    b_q = QuantWeights(matrix=_csr_with(bcol, bmant), weight_exp=e_b, sign_mode=bmode, scale=q_b,
                       stats=bstats)
    return b_q, float(np.abs(bmant).max() * 2.0**e_b) if bmant.size else 0.0


def quantize_stage(
    st: Stage, clip_percentile: float = 100.0, input_shift: int = 0, graded: bool = False
) -> tuple[QuantWeights, QuantWeights | None, dict]:
    """Fixed-point form of one stage: weights, bias column (or None) and neuron parameters.

    ``graded``: the stage's input is a graded payload x * 2^k (k = ``input_shift``, |payload|
    <= 255), which the weight exponent divides back out; else binary spikes.
    """
    data = st.matrix.data
    mode, lo, hi, step = _sign_mode(data)
    ref = float(np.percentile(np.abs(data), clip_percentile)) if data.size else 0.0
    q_w = (hi if mode != "INHIBITORY" else -lo) / ref if ref > 0 else 1.0
    e = math.floor(math.log2(TARGET_VTH / (st.threshold * q_w))) if st.threshold > 0 else 0
    e = int(min(max(e, WEIGHT_EXP_RANGE[0]), WEIGHT_EXP_RANGE[1]))
    scale = q_w * 2.0**e  # a_in units per unit of real current
    mant, wstats = quantize(st.matrix, q_w, lo, hi, step)
    w_q = QuantWeights(matrix=_csr_with(st.matrix, mant), weight_exp=e - input_shift,
                       sign_mode=mode, scale=q_w, stats=wstats)
    neuron = _neuron_fixed(st, scale)
    b_q, max_bias_units = (None, 0.0) if st.bias is None else _bias_fixed(st.bias, scale)
    absm = abs(w_q.matrix)
    row_sum = np.asarray(absm.sum(axis=1)).reshape(-1) if absm.nnz else np.zeros(1)
    worst = float(row_sum.max() * 2.0**w_q.weight_exp * (GRADED_MAX if graded else 1.0))
    worst += max_bias_units
    neuron["a_in_max_abs_possible"] = worst
    neuron["a_in_overflow_possible"] = bool(worst > A_IN_MAX)
    return w_q, b_q, neuron


def quantize_input(flat: np.ndarray) -> tuple[np.ndarray, int, dict]:
    """Graded input [T, N, n_in] as integers x * 2^k (k chosen so max|x| * 2^k <= 255), the
    shift k and the error record."""
    xmax = float(np.abs(flat).max())
    shift = math.floor(math.log2(GRADED_MAX / xmax)) if xmax > 0 else 0
    shift = max(min(shift, INPUT_SHIFT_RANGE[1]), INPUT_SHIFT_RANGE[0])
    xq = np.round(flat * 2.0**shift)
    err = xq / 2.0**shift - flat
    record = {
        "shift": shift, "max_abs_error": float(np.abs(err).max()),
        "rms_error": float(np.sqrt(np.mean(err**2))),
        "clipped_fraction": float((np.abs(xq) > MEMBRANE_MAX).mean()),
    }
    return np.clip(xq, -MEMBRANE_MAX, MEMBRANE_MAX), shift, record


def _shift(a: np.ndarray, exp: int) -> np.ndarray:
    return np.left_shift(a, exp) if exp >= 0 else np.right_shift(a, -exp)


def observed_a_in(st: Stage, w_q: QuantWeights, b_q: QuantWeights | None, x_in: np.ndarray,
                  spikes: dict[str, np.ndarray], binary: bool, input_shift: int) -> float:
    """The largest |a_in| stage ``st`` received in a fixed_pt run: its quantized inputs (the
    graded input ``x_in`` [T*N, n_in] or the layers' spikes) through its integer weights."""
    acc: np.ndarray | int = 0
    col = 0
    n_rows = x_in.shape[0]
    for src, size in st.sources:
        g = src is None and not binary
        inp_b = (x_in if src is None else
                 spikes[src].reshape(n_rows, -1).astype(np.int64))
        part = w_q.matrix[:, col:col + size]
        col += size
        if part.nnz and inp_b.size:
            prod = np.asarray(part.astype(np.int64) @ inp_b.astype(np.int64).T)
            acc = acc + _shift(prod, w_q.weight_exp - (input_shift if g else 0))
    if b_q is not None:
        acc = acc + _shift(b_q.matrix.toarray().astype(np.int64), b_q.weight_exp)
    if isinstance(acc, np.ndarray) and acc.size:
        return float(np.abs(acc).max())
    return 0.0


# --------------------------------------------------------------------------- run record


def _weight_record(q: QuantWeights) -> dict[str, Any]:
    return {**q.stats, "weight_exp": q.weight_exp, "sign_mode": q.sign_mode}


@dataclass(frozen=True, slots=True, kw_only=True)
class QuantStats:
    """A layer's fixed-point record: weight (and bias) quantization, the integer neuron
    parameters (``neuron``: quantize_stage's dict, key order kept) and the a_in observed."""

    weights: dict[str, Any]
    neuron: dict[str, Any]
    bias: dict[str, Any] | None = None
    a_in_max_abs_observed: float | None = None

    @classmethod
    def of(cls, w_q: QuantWeights, b_q: QuantWeights | None, neuron: dict[str, Any]
           ) -> QuantStats:
        return cls(weights=_weight_record(w_q), neuron=dict(neuron),
                   bias=None if b_q is None else _weight_record(b_q))

    @property
    def a_in_overflow_observed(self) -> bool | None:
        a = self.a_in_max_abs_observed
        return None if a is None else bool(a > A_IN_MAX)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"weights": self.weights, **self.neuron}
        if self.bias is not None:
            out["bias"] = self.bias
        if self.a_in_max_abs_observed is not None:
            out["a_in_max_abs_observed"] = self.a_in_max_abs_observed
            out["a_in_overflow_observed"] = self.a_in_overflow_observed
        return out

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> QuantStats:
        rest = ("weights", "bias", "a_in_max_abs_observed", "a_in_overflow_observed")
        return cls(weights=d["weights"], bias=d.get("bias"),
                   neuron={k: v for k, v in d.items() if k not in rest},
                   a_in_max_abs_observed=d.get("a_in_max_abs_observed"))


@dataclass(frozen=True, slots=True, kw_only=True)
class LayerStats:
    """One layer of a Lava run as the stats file records it (``layers`` in out.json)."""

    name: str
    kind: str
    delay: int
    n_neurons: int
    linear_nodes: tuple[str, ...]
    nnz_per_sample: int
    reset_mechanism: str
    reset_substituted: bool
    threshold_normalized: bool
    quant: QuantStats | None
    du: Any
    dv: Any
    vth: Any
    lava_process: str
    branches: tuple[dict[str, Any], ...]

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name, "kind": self.kind, "delay": self.delay,
            "n_neurons": self.n_neurons, "linear_nodes": list(self.linear_nodes),
            "nnz_per_sample": self.nnz_per_sample, "reset_mechanism": self.reset_mechanism,
            "reset_substituted": self.reset_substituted,
            "threshold_normalized": self.threshold_normalized,
        }
        if self.quant is not None:
            out["quant"] = self.quant.to_json()
        out.update(du=self.du, dv=self.dv, vth=self.vth, lava_process=self.lava_process,
                   branches=[dict(b) for b in self.branches])
        return out

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> LayerStats:
        q = d.get("quant")
        return cls(name=d["name"], kind=d["kind"], delay=d["delay"], n_neurons=d["n_neurons"],
                   linear_nodes=tuple(d["linear_nodes"]), nnz_per_sample=d["nnz_per_sample"],
                   reset_mechanism=d["reset_mechanism"], reset_substituted=d["reset_substituted"],
                   threshold_normalized=d["threshold_normalized"],
                   quant=None if q is None else QuantStats.from_json(q), du=d["du"], dv=d["dv"],
                   vth=d["vth"], lava_process=d["lava_process"],
                   branches=tuple(d.get("branches", ())))
