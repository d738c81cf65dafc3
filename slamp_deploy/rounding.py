"""Rounding-aware comparison of an export's spikes with the pruned model: rounding or error.

An export computes the same network in a different order of operations (numpy's or
onnxruntime's convolution, BatchNorm folded into the weights, float32 or float64), so a neuron
whose membrane sits within rounding distance of its threshold may spike on one side and not on
the other, and every such flip cascades through the layers after it. :func:`forced_reference`
tells that from a real export error. It runs the pruned torch model in float64 on CPU, one step
at a time, and carries beside every value a rigorous bound on how far an implementation working
in the export's precision can be from it (first-order floating-point error analysis: a sum of K
products is within ``gamma(K) * sum |terms|`` of exact, ``gamma(n) = n u / (1 - n u)``, u the unit
roundoff; bounds add through pooling, residual adds and the membrane recursion). At every
neuron and step where the export's spike differs, the flip is *explained* when the reference
membrane is within that bound of the threshold, and *unexplained* otherwise; then the reference
takes the export's side (its membrane is set to the threshold, or just above it), so the layers
after compare like with like and a cascade is never counted as an error, nor does it hide one:
a wrong bias or a transposed kernel in any layer shows as unexplained flips in that layer.
The verdicts: "identical", "identical up to N rounding flips (explained)", or "DIFFER" with the
first unexplained layer, sample and step.

:func:`classify` gives the same verdicts for several exports of one batch (NIR in float64 and
float32, ONNX, Lava) at the cost of about one such run: the reference runs once unforced, every
export's spikes are compared with it as it goes (and a membrane check made where asked), and the
forced run is repeated only on the samples where an export's spikes differ. Samples are
independent, so on a sample without a flip the forced run is the unforced one.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from torch import nn

from slamp_deploy.model.graph import (
    ADD,
    INPUT,
    NEURON_KINDS,
    SYNAPTIC_KINDS,
    SpikingGraph,
    reset_state,
)

#: unit roundoff of the export's arithmetic
UNIT_ROUNDOFF = {"float32": 2.0 ** -24, "float64": 2.0 ** -53}
#: the exported files (NIR, ONNX) store parameters in float32, folded (BatchNorm into the
#: weights, beta as tau = dt / (1 - beta)): each stored parameter is within this relative
#: distance of the model's, whatever the arithmetic's precision
PARAM_U = 2.0 ** -24


def gamma(n: int, u: float) -> float:
    """Higham's gamma_n = n u / (1 - n u): the relative bound of n rounded operations."""
    return n * u / (1.0 - n * u)


@dataclass(frozen=True, slots=True, kw_only=True)
class Flip:
    """One spike that differs: where, and how far the reference membrane was from threshold."""

    layer: str
    sample: int
    step: int
    margin: float  # |reference membrane - threshold|
    bound: float  # the rounding bound at that neuron and step


@dataclass(frozen=True, slots=True, kw_only=True)
class RoundingVerdict:
    """One export at one precision against the float64 reference."""

    precision: str  # the export's arithmetic: "float32" or "float64"
    explained: int  # flips within rounding distance of the threshold
    unexplained: int
    first_unexplained: Flip | None = None

    @property
    def verdict(self) -> str:
        if self.unexplained:
            return "differ"
        return "identical" if self.explained == 0 else "explained"

    def text(self) -> str:
        if self.unexplained:
            f = self.first_unexplained
            assert f is not None
            return (f"DIFFER in {self.precision}: {self.unexplained} unexplained spike flips, "
                    f"the first in layer '{f.layer}', sample {f.sample}, step {f.step} (membrane "
                    f"{f.margin:.3g} from threshold, rounding bound {f.bound:.3g})")
        if self.explained:
            return (f"identical in {self.precision} up to {self.explained} rounding flips "
                    f"(explained)")
        return f"identical in {self.precision}"

    def to_dict(self) -> dict[str, Any]:
        f = self.first_unexplained
        return {"precision": self.precision, "verdict": self.verdict,
                "explained_flips": self.explained, "unexplained_flips": self.unexplained,
                "first_unexplained": None if f is None else {
                    "layer": f.layer, "sample": f.sample, "step": f.step,
                    "margin": f.margin, "bound": f.bound}}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RoundingVerdict:
        f = d["first_unexplained"]
        return cls(precision=d["precision"], explained=d["explained_flips"],
                   unexplained=d["unexplained_flips"],
                   first_unexplained=None if f is None else Flip(**f))


