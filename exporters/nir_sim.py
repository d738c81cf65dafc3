"""Pure-numpy reference simulator of NIR graphs, with snnTorch 1.0.0 step semantics.

``simulate(graph, x)`` runs a NIR graph (as written by slamp-deploy's exporter, or any
feed-forward NIR graph built from the supported nodes) for ``T`` steps on a batch of inputs
``x`` of shape ``[T, N, *input_shape]`` and returns every node's output ``[T, N, *shape]``:
spikes for neuron nodes, currents for synaptic nodes, plus ``"<node>.mem"`` (and
``"<node>.syn"`` for CubaLIF) with the membrane after each step as snnTorch returns it.

Arithmetic is float32 by default, in snnTorch's order of operations, so element-wise neuron
updates match a torch float32 run bit for bit; matrix products and convolutions accumulate
in numpy's order, so currents agree with torch to float32 rounding (~1e-7 relative), not
bitwise. ``dtype=np.float64`` gives a float64 run (what Lava's floating_pt uses).

Neuron semantics (node metadata ``slamp.reset_mechanism`` in {"zero", "subtract", "none"},
default "zero", and ``slamp.reset_delay``, default True, as snnTorch's default):

* LIF:  beta = 1 - dt/tau, input gain g = r*dt/tau (1 for snnTorch's r = tau/dt; the multiply
  is skipped when g == 1 so the float32 result is bitwise snnTorch's); v_leak adds
  (dt/tau)*v_leak per step. With reset flag r_t = (mem_{t-1} > thr):
  zero: mem_t = beta*((1 - r_t)*mem_{t-1}) + g*I_t;  subtract: mem_t = beta*mem_{t-1} + g*I_t
  - r_t*thr;  none: no reset.  Spike s_t = (mem_t > thr).
* IF:   as LIF with beta = 1 and g = r.
* CubaLIF: alpha = 1 - dt/tau_syn, beta = 1 - dt/tau_mem, g_syn = w_in*dt/tau_syn,
  g_mem = r*dt/tau_mem.  syn_t = alpha*syn_{t-1} + g_syn*I_t;  m = beta*mem_{t-1} + g_mem*syn_t;
  zero: mem_t = m - m*r_t (snnTorch's Synaptic zeroes the NEW membrane);  subtract: mem_t = m -
  r_t*thr.
* ``slamp.reset_delay`` False: as snnTorch, the update above is followed right after the
  spike by ``do_reset = s_t - r_t``; zero: mem_t -= do_reset*mem_t, subtract: mem_t -=
  do_reset*thr.
* A nonzero ``v_reset`` with the zero mechanism resets to v_reset instead of 0.

``dt`` comes from graph metadata ``slamp.dt`` (default 1e-4, snnTorch's convention).

Synaptic/shape nodes: Affine, Linear, Scale, Conv1d, Conv2d (stride, padding incl. "same"/
"valid", dilation, groups), AvgPool2d (count_include_pad, as torch's default), SumPool2d,
Flatten (per-sample dims, no batch). Several edges into one node are summed. Anything else, a
cycle, or a node that the input does not reach raises ExportError naming the node.

Runs in the main env (numpy 2) and in the Lava interpreter (Python 3.10, numpy<2): no torch,
and slamp_deploy is optional (a local ExportError stands in when it is not importable).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

try:  # the Lava interpreter does not have slamp_deploy installed
    from slamp_deploy.errors import ExportError
except ImportError:  # pragma: no cover - exercised in the Lava interpreter only

    class ExportError(Exception):  # type: ignore[no-redef]
        """Stand-in for slamp_deploy.errors.ExportError outside the main environment."""


__all__ = [
    "DEFAULT_DT",
    "NEURON_TYPES",
    "SYNAPSE_TYPES",
    "ExportError",
    "NeuronParams",
    "apply_node",
    "graph_dt",
    "neuron_params",
    "node_shape",
    "simulate",
    "topological_order",
]

DEFAULT_DT = 1e-4
NEURON_TYPES = ("LIF", "IF", "CubaLIF")
SYNAPSE_TYPES = ("Affine", "Linear", "Conv1d", "Conv2d")
_SHAPE_TYPES = ("Flatten", "AvgPool2d", "SumPool2d", "Scale")
_RESET_MECHANISMS = ("zero", "subtract", "none")


# --------------------------------------------------------------------------- graph walking


def _type_name(node: Any) -> str:
    return type(node).__name__


def kahn(names: list[str], preds: dict[str, list[str]], succs: dict[str, list[str]]
         ) -> list[str]:
    """Kahn's algorithm from every node without sources; ties broken by node and edge order so
    the result is deterministic. Nodes on or after a cycle are left out."""
    indeg = {n: len(preds[n]) for n in names}
    ready = [n for n in names if indeg[n] == 0]
    order: list[str] = []
    while ready:
        n = ready.pop(0)
        order.append(n)
        for m in succs[n]:
            indeg[m] -= 1
            if indeg[m] == 0:
                ready.append(m)
    return order


def topological_order(graph: Any) -> list[str]:
    """Node names from the Input node(s) to the Output node(s), each after all its sources.

    Raises ExportError naming the node for an unsupported node type, a nested graph, a cycle,
    an edge to an unknown node, or a node the input does not reach.
    """
    nodes = graph.nodes
    supported = (*NEURON_TYPES, *SYNAPSE_TYPES, *_SHAPE_TYPES, "Input", "Output")
    for name, node in nodes.items():
        tname = _type_name(node)
        if tname not in supported:
            raise ExportError(
                f"NIR node {name!r} has type {tname}, which slamp-deploy cannot simulate or "
                f"export; supported: {', '.join(supported)}"
            )
    preds: dict[str, list[str]] = {n: [] for n in nodes}
    succs: dict[str, list[str]] = {n: [] for n in nodes}
    for src, dst in graph.edges:
        for end in (src, dst):
            if end not in nodes:
                raise ExportError(f"NIR edge ({src!r}, {dst!r}) names {end!r}, which is no node")
        preds[dst].append(src)
        succs[src].append(dst)
    inputs = [n for n, node in nodes.items() if _type_name(node) == "Input"]
    if len(inputs) != 1:
        raise ExportError(f"NIR graph must have exactly one Input node, found {len(inputs)}")
    order = kahn(list(nodes), preds, succs)
    if len(order) != len(nodes):
        stuck = sorted(n for n in nodes if n not in order)
        raise ExportError(
            f"NIR graph has a cycle through {', '.join(map(repr, stuck))}: recurrent graphs "
            "are not supported by this simulator/exporter"
        )
    orphans = [n for n in order if not preds[n] and n != inputs[0]]
    if orphans:
        raise ExportError(
            f"NIR node {orphans[0]!r} has no incoming edge: connect it to the input or remove it"
        )
    return order


def graph_dt(graph: Any) -> float:
    """The simulation step: graph metadata ``slamp.dt``, else 1e-4 (snnTorch's convention)."""
    meta = getattr(graph, "metadata", None) or {}
    return float(meta.get("slamp.dt", DEFAULT_DT))


def node_shape(node: Any, port: str = "output") -> tuple[int, ...]:
    """Per-sample shape of a node's input or output, from its (inferred) NIR type."""
    types = node.output_type if port == "output" else node.input_type
    arr = types.get(port) if isinstance(types, dict) else None
    if arr is None:
        raise ExportError(
            f"NIR node of type {_type_name(node)} has no {port} type: call graph.infer_types()"
        )
    return tuple(int(v) for v in np.asarray(arr).reshape(-1))


# --------------------------------------------------------------------------- neuron params


@dataclass(frozen=True)
class NeuronParams:
    """Discrete-time parameters of one neuron node, per neuron (arrays of the node's shape).

    kind: "LIF", "IF" or "CubaLIF". gain: input gain (LIF/IF) or the product that reaches the
    membrane (CubaLIF's g_syn is ``gain_syn``, its g_mem is ``gain``). ``unit_gain`` /
    ``unit_gain_syn`` tell that the gain is exactly 1 (snnTorch's convention) so no multiply
    is done. ``leak`` is the constant added to the membrane per step ((dt/tau)*v_leak).
    """

    kind: str
    beta: np.ndarray
    alpha: np.ndarray | None
    threshold: np.ndarray
    gain: np.ndarray
    gain_syn: np.ndarray | None
    unit_gain: bool
    unit_gain_syn: bool
    leak: np.ndarray
    v_reset: np.ndarray
    reset_mechanism: str
    reset_delay: bool


def _meta_str(meta: dict, key: str, default: str) -> str:
    val = meta.get(key, default)
    if isinstance(val, bytes):
        val = val.decode()
    return str(val)


def _meta_bool(meta: dict, key: str, default: bool) -> bool:
    val = meta.get(key, default)
    if isinstance(val, bytes):
        val = val.decode()
    if isinstance(val, str):
        return val.strip().lower() in ("1", "true", "yes")
    return bool(val)


def _unit(g: np.ndarray) -> bool:
    return bool(np.allclose(g, 1.0, rtol=1e-9, atol=0.0))


def neuron_params(name: str, node: Any, dt: float) -> NeuronParams:
    """Discrete-time parameters of neuron node ``name`` (LIF, IF or CubaLIF) at step ``dt``."""
    meta = getattr(node, "metadata", None) or {}
    mech = _meta_str(meta, "slamp.reset_mechanism", "zero")
    if mech not in _RESET_MECHANISMS:
        raise ExportError(
            f"NIR node {name!r}: metadata slamp.reset_mechanism={mech!r}; "
            f"use one of {', '.join(_RESET_MECHANISMS)}"
        )
    delay = _meta_bool(meta, "slamp.reset_delay", True)
    f64 = np.float64
    kind = _type_name(node)
    thr = np.asarray(node.v_threshold, dtype=f64)
    v_reset = np.asarray(
        node.v_reset if getattr(node, "v_reset", None) is not None else 0.0, dtype=f64
    )
    v_reset = np.broadcast_to(v_reset, thr.shape).copy()
    if kind == "IF":
        r = np.broadcast_to(np.asarray(node.r, dtype=f64), thr.shape).copy()
        return NeuronParams(
            kind, np.ones_like(thr), None, thr, r, None, _unit(r), True,
            np.zeros_like(thr), v_reset, mech, delay,
        )
    if kind == "LIF":
        tau = np.asarray(node.tau, dtype=f64)
        k = dt / tau
        beta = 1.0 - k
        gain = np.asarray(node.r, dtype=f64) * k
        leak = k * np.asarray(node.v_leak, dtype=f64)
        return NeuronParams(
            kind, beta, None, thr, gain, None, _unit(gain), True,
            np.broadcast_to(leak, thr.shape).copy(), v_reset, mech, delay,
        )
    if kind == "CubaLIF":
        k_syn = dt / np.asarray(node.tau_syn, dtype=f64)
        k_mem = dt / np.asarray(node.tau_mem, dtype=f64)
        g_syn = np.broadcast_to(np.asarray(node.w_in, dtype=f64) * k_syn, thr.shape).copy()
        g_mem = np.asarray(node.r, dtype=f64) * k_mem
        leak = k_mem * np.asarray(node.v_leak, dtype=f64)
        return NeuronParams(
            kind, 1.0 - k_mem, 1.0 - k_syn, thr, g_mem, g_syn, _unit(g_mem), _unit(g_syn),
            np.broadcast_to(leak, thr.shape).copy(), v_reset, mech, delay,
        )
    raise ExportError(f"NIR node {name!r} of type {kind} is not a neuron")


class _NeuronState:
    """One neuron node's state over a batch, stepping exactly as snnTorch 1.0.0 does."""

    def __init__(self, p: NeuronParams, batch: int, dtype: Any) -> None:
        self.p = p
        self.dt = dtype
        shape = (batch, *p.threshold.shape)
        self.mem = np.zeros(shape, dtype)
        self.syn = np.zeros(shape, dtype) if p.kind == "CubaLIF" else None
        c = lambda a: None if a is None else np.asarray(a, dtype)  # noqa: E731
        # snnTorch clamps beta/alpha to [0, 1]
        self.beta = c(np.clip(p.beta, 0.0, 1.0))
        self.alpha = c(None if p.alpha is None else np.clip(p.alpha, 0.0, 1.0))
        self.thr = c(p.threshold)
        self.gain = c(p.gain)
        self.gain_syn = c(p.gain_syn)
        self.leak = c(p.leak)
        self.has_leak = bool(np.any(p.leak != 0))
        self.v_reset = c(p.v_reset)
        self.has_v_reset = bool(np.any(p.v_reset != 0))
        self.one = dtype(1.0)

    def step(self, current: np.ndarray) -> np.ndarray:
        p = self.p
        reset = ((self.mem - self.thr) > 0).astype(self.dt)  # snnTorch's mem_reset
        if p.kind == "CubaLIF":
            syn_in = current if p.unit_gain_syn else self.gain_syn * current
            self.syn = self.alpha * self.syn + syn_in
            drive = self.syn if p.unit_gain else self.gain * self.syn
            mem = self.beta * self.mem + drive
            if self.has_leak:
                mem = mem + self.leak
            if p.reset_mechanism == "zero":
                mem = mem - mem * reset
                if self.has_v_reset:
                    mem = mem + reset * self.v_reset
            elif p.reset_mechanism == "subtract":
                mem = mem - reset * self.thr
        else:
            drive = current if p.unit_gain else self.gain * current
            prev = self.mem
            if p.reset_mechanism == "zero":
                prev = (self.one - reset) * prev
                if self.has_v_reset:
                    prev = prev + reset * self.v_reset
            mem = self.beta * prev + drive
            if self.has_leak:
                mem = mem + self.leak
            if p.reset_mechanism == "subtract":
                mem = mem - reset * self.thr
        spk = ((mem - self.thr) > 0).astype(self.dt)
        if not p.reset_delay and p.reset_mechanism != "none":
            do_reset = spk - reset
            if p.reset_mechanism == "subtract":
                mem = mem - do_reset * self.thr
            else:
                mem = mem - do_reset * mem
                if self.has_v_reset:
                    mem = mem + spk * self.v_reset
        self.mem = mem
        return spk


# --------------------------------------------------------------------------- synaptic ops


def _pair(v: Any, n: int) -> tuple[int, ...]:
    arr = np.asarray(v).reshape(-1)
    if arr.size == 1:
        return tuple(int(arr[0]) for _ in range(n))
    if arr.size != n:
        raise ExportError(f"expected {n} values, got {arr.tolist()}")
    return tuple(int(a) for a in arr)


def conv_padding(
    padding: Any, kernel: tuple[int, ...], dilation: tuple[int, ...], stride: tuple[int, ...]
) -> list[tuple[int, int]]:
    """(before, after) padding per spatial dim, resolving torch's "same"/"valid" strings."""
    if isinstance(padding, bytes):
        padding = padding.decode()
    if isinstance(padding, np.ndarray) and padding.dtype.kind in "SUO":
        padding = str(padding.reshape(-1)[0])
    if isinstance(padding, str):
        if padding == "valid":
            return [(0, 0)] * len(kernel)
        if padding == "same":
            if any(s != 1 for s in stride):
                raise ExportError("padding='same' needs stride 1 (as in torch)")
            out = []
            for k, d in zip(kernel, dilation, strict=True):
                total = d * (k - 1)
                out.append((total // 2, total - total // 2))
            return out
        raise ExportError(f"unknown padding {padding!r}; use an int, a tuple, 'same' or 'valid'")
    p = _pair(padding, len(kernel))
    return [(v, v) for v in p]


def _conv_nd(
    x: np.ndarray, w: np.ndarray, bias: np.ndarray | None, stride: tuple[int, ...],
    pads: list[tuple[int, int]], dilation: tuple[int, ...], groups: int,
) -> np.ndarray:
    """PyTorch-style cross-correlation. x [N, Cin, *S], w [Cout, Cin/groups, *K]."""
    nd = w.ndim - 2
    x = np.pad(x, [(0, 0), (0, 0), *pads])
    n, cin = x.shape[:2]
    cout = w.shape[0]
    ks = w.shape[2:]
    # windows over the dilated kernel extent, then keep every dilation-th tap and stride
    ext = tuple(d * (k - 1) + 1 for k, d in zip(ks, dilation, strict=True))
    win = np.lib.stride_tricks.sliding_window_view(x, ext, axis=tuple(range(2, 2 + nd)))
    sl = (slice(None), slice(None), *(slice(None, None, s) for s in stride))
    sl += tuple(slice(None, None, d) for d in dilation)
    win = win[sl]  # [N, Cin, *O, *K]
    out_sp = win.shape[2 : 2 + nd]
    cin_g, cout_g = cin // groups, cout // groups
    out = np.empty((n, cout, *out_sp), dtype=np.result_type(x, w))
    k_axes = tuple(range(2 + nd, 2 + 2 * nd))
    for g in range(groups):
        xg = win[:, g * cin_g : (g + 1) * cin_g]  # [N, cin_g, *O, *K]
        wg = w[g * cout_g : (g + 1) * cout_g]  # [cout_g, cin_g, *K]
        res = np.tensordot(xg, wg, axes=((1, *k_axes), (1, *range(2, 2 + nd))))
        out[:, g * cout_g : (g + 1) * cout_g] = np.moveaxis(res, -1, 1)
    if bias is not None:
        out += bias.reshape((1, cout) + (1,) * nd)
    return out


def _pool2d(x: np.ndarray, node: Any, average: bool) -> np.ndarray:
    k = _pair(node.kernel_size, 2)
    s = _pair(node.stride if node.stride is not None else node.kernel_size, 2)
    p = _pair(node.padding if node.padding is not None else 0, 2)
    x = np.pad(x, [(0, 0), (0, 0), (p[0], p[0]), (p[1], p[1])])
    win = np.lib.stride_tricks.sliding_window_view(x, k, axis=(2, 3))[:, :, :: s[0], :: s[1]]
    out = win.sum(axis=(-2, -1))
    if average:
        out = out / x.dtype.type(k[0] * k[1])  # count_include_pad=True, torch's default
    return out.astype(x.dtype, copy=False)


def apply_node(name: str, node: Any, x: np.ndarray) -> np.ndarray:
    """Apply a synaptic or shape node to a batch ``x`` [N, *in_shape] in x's dtype."""
    tname = _type_name(node)
    dt = x.dtype
    if tname in ("Affine", "Linear"):
        w = np.asarray(node.weight, dtype=dt)
        if w.ndim != 2:
            raise ExportError(f"NIR node {name!r}: {tname} weight must be 2-D, got {w.shape}")
        y = x.reshape(x.shape[0], -1) @ w.T
        if tname == "Affine":
            y = y + np.asarray(node.bias, dtype=dt)
        return y
    if tname in ("Conv1d", "Conv2d"):
        w = np.asarray(node.weight, dtype=dt)
        nd = w.ndim - 2
        stride = _pair(node.stride, nd)
        dilation = _pair(node.dilation, nd)
        pads = conv_padding(node.padding, tuple(w.shape[2:]), dilation, stride)
        bias = None if node.bias is None else np.asarray(node.bias, dtype=dt)
        if bias is not None and not np.any(bias):
            bias = None
        return _conv_nd(x, w, bias, stride, pads, dilation, int(node.groups))
    if tname == "Flatten":
        in_shape = x.shape[1:]
        nd = len(in_shape)
        start = node.start_dim % nd if nd else 0
        end = node.end_dim % nd if nd else 0
        new = (*in_shape[:start], int(np.prod(in_shape[start : end + 1])), *in_shape[end + 1 :])
        return x.reshape((x.shape[0], *new))
    if tname == "AvgPool2d":
        return _pool2d(x, node, average=True)
    if tname == "SumPool2d":
        return _pool2d(x, node, average=False)
    if tname == "Scale":
        return x * np.asarray(node.scale, dtype=dt)
    if tname in ("Input", "Output"):
        return x
    raise ExportError(f"NIR node {name!r} of type {tname} is not a synaptic or shape node")


# --------------------------------------------------------------------------- simulation


def simulate(graph: Any, x: np.ndarray, dtype: Any = np.float32) -> dict[str, np.ndarray]:
    """Run ``graph`` for ``T = x.shape[0]`` steps on ``x`` [T, N, *input_shape].

    Returns {node name: output [T, N, *shape]} for every node (spikes as 0/1 in ``dtype`` for
    neuron nodes; the Input and Output nodes included), plus ``"<node>.mem"`` (membrane after
    each step, as snnTorch returns it) and ``"<node>.syn"`` (CubaLIF synaptic current).
    """
    dtype = np.dtype(dtype).type
    order = topological_order(graph)
    dt = graph_dt(graph)
    x = np.asarray(x)
    in_name = next(n for n in order if _type_name(graph.nodes[n]) == "Input")
    try:
        in_shape = node_shape(graph.nodes[in_name], "output")
    except ExportError:
        in_shape = tuple(x.shape[2:])
    if x.ndim < 2 or tuple(x.shape[2:]) != in_shape:
        raise ExportError(
            f"input has shape {x.shape}; expected [T, N, {', '.join(map(str, in_shape))}]"
        )
    n_steps, batch = x.shape[:2]
    preds: dict[str, list[str]] = {n: [] for n in order}
    for src, dst in graph.edges:
        preds[dst].append(src)
    states = {
        n: _NeuronState(neuron_params(n, graph.nodes[n], dt), batch, dtype)
        for n in order
        if _type_name(graph.nodes[n]) in NEURON_TYPES
    }
    rec: dict[str, list[np.ndarray]] = {n: [] for n in order}
    for n, st in states.items():
        rec[f"{n}.mem"] = []
        if st.syn is not None:
            rec[f"{n}.syn"] = []
    for t in range(n_steps):
        out: dict[str, np.ndarray] = {}
        for n in order:
            node = graph.nodes[n]
            if n == in_name:
                val = np.asarray(x[t], dtype=dtype)
            else:
                srcs = preds[n]
                val = out[srcs[0]]
                for s in srcs[1:]:
                    val = val + out[s]
                if n in states:
                    st = states[n]
                    if val.shape[1:] != st.mem.shape[1:]:
                        raise ExportError(
                            f"NIR node {n!r} has neuron shape {st.mem.shape[1:]} but receives "
                            f"{val.shape[1:]}: give every parameter the full per-neuron shape"
                        )
                    val = st.step(val)
                    rec[f"{n}.mem"].append(st.mem)
                    if st.syn is not None:
                        rec[f"{n}.syn"].append(st.syn)
                else:
                    val = apply_node(n, node, val)
            out[n] = val
            rec[n].append(val)
    return {k: np.stack(v).astype(dtype, copy=False) for k, v in rec.items()}
