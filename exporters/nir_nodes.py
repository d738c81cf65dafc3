"""The NIR node table: one :class:`NodeKind` per NIR primitive slamp-deploy handles, keyed by the
NIR class name (the name on disk), with its role, numpy apply, ONNX emitter, bias strip (the
Lava stage builder composes bias-free maps) and, for neurons, the discrete-time parameters.
``nir_sim``, ``onnx_export`` and ``lava_stages`` consult :data:`NODES` instead of testing type
names, so a new node kind is one entry here (a neuron also needs its update in
``neuron_step``). numpy and nir duck typing only: it runs in the Lava interpreter.

The ONNX emitters take a builder with ``op(op_type, inputs, hint, out=None, **attrs)`` and
``const(hint, value, dtype=float32)`` (``onnx_export``'s), so this module never imports onnx.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

if __package__:
    from . import neuron_step
    from .nir_graph import ExportError
else:  # loaded by path in the Lava interpreter (lava_runner puts this folder on sys.path)
    import neuron_step  # type: ignore[no-redef]
    from nir_graph import ExportError  # type: ignore[no-redef]

NeuronParams = neuron_step.NeuronParams

__all__ = ["NODES", "NodeKind", "apply_node", "check_discrete", "conv_padding",
           "neuron_params", "pair", "type_name"]


def type_name(node: Any) -> str:
    """The NIR class name of ``node``, the key of :data:`NODES`."""
    return type(node).__name__


# --------------------------------------------------------------------------- shared geometry


def pair(v: Any, n: int) -> tuple[int, ...]:
    """``v`` (a scalar or ``n`` values) as ``n`` ints, as torch's ``_pair``/``_single`` do."""
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
    p = pair(padding, len(kernel))
    return [(v, v) for v in p]


def conv_geometry(node: Any, w: np.ndarray) -> tuple[tuple[int, ...], tuple[int, ...],
                                                      list[tuple[int, int]]]:
    nd = w.ndim - 2
    stride = pair(node.stride, nd)
    dilation = pair(node.dilation, nd)
    return stride, dilation, conv_padding(node.padding, tuple(w.shape[2:]), dilation, stride)


def pool_geometry(node: Any) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    k = pair(node.kernel_size, 2)
    s = pair(node.stride if node.stride is not None else node.kernel_size, 2)
    p = pair(node.padding if node.padding is not None else 0, 2)
    return k, s, p


def flat_shape(node: Any, in_shape: tuple[int, ...]) -> tuple[int, ...]:
    nd = len(in_shape)
    start = node.start_dim % nd if nd else 0
    end = node.end_dim % nd if nd else 0
    return (*in_shape[:start], int(np.prod(in_shape[start : end + 1])), *in_shape[end + 1 :])


# --------------------------------------------------------------------------- numpy apply


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
    k, s, p = pool_geometry(node)
    x = np.pad(x, [(0, 0), (0, 0), (p[0], p[0]), (p[1], p[1])])
    win = np.lib.stride_tricks.sliding_window_view(x, k, axis=(2, 3))[:, :, :: s[0], :: s[1]]
    out = win.sum(axis=(-2, -1))
    if average:
        out = out / x.dtype.type(k[0] * k[1])  # count_include_pad=True, torch's default
    return out.astype(x.dtype, copy=False)


def _apply_dense(name: str, node: Any, x: np.ndarray) -> np.ndarray:
    w = np.asarray(node.weight, dtype=x.dtype)
    if w.ndim != 2:
        raise ExportError(f"NIR node {name!r}: {type_name(node)} weight must be 2-D, got "
                          f"{w.shape}")
    y = x.reshape(x.shape[0], -1) @ w.T
    if type_name(node) == "Affine":
        y = y + np.asarray(node.bias, dtype=x.dtype)
    return y


def _apply_conv(name: str, node: Any, x: np.ndarray) -> np.ndarray:
    w = np.asarray(node.weight, dtype=x.dtype)
    stride, dilation, pads = conv_geometry(node, w)
    bias = None if node.bias is None else np.asarray(node.bias, dtype=x.dtype)
    if bias is not None and not np.any(bias):
        bias = None
    return _conv_nd(x, w, bias, stride, pads, dilation, int(node.groups))


def _apply_flatten(name: str, node: Any, x: np.ndarray) -> np.ndarray:
    return x.reshape((x.shape[0], *flat_shape(node, x.shape[1:])))


def _apply_avgpool(name: str, node: Any, x: np.ndarray) -> np.ndarray:
    return _pool2d(x, node, average=True)