@dataclass(frozen=True, slots=True, kw_only=True)
class StateCheck:
    """Membranes of the export against the forced reference, scaled by each one's bound."""

    max_abs_error: float
    max_bound_ratio: float  # max |export - reference| / (2 * bound); <= 1 is within rounding

    @property
    def within(self) -> bool:
        return self.max_bound_ratio <= 1.0


@dataclass(frozen=True, slots=True, kw_only=True)
class ForcedReference:
    """The verdict, and the membrane check when the export gave its membranes."""

    verdict: RoundingVerdict
    states: StateCheck | None = None


@dataclass(slots=True)
class _Val:
    """A value and its companions: ``mag`` bounds the sum of |terms| that made it, ``err`` the
    distance of an implementation at unit roundoff u from it."""

    v: torch.Tensor
    mag: torch.Tensor
    err: torch.Tensor


@dataclass(slots=True)
class _Neuron:
    mag: torch.Tensor | None = None
    err: torch.Tensor | None = None
    syn_mag: torch.Tensor | None = None
    syn_err: torch.Tensor | None = None
    prev: torch.Tensor | None = None  # the previous (forced) spikes


@dataclass(frozen=True, slots=True, kw_only=True)
class Request:
    """One export's spikes to classify: neuron op name -> [T, n, *shape] on the first ``n``
    samples of the batch, the export's arithmetic, and its membranes (``name.mem``, same
    layout) when the state check applies."""

    exported: Mapping[str, np.ndarray]
    precision: str
    mems: Mapping[str, np.ndarray] | None = None


@dataclass(slots=True)
class _Watch:
    """One request during the shared unforced run: which of its samples differ anywhere, and
    each sample's largest membrane error (absolute, and over twice its bound)."""

    req: Request
    n: int
    shared_states: bool  # the shared run's bounds are at this request's precision
    flipped: np.ndarray
    max_abs: np.ndarray
    max_ratio: np.ndarray


@dataclass(slots=True)
class _Tally:
    u: float
    exported: Mapping[str, np.ndarray]
    mems: Mapping[str, np.ndarray] | None
    explained: int = 0
    unexplained: int = 0
    first: tuple[int, int, int, Flip] | None = None
    max_abs: float = 0.0
    max_ratio: float = 0.0
    neurons: dict[int, _Neuron] = field(default_factory=dict)
    abs_weights: dict[int, torch.Tensor] = field(default_factory=dict)  # |W| per op, all steps
    watches: list[_Watch] | None = None  # the shared run: compare each request, force none


def forced_reference(graph: SpikingGraph, x: np.ndarray, exported: Mapping[str, np.ndarray],
                     precision: str, *, mems: Mapping[str, np.ndarray] | None = None
                     ) -> ForcedReference:
    """Classify every spike of ``exported`` (neuron op name -> [T, N, *shape]) that differs from
    the pruned model on ``x`` [T, N, *input_shape], for an export computing in ``precision``.

    ``mems`` (name -> the export's membranes, same layout) adds the state check: each membrane
    within twice its rounding bound of the forced reference's (the reference moved by at most
    one bound at a forced flip, the export is within one of exact).
    """
    tally = _Tally(u=UNIT_ROUNDOFF[precision], exported=exported, mems=mems)
    _sweep(graph, x, tally)
    first = tally.first[3] if tally.first is not None else None
    verdict = RoundingVerdict(precision=precision, explained=tally.explained,
                              unexplained=tally.unexplained, first_unexplained=first)
    states = (StateCheck(max_abs_error=tally.max_abs, max_bound_ratio=tally.max_ratio)
              if mems is not None else None)
    return ForcedReference(verdict=verdict, states=states)


def _sweep(graph: SpikingGraph, x: np.ndarray, tally: _Tally) -> None:
    """The reference (a float64 CPU copy of the model) over every step of ``x``."""
    g = copy.deepcopy(graph)
    g.model.double().cpu().eval()
    neuron_idx = {i: k for k, i in enumerate(
        i for i, op in enumerate(g.ops) if op.kind in NEURON_KINDS)}
    xs = torch.from_numpy(np.asarray(x)).double()
    reset_state(g.model)
    with torch.no_grad():
        for t in range(xs.shape[0]):
            _forced_step(g, xs[t], t, tally, neuron_idx)


