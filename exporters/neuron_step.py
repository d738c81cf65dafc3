"""The snnTorch 1.0.0 neuron update (LIF, IF, CubaLIF; zero/subtract/none reset, reset delay,
per-neuron parameters), written once over an ops backend: :class:`NumpyOps` computes it on
arrays (the NIR simulator) and ``onnx_export``'s adapter emits the same operations as ONNX nodes,
so both follow one order of IEEE operations and agree bit for bit. Holds :class:`NeuronParams`,
the one discrete-time parameter type. numpy only (it runs in the Lava interpreter).

Semantics (the docstring of ``nir_sim`` has the equations): the reset flag is recomputed from the
previous membrane (mem > threshold) as snnTorch does; LIF/IF zero reset scales the previous
membrane by (1 - reset), CubaLIF's zero reset zeroes the new one (snnTorch's Synaptic);
``reset_delay=False`` resets right after the spike. A gain of exactly 1 is not multiplied, so a
float32 run is bitwise snnTorch's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

__all__ = ["RESET_MECHANISMS", "NeuronParams", "NeuronState", "NumpyOps", "Ops", "step"]

RESET_MECHANISMS = ("zero", "subtract", "none")


@dataclass(frozen=True, slots=True, kw_only=True)
class NeuronParams:
    """Discrete-time parameters of one neuron node, per neuron (arrays of the node's shape).

    kind: the NIR class name ("LIF", "IF", "CubaLIF", "LI": no threshold, no reset, its output
    is the membrane). gain: input gain (LIF/IF) or the product
    that reaches the membrane (CubaLIF's g_syn is ``gain_syn``, its g_mem is ``gain``); a node
    with a synaptic current state has ``alpha`` (and ``gain_syn``). ``unit_gain`` /
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

    @property
    def has_syn(self) -> bool:
        """True for a current-based neuron (a synaptic current state ``syn``)."""
        return self.alpha is not None

    @property
    def has_leak(self) -> bool:
        return bool(np.any(self.leak != 0))

    @property
    def has_v_reset(self) -> bool:
        return bool(np.any(self.v_reset != 0))

    def value(self, key: str) -> np.ndarray:
        """The per-neuron constant ``key`` as the update uses it (decays clamped to [0, 1], as
        snnTorch clamps beta and alpha)."""
        if key in ("beta", "alpha"):
            return np.clip(getattr(self, key), 0.0, 1.0)
        return getattr(self, key)


class Ops(Protocol):
    """What the update needs from a backend; ``hint`` and ``out`` name ONNX values only."""

    def param(self, key: str, hint: str) -> Any: ...
    def one(self) -> Any: ...
    def add(self, a: Any, b: Any, hint: str, out: str | None = None) -> Any: ...
    def sub(self, a: Any, b: Any, hint: str) -> Any: ...
    def mul(self, a: Any, b: Any, hint: str) -> Any: ...
    def above(self, v: Any, thr: Any) -> Any: ...


class NumpyOps:
    """The update on numpy arrays of ``dtype`` (parameters cast once)."""

    def __init__(self, p: NeuronParams, dtype: Any) -> None:
        self.p = p
        self.dtype = dtype
        self._cache: dict[str, np.ndarray] = {}

    def param(self, key: str, hint: str) -> np.ndarray:
        if key not in self._cache:
            self._cache[key] = np.asarray(self.p.value(key), self.dtype)
        return self._cache[key]

    def one(self) -> Any:
        return self.dtype(1.0)

    def add(self, a: Any, b: Any, hint: str, out: str | None = None) -> Any:
        return a + b

    def sub(self, a: Any, b: Any, hint: str) -> Any:
        return a - b

    def mul(self, a: Any, b: Any, hint: str) -> Any:
        return a * b

    def above(self, v: Any, thr: Any) -> Any:
        return ((v - thr) > 0).astype(self.dtype)  # snnTorch's heaviside on mem - threshold


def _current_based(p: NeuronParams, mem: Any, syn: Any, current: Any, reset: Any, vr: Any,
                   ops: Ops) -> tuple[Any, Any]:
    alpha = ops.param("alpha", "alpha")
    beta = ops.param("beta", "beta")
    syn_in = current if p.unit_gain_syn else ops.mul(ops.param("gain_syn", "gsyn"), current,
                                                     "gin")
    syn = ops.add(ops.mul(alpha, syn, "asyn"), syn_in, "syn", out="syn")
    drive = syn if p.unit_gain else ops.mul(ops.param("gain", "gmem"), syn, "gmem")
    m = ops.add(ops.mul(beta, mem, "bmem"), drive, "m")
    if p.has_leak:
        m = ops.add(m, ops.param("leak", "leak"), "leak")
    if p.reset_mechanism == "zero":  # snnTorch's Synaptic zeroes the NEW membrane
        m = ops.sub(m, ops.mul(m, reset, "mr"), "zr")
        if vr is not None:
            m = ops.add(m, ops.mul(reset, vr, "rv"), "vr")
    elif p.reset_mechanism == "subtract":
        m = ops.sub(m, ops.mul(reset, ops.param("threshold", "thr"), "rt"), "sr")
    return m, syn


def _membrane(p: NeuronParams, mem: Any, current: Any, reset: Any, vr: Any, ops: Ops) -> Any:
    beta = ops.param("beta", "beta")
    drive = current if p.unit_gain else ops.mul(ops.param("gain", "g"), current, "g")
    prev = mem
    if p.reset_mechanism == "zero":
        prev = ops.mul(ops.sub(ops.one(), reset, "1mr"), prev, "zr")
        if vr is not None:
            prev = ops.add(prev, ops.mul(reset, vr, "rv"), "vr")
    m = ops.add(ops.mul(beta, prev, "bmem"), drive, "m")
    if p.has_leak:
        m = ops.add(m, ops.param("leak", "leak"), "leak")
    if p.reset_mechanism == "subtract":
        m = ops.sub(m, ops.mul(reset, ops.param("threshold", "thr"), "rt"), "sr")
    return m


def step(p: NeuronParams, mem: Any, syn: Any, current: Any, ops: Ops) -> tuple[Any, Any, Any]:
    """One time step: (spikes, next membrane, next synaptic current or None).

    The order of operations is snnTorch's; ``onnx_export`` relies on it to emit its nodes in
    the same order, so change both backends' results only together with the goldens.
    """
    thr = ops.param("threshold", "thr")
    reset = ops.above(mem, thr)  # snnTorch's mem_reset on the previous membrane
    vr = ops.param("v_reset", "vreset") if p.has_v_reset else None
    if p.has_syn:
        m, syn = _current_based(p, mem, syn, current, reset, vr, ops)
    else:
        m = _membrane(p, mem, current, reset, vr, ops)
    spk = ops.above(m, thr)
    if not p.reset_delay and p.reset_mechanism != "none":
        do_reset = ops.sub(spk, reset, "dr")
        if p.reset_mechanism == "subtract":
            m = ops.sub(m, ops.mul(do_reset, thr, "drt"), "sr2")
        else:
            m = ops.sub(m, ops.mul(do_reset, m, "drm"), "zr2")
            if vr is not None:
                m = ops.add(m, ops.mul(spk, vr, "sv"), "vr2")
    return spk, m, syn


class NeuronState:
    """One neuron node's state over a batch of ``batch`` samples, stepped with :func:`step`."""

    def __init__(self, p: NeuronParams, batch: int, dtype: Any) -> None:
        self.p = p
        self.ops = NumpyOps(p, dtype)
        shape = (batch, *p.threshold.shape)
        self.mem = np.zeros(shape, dtype)
        self.syn = np.zeros(shape, dtype) if p.has_syn else None

    def step(self, current: np.ndarray) -> np.ndarray:
        spk, self.mem, self.syn = step(self.p, self.mem, self.syn, current, self.ops)
        # NIR's LI has no spikes: its output is the membrane (a readout)
        return self.mem if self.p.kind == "LI" else spk