def _apply_sumpool(name: str, node: Any, x: np.ndarray) -> np.ndarray:
    return _pool2d(x, node, average=False)


def _apply_scale(name: str, node: Any, x: np.ndarray) -> np.ndarray:
    return x * np.asarray(node.scale, dtype=x.dtype)


def _apply_threshold(name: str, node: Any, x: np.ndarray) -> np.ndarray:
    # NIR's Threshold z = H(x - theta), with the strict ">" the neurons use
    return ((x - np.asarray(node.threshold, dtype=x.dtype)) > 0).astype(x.dtype)


def _identity(name: str, node: Any, x: np.ndarray) -> np.ndarray:
    return x


# --------------------------------------------------------------------------- ONNX emitters


def _onnx_dense(b: Any, name: str, node: Any, cur: str, in_shape: tuple[int, ...]) -> str:
    w = np.asarray(node.weight, dtype=np.float32)
    flat = cur if len(in_shape) == 1 else b.op("Flatten", [cur], "flat", axis=1)
    ins = [flat, b.const(f"{name}_W", w)]
    if type_name(node) == "Affine":
        ins.append(b.const(f"{name}_b", np.asarray(node.bias, dtype=np.float32)))
    return b.op("Gemm", ins, name, transB=1)


def _onnx_conv(b: Any, name: str, node: Any, cur: str, in_shape: tuple[int, ...]) -> str:
    w = np.asarray(node.weight, dtype=np.float32)
    stride, dil, pads = conv_geometry(node, w)
    ins = [cur, b.const(f"{name}_W", w)]
    if node.bias is not None and np.any(node.bias):
        ins.append(b.const(f"{name}_b", np.asarray(node.bias, dtype=np.float32)))
    return b.op("Conv", ins, name, strides=list(stride), dilations=list(dil),
                group=int(node.groups), kernel_shape=list(w.shape[2:]),
                pads=[p[0] for p in pads] + [p[1] for p in pads])


def _onnx_pool(b: Any, name: str, node: Any, cur: str, in_shape: tuple[int, ...]) -> str:
    k, s, p = pool_geometry(node)
    out = b.op("AveragePool", [cur], name, kernel_shape=list(k), strides=list(s),
               pads=[p[0], p[1], p[0], p[1]], count_include_pad=1)
    if type_name(node) == "SumPool2d":
        out = b.op("Mul", [out, b.const("area", float(k[0] * k[1]))], "sum")
    return out


def _onnx_flatten(b: Any, name: str, node: Any, cur: str, in_shape: tuple[int, ...]) -> str:
    new = flat_shape(node, in_shape)
    return b.op("Reshape", [cur, b.const("shape", [0, *new], np.int64)], name)


def _onnx_scale(b: Any, name: str, node: Any, cur: str, in_shape: tuple[int, ...]) -> str:
    return b.op("Mul", [cur, b.const(f"{name}_s", np.asarray(node.scale, np.float32))], name)


def _onnx_threshold(b: Any, name: str, node: Any, cur: str, in_shape: tuple[int, ...]) -> str:
    thr = b.const(f"{name}_thr", np.asarray(node.threshold, np.float32))
    above = b.op("Greater", [b.op("Sub", [cur, thr], f"{name}_d"),
                             b.const(f"{name}_0", np.zeros((), np.float32))], f"{name}_gt")
    return b.op("Cast", [above], name, to=1)  # to float32, as _apply_threshold


# --------------------------------------------------------------------------- bias strip


def _strip_affine(node: Any) -> Any:
    import nir

    return nir.Linear(np.asarray(node.weight))


def _strip_conv(node: Any) -> Any:
    if node.bias is None:
        return node
    return dataclasses.replace(node, bias=np.zeros_like(np.asarray(node.bias)))


def _keep(node: Any) -> Any:
    return node


# --------------------------------------------------------------------------- neuron params


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


def _full(v: Any, shape: tuple[int, ...]) -> np.ndarray:
    return np.broadcast_to(np.asarray(v, dtype=np.float64), shape).copy()


def _if_params(node: Any, dt: float, thr: np.ndarray) -> dict[str, Any]:
    r = _full(node.r, thr.shape)
    return {"beta": np.ones_like(thr), "alpha": None, "gain": r, "gain_syn": None,
            "unit_gain": _unit(r), "unit_gain_syn": True, "leak": np.zeros_like(thr)}