def classify(graph: SpikingGraph, x: np.ndarray, requests: Sequence[Request]
             ) -> tuple[ForcedReference, ...]:
    """What :func:`forced_reference` gives for each request on ``x`` [T, N, *input_shape],
    from one shared unforced run plus forced runs on the samples where a request differs.

    The shared run's bounds are at the precision of the first request that asks for the state
    check (float32 when none does); a state check at another precision is made by a forced run
    on all of that request's samples.
    """
    if not requests:
        return ()
    mem_precisions = [r.precision for r in requests if r.mems is not None]
    precision = mem_precisions[0] if mem_precisions else "float32"
    watches = []
    for r in requests:
        n = int(np.asarray(next(iter(r.exported.values()))).shape[1]) if r.exported else 0
        shared = r.mems is None or r.precision == precision
        watches.append(_Watch(req=r, n=n, shared_states=shared,
                              flipped=np.full(n, not shared), max_abs=np.zeros(n),
                              max_ratio=np.zeros(n)))
    tally = _Tally(u=UNIT_ROUNDOFF[precision], exported={}, mems=None, watches=watches)
    _sweep(graph, x, tally)
    return tuple(_finish(graph, x, w) for w in watches)


def _finish(graph: SpikingGraph, x: np.ndarray, w: _Watch) -> ForcedReference:
    """One request's verdict: the forced run on its differing samples, the shared run's
    membrane check on the others."""
    r, idx = w.req, np.flatnonzero(w.flipped)
    keep = ~w.flipped
    max_abs = float(w.max_abs[keep].max()) if keep.any() else 0.0
    max_ratio = float(w.max_ratio[keep].max()) if keep.any() else 0.0
    verdict = RoundingVerdict(precision=r.precision, explained=0, unexplained=0)
    if idx.size:
        sub = forced_reference(
            graph, np.asarray(x)[:, idx], {k: np.asarray(v)[:, idx] for k, v in
                                           r.exported.items()}, r.precision,
            mems=None if r.mems is None else {k: np.asarray(v)[:, idx]
                                              for k, v in r.mems.items()})
        f = sub.verdict.first_unexplained
        verdict = replace(sub.verdict, first_unexplained=None if f is None else replace(
            f, sample=int(idx[f.sample])))  # back to the batch's sample numbers
        if sub.states is not None:
            max_abs = max(max_abs, sub.states.max_abs_error)
            max_ratio = max(max_ratio, sub.states.max_bound_ratio)
    states = (StateCheck(max_abs_error=max_abs, max_bound_ratio=max_ratio)
              if r.mems is not None else None)
    return ForcedReference(verdict=verdict, states=states)


def _forced_step(g: SpikingGraph, x: torch.Tensor, t: int, tally: _Tally,
                 neuron_idx: dict[int, int]) -> None:
    """One time step through every op, with the companions, forcing each neuron's flips."""
    zero = torch.zeros_like(x)
    inp = _Val(x, x.abs(), zero)
    vals: list[_Val] = []
    for i, op in enumerate(g.ops):
        srcs = g.sources(i)
        a = inp if srcs[0] == INPUT else vals[srcs[0]]
        if op.kind == "reshape":
            shape = (a.v.shape[0], *op.out_shape)
            out = _Val(a.v.reshape(shape), a.mag.reshape(shape), a.err.reshape(shape))
        elif op.kind == ADD:
            b = inp if srcs[1] == INPUT else vals[srcs[1]]
            mag = a.mag + b.mag
            out = _Val(a.v + b.v, mag, a.err + b.err + tally.u * mag)
        elif op.kind in NEURON_KINDS:
            out = _neuron(op, i, a, t, tally, neuron_idx[i])
        elif op.kind in SYNAPTIC_KINDS:
            if i not in tally.abs_weights:
                tally.abs_weights[i] = op.module.weight.abs()  # type: ignore[union-attr]
            out = _synapse(op.module, a, tally.u, tally.abs_weights[i])
        elif op.kind == "batchnorm":
            out = _batchnorm(op.module, a, tally.u)
        else:  # pooling, flatten, dropout (eval): the module on the companions too
            m = op.module
            assert m is not None
            mag = m(a.mag)
            extra = gamma(_pool_terms(m) + 2, tally.u) * mag if op.kind == "avgpool" else 0.0
            out = _Val(m(a.v), mag, m(a.err) + extra)
        vals.append(out)


def _pool_terms(m: nn.Module) -> int:
    """How many inputs one average-pooling output sums."""
    k = m.kernel_size  # type: ignore[union-attr]
    if isinstance(k, (tuple, list)):
        return int(np.prod(k))
    return int(k) ** (1 if isinstance(m, nn.AvgPool1d) else 2)


def _synapse(m: nn.Module | None, a: _Val, u: float, aw: torch.Tensor) -> _Val:
    """Linear / Conv: the product, its |W| |x| magnitude and the propagated plus new error
    (``aw`` is |W|, made once per run)."""
    assert m is not None
    w = m.weight  # type: ignore[union-attr]
    bias = getattr(m, "bias", None)
    terms = int(w[0].numel()) + 4  # fan-in products, the bias, and BatchNorm folded in

    def apply(x: torch.Tensor, weight: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
        if isinstance(m, nn.Linear):
            return nn.functional.linear(x, weight, b)
        return m._conv_forward(x, weight, b)  # type: ignore[union-attr,operator]

    mag = apply(a.mag, aw, None if bias is None else bias.abs())
    err = (gamma(terms, u) + PARAM_U) * mag
    if bool(a.err.any()):
        err = err + apply(a.err, aw, None)
    return _Val(apply(a.v, w, bias), mag, err)


def _batchnorm(m: nn.Module | None, a: _Val, u: float) -> _Val:
    """Eval-mode BatchNorm y = s x + c, s = gamma / sqrt(var + eps), c = beta - mean s (what
    an export folds into the synapse before it)."""
    assert isinstance(m, nn.modules.batchnorm._BatchNorm)
    assert m.running_var is not None and m.running_mean is not None
    s = 1.0 / torch.sqrt(m.running_var + m.eps)
    if m.weight is not None:
        s = s * m.weight
    c = -m.running_mean * s + (m.bias if m.bias is not None else 0.0)
    shape = (1, -1) + (1,) * (a.v.dim() - 2)
    s, c, mean = s.view(shape), c.view(shape), m.running_mean.view(shape)
    mag = s.abs() * a.mag + c.abs() + (mean * s).abs()
    return _Val(m(a.v), mag, s.abs() * a.err + (gamma(8, u) + 2 * PARAM_U) * mag)


def _neuron(op: Any, i: int, a: _Val, t: int, tally: _Tally, k: int) -> _Val:
    """The neuron's step, its membrane bound, and the export's spikes forced onto it."""
    m = op.module
    st = tally.neurons.setdefault(i, _Neuron())
    delay = bool(m.reset_delay)
    m.reset_delay = True  # the pre-reset membrane is what decides the spike
    try:
        out = m(a.v)
    finally:
        m.reset_delay = delay
    spk = (out[0] if isinstance(out, tuple) else out).to(m.mem.dtype)  # snnTorch's are float32
    thr = m.threshold
    mem_mag, mem_err = _membrane_bound(m, op.kind, a, st, tally.u)
    if tally.watches is None:  # force the export's spikes onto the reference
        exp = torch.from_numpy(np.asarray(tally.exported[op.name][t])).double()
        exp = exp.reshape(spk.shape)
        diff = spk != exp
        if bool(diff.any()):
            _count(op.name, k, t, (m.mem - thr).abs(), mem_err, diff, tally)
            above = torch.nextafter(thr.expand_as(m.mem), torch.full_like(m.mem, np.inf))
            m.mem = torch.where(diff, torch.where(exp > 0, above, thr.expand_as(m.mem)), m.mem)
            spk = exp
    if not delay:  # snnTorch's immediate reset, on the forced spikes
        do_reset = spk - m.reset
        sub = m.reset_mechanism == "subtract"
        m.mem = m.mem - do_reset * (thr if sub else m.mem)
        if sub:
            mem_mag = mem_mag + do_reset.abs() * thr
        else:
            keep = 1.0 - spk
            mem_mag, mem_err = mem_mag * keep, mem_err * keep
    st.mag, st.err, st.prev = mem_mag, mem_err, spk
    if tally.mems is not None:
        _check_state(op.name, t, m.mem, mem_err, tally)
    if tally.watches:
        _watch_all(op.name, t, spk, m.mem, mem_err, tally.u, tally.watches)
    return _Val(spk, spk.abs(), torch.zeros_like(spk))


def _membrane_bound(m: nn.Module, kind: str, a: _Val, st: _Neuron, u: float
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """The membrane's magnitude and error after this step's update (before any forcing)."""
    z = torch.zeros_like(a.v)
    beta = m.beta.clamp(0, 1)  # type: ignore[union-attr]
    prev = st.prev if st.prev is not None else z
    mag0 = st.mag if st.mag is not None else z
    err0 = st.err if st.err is not None else z
    mech = m.reset_mechanism  # type: ignore[union-attr]
    keep = (1.0 - prev) if mech == "zero" else 1.0
    cur_mag, cur_err = a.mag, a.err
    if kind == "synaptic":
        alpha = m.alpha.clamp(0, 1)  # type: ignore[union-attr]
        smag = alpha * (st.syn_mag if st.syn_mag is not None else z) + a.mag
        serr = (alpha * (st.syn_err if st.syn_err is not None else z) + a.err
                + gamma(3, u) * smag)
        st.syn_mag, st.syn_err = smag, serr
        cur_mag, cur_err = smag, serr
    mag = beta * keep * mag0 + cur_mag
    if mech == "subtract":
        mag = mag + prev * m.threshold.abs()  # type: ignore[union-attr]
    err = beta * keep * err0 + cur_err + (gamma(4, u) + 4 * PARAM_U) * mag
    if kind == "synaptic" and mech == "zero":  # snnTorch's Synaptic zeroes the new membrane
        err = (1.0 - prev) * err
    return mag, err


def _count(name: str, k: int, t: int, margin: torch.Tensor, bound: torch.Tensor,
           diff: torch.Tensor, tally: _Tally) -> None:
    """Add this step's flips of one layer to the tally (the first unexplained one kept)."""
    explained = diff & (margin <= bound)
    bad = diff & ~explained
    tally.explained += int(explained.sum())
    n_bad = int(bad.sum())
    if not n_bad:
        return
    tally.unexplained += n_bad
    per_sample = bad.reshape(bad.shape[0], -1)
    sample = int(per_sample.any(1).nonzero()[0])
    j = int(per_sample[sample].nonzero()[0])
    key = (k, sample, t)
    if tally.first is None or key < tally.first[:3]:
        flip = Flip(layer=name, sample=sample, step=t,
                    margin=float(margin.reshape(bad.shape[0], -1)[sample, j]),
                    bound=float(bound.reshape(bad.shape[0], -1)[sample, j]))
        tally.first = (k, sample, t, flip)


def _check_state(name: str, t: int, mem: torch.Tensor, bound: torch.Tensor,
                 tally: _Tally) -> None:
    assert tally.mems is not None
    theirs = torch.from_numpy(np.asarray(tally.mems[f"{name}.mem"][t])).double()
    d = (theirs.reshape(mem.shape) - mem).abs()
    tally.max_abs = max(tally.max_abs, float(d.max()) if d.numel() else 0.0)
    tol = 2.0 * bound + tally.u * mem.abs() + 1e-300
    tally.max_ratio = max(tally.max_ratio, float((d / tol).max()) if d.numel() else 0.0)


def _watch_all(name: str, t: int, spk: torch.Tensor, mem: torch.Tensor, bound: torch.Tensor,
               u: float, watches: Sequence[_Watch]) -> None:
    """The shared run at one neuron and step: for each request, mark its samples whose spikes
    differ, and keep each sample's largest membrane error (as :func:`_check_state` does)."""
    ref = spk.numpy().astype(np.float32)  # 0/1: exact in the exports' float32 too
    mem_np: np.ndarray | None = None
    tol: np.ndarray | None = None
    for w in watches:
        n = w.n
        if not n or not ref[0].size:
            continue
        exp = np.asarray(w.req.exported[name][t]).reshape(n, -1)
        w.flipped |= (ref[:n].reshape(n, -1) != exp).any(1)
        if w.req.mems is None or not w.shared_states:
            continue
        if mem_np is None or tol is None:  # once per neuron and step, for every request
            mem_np = mem.numpy().reshape(mem.shape[0], -1)
            tol = 2.0 * bound.numpy().reshape(mem_np.shape) + u * np.abs(mem_np) + 1e-300
        theirs = np.asarray(w.req.mems[f"{name}.mem"][t], dtype=np.float64).reshape(n, -1)
        d = np.abs(theirs - mem_np[:n])
        np.maximum(w.max_abs, d.max(1), out=w.max_abs)
        np.maximum(w.max_ratio, (d / tol[:n]).max(1), out=w.max_ratio)