def _lif_params(node: Any, dt: float, thr: np.ndarray) -> dict[str, Any]:
    k = dt / np.asarray(node.tau, dtype=np.float64)
    gain = np.asarray(node.r, dtype=np.float64) * k
    return {"beta": 1.0 - k, "alpha": None, "gain": gain, "gain_syn": None,
            "unit_gain": _unit(gain), "unit_gain_syn": True,
            "leak": _full(k * np.asarray(node.v_leak, dtype=np.float64), thr.shape)}


# LI is LIF's membrane equation without the threshold: the same discrete-time parameters.
_li_params = _lif_params


def _cuba_params(node: Any, dt: float, thr: np.ndarray) -> dict[str, Any]:
    k_syn = dt / np.asarray(node.tau_syn, dtype=np.float64)
    k_mem = dt / np.asarray(node.tau_mem, dtype=np.float64)
    g_syn = _full(np.asarray(node.w_in, dtype=np.float64) * k_syn, thr.shape)
    g_mem = np.asarray(node.r, dtype=np.float64) * k_mem
    return {"beta": 1.0 - k_mem, "alpha": 1.0 - k_syn, "gain": g_mem, "gain_syn": g_syn,
            "unit_gain": _unit(g_mem), "unit_gain_syn": _unit(g_syn),
            "leak": _full(k_mem * np.asarray(node.v_leak, dtype=np.float64), thr.shape)}


# --------------------------------------------------------------------------- the table


Apply = Callable[[str, Any, np.ndarray], np.ndarray]
Emit = Callable[[Any, str, Any, str, tuple[int, ...]], str]
Params = Callable[[Any, float, np.ndarray], dict[str, Any]]


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeKind:
    """One NIR primitive: ``role`` is "neuron", "synaptic", "shape" or "io" (Input/Output).

    Non-neurons have ``apply`` (numpy, on a batch [N, *in_shape]) and, unless io, ``onnx``;
    ``strip_bias`` returns the node without its bias (Lava composes the bias separately).
    Neurons have ``params`` (the kind-specific NeuronParams fields from the node at step dt).
    """

    role: str
    apply: Apply | None = None
    onnx: Emit | None = None
    strip_bias: Callable[[Any], Any] = _keep
    params: Params | None = None


# order: the "supported" list of error messages reads from it
NODES: dict[str, NodeKind] = {
    "LIF": NodeKind(role="neuron", params=_lif_params),
    "IF": NodeKind(role="neuron", params=_if_params),
    "CubaLIF": NodeKind(role="neuron", params=_cuba_params),
    "LI": NodeKind(role="neuron", params=_li_params),
    "Affine": NodeKind(role="synaptic", apply=_apply_dense, onnx=_onnx_dense,
                       strip_bias=_strip_affine),
    "Linear": NodeKind(role="synaptic", apply=_apply_dense, onnx=_onnx_dense),
    "Conv1d": NodeKind(role="synaptic", apply=_apply_conv, onnx=_onnx_conv,
                       strip_bias=_strip_conv),
    "Conv2d": NodeKind(role="synaptic", apply=_apply_conv, onnx=_onnx_conv,
                       strip_bias=_strip_conv),
    "Flatten": NodeKind(role="shape", apply=_apply_flatten, onnx=_onnx_flatten),
    "AvgPool2d": NodeKind(role="shape", apply=_apply_avgpool, onnx=_onnx_pool),
    "SumPool2d": NodeKind(role="shape", apply=_apply_sumpool, onnx=_onnx_pool),
    "Scale": NodeKind(role="shape", apply=_apply_scale, onnx=_onnx_scale),
    "Threshold": NodeKind(role="shape", apply=_apply_threshold, onnx=_onnx_threshold),
    "Input": NodeKind(role="io", apply=_identity),
    "Output": NodeKind(role="io", apply=_identity),
}


def kind_of(node: Any) -> NodeKind | None:
    """The table entry of ``node``, or None for a type slamp-deploy does not handle."""
    return NODES.get(type_name(node))


def is_neuron(node: Any) -> bool:
    k = kind_of(node)
    return k is not None and k.role == "neuron"


def apply_node(name: str, node: Any, x: np.ndarray) -> np.ndarray:
    """Apply a synaptic or shape node to a batch ``x`` [N, *in_shape] in x's dtype."""
    k = kind_of(node)
    if k is None or k.apply is None:
        raise ExportError(f"NIR node {name!r} of type {type_name(node)} is not a synaptic or "
                          "shape node")
    return k.apply(name, node, x)


def _threshold_of(node: Any) -> np.ndarray:
    if type_name(node) == "LI":  # no threshold: the output is the membrane (nir_sim)
        return np.full(np.asarray(node.tau).shape, np.inf)
    return np.asarray(node.v_threshold, dtype=np.float64)


def neuron_params(name: str, node: Any, dt: float) -> NeuronParams:
    """Discrete-time parameters of neuron node ``name`` at step ``dt``.

    The reset is NIR's (to ``v_reset`` right after the spike: mechanism "zero", no delay)
    unless the node's metadata says otherwise (``slamp.reset_mechanism``,
    ``slamp.reset_delay``, as slamp-deploy writes them from snnTorch); an ``LI`` never resets.
    """
    k = kind_of(node)
    if k is None or k.params is None:
        raise ExportError(f"NIR node {name!r} of type {type_name(node)} is not a neuron")
    meta = getattr(node, "metadata", None) or {}
    mech = _meta_str(meta, "slamp.reset_mechanism", "zero")
    if mech not in neuron_step.RESET_MECHANISMS:
        raise ExportError(
            f"NIR node {name!r}: metadata slamp.reset_mechanism={mech!r}; "
            f"use one of {', '.join(neuron_step.RESET_MECHANISMS)}"
        )
    delay = meta.get("slamp.reset_delay", False)
    if isinstance(delay, bytes):
        delay = delay.decode()
    if str(delay).strip().lower() not in ("0", "1", "true", "false", "yes", "no"):
        raise ExportError(f"NIR node {name!r}: metadata slamp.reset_delay={delay!r}; use "
                          f"true or false")
    thr = _threshold_of(node)
    if type_name(node) == "LI":
        mech = "none"
    v_reset = _full(node.v_reset if getattr(node, "v_reset", None) is not None else 0.0,
                    thr.shape)
    return NeuronParams(kind=type_name(node), threshold=thr, v_reset=v_reset,
                        reset_mechanism=mech,
                        reset_delay=_meta_bool(meta, "slamp.reset_delay", False),
                        **k.params(node, dt, thr))


def _time_constants(node: Any) -> dict[str, np.ndarray]:
    kind = type_name(node)
    if kind in ("LIF", "LI"):
        return {"tau": np.asarray(node.tau, dtype=np.float64)}
    if kind == "CubaLIF":
        return {"tau_syn": np.asarray(node.tau_syn, dtype=np.float64),
                "tau_mem": np.asarray(node.tau_mem, dtype=np.float64)}
    return {}


def check_discrete(name: str, node: Any, dt: float) -> list[str]:
    """Refuse a neuron whose NIR equations have no forward-Euler form at step ``dt``; return
    warnings for those that have one with a consequence the user should know.

    Raises ExportError naming the node for NaN/inf parameters, a time constant below dt
    (the decay 1 - dt/tau would be negative), an infinite time constant on a leaky neuron
    (dt/tau = 0: no input reaches it), or a negative/zero resistance or input weight.
    """
    out: list[str] = []
    for key in ("tau", "tau_syn", "tau_mem", "r", "w_in", "v_threshold", "v_leak", "v_reset"):
        v = getattr(node, key, None)
        if v is not None and not np.all(np.isfinite(np.asarray(v, dtype=np.float64))):
            raise ExportError(f"NIR node {name!r}: {key} has NaN or infinite values")
    for key, tau in _time_constants(node).items():
        if np.any(tau < dt):
            raise ExportError(
                f"NIR node {name!r}: {key} min {tau.min():.3g} s is below dt = {dt:g} s, so "
                f"1 - dt/{key} < 0 (no discrete-time neuron); give the producer's dt with "
                f"--nir-dt (norse 1.1.0's to_nir writes dt*tau: read it at --nir-dt 1 only if "
                f"it was exported with dt=1)")
        if np.any(tau == dt):
            out.append(f"NIR node {name!r}: {key} equals dt = {dt:g} s for "
                       f"{int(np.sum(tau == dt))} neuron(s): 1 - dt/{key} = 0, the state "
                       f"forgets everything each step")
    for key in ("r", "w_in"):
        v = getattr(node, key, None)
        if v is not None and np.any(np.asarray(v, dtype=np.float64) <= 0):
            raise ExportError(f"NIR node {name!r}: {key} has values <= 0; a non-positive input "
                              f"resistance or weight inverts or cuts the input, which "
                              f"slamp-deploy does not read")
    thr = getattr(node, "v_threshold", None)
    if thr is not None and np.any(np.asarray(thr, dtype=np.float64) <= 0):
        out.append(f"NIR node {name!r}: v_threshold <= 0 for some neurons, which then spike "
                   f"at rest")
    return out
