"""SpikingGraph: the neutral description of a feed-forward spiking network.

:func:`trace` runs one time step of a user's snnTorch model with forward hooks on every leaf
module and records the calls: which module runs after which, with per-sample shapes, and which
earlier call each one reads. Between module calls the forward may reshape (``view``,
``flatten``) and add two tensors (a residual connection, ``out + shortcut`` or ``out +=
shortcut``); the graph is then a DAG whose ops are in call order (a topological order).
Everything downstream (calibration, scores, pruning, retraining, export) reads the graph and
never re-inspects the user's ``forward``. The graph keeps references to the user's modules, so
pruning a graph layer prunes the model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import cached_property

import snntorch as snn
import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from slamp_deploy.errors import ModelError

#: leaf module type -> graph op kind. Containers (Sequential, ModuleList, custom modules) are
#: transparent; any other leaf is refused with the list below.
SUPPORTED: dict[type[nn.Module], str] = {
    nn.Linear: "linear",
    nn.Conv1d: "conv1d",
    nn.Conv2d: "conv2d",
    nn.BatchNorm1d: "batchnorm",
    nn.BatchNorm2d: "batchnorm",
    nn.AvgPool1d: "avgpool",
    nn.AvgPool2d: "avgpool",
    nn.MaxPool1d: "maxpool",
    nn.MaxPool2d: "maxpool",
    nn.Flatten: "flatten",
    nn.Dropout: "dropout",
    snn.Leaky: "leaky",
    snn.Synaptic: "synaptic",
}
SYNAPTIC_KINDS = ("linear", "conv1d", "conv2d")
ADD = "add"  # op kind of an element-wise sum of two earlier ops (residual connection)
INPUT = -1  # Op.inputs index that stands for the graph's input
NEURON_KINDS = ("leaky", "synaptic")
RESET_MECHANISMS = ("subtract", "zero", "none")

_TRACE_BATCH = 3


def supported_names() -> str:
    """Human-readable list of supported layer types, for error messages."""
    names = sorted(("snn." if t.__module__.startswith("snntorch") else "nn.") + t.__name__
                   for t in SUPPORTED)
    return ", ".join(names)


@dataclass(frozen=True, eq=False)
class Op:
    """One op: a module call, or an implicit reshape or residual add between two calls."""

    name: str  # module's fully-qualified name; reshapes and adds are named after their inputs
    kind: str  # one of SUPPORTED's values, "reshape" or "add"
    module: nn.Module | None  # None for implicit reshapes and adds
    in_shape: tuple[int, ...]  # per-sample input shape (no batch dimension)
    out_shape: tuple[int, ...]  # per-sample output shape
    # indices of the ops this one reads (INPUT = the graph's input); () = the op before it
    inputs: tuple[int, ...] = ()


@dataclass(frozen=True, eq=False)
class Layer:
    """A prunable layer: a synaptic op and the spiking neurons its current reaches."""

    name: str  # fully-qualified module name, e.g. "features.0"
    op_index: int  # position of the synaptic op in SpikingGraph.ops
    module: nn.Module  # the Linear / Conv module (its .weight is what gets pruned)
    neuron: Op | None  # the first neuron op after it (None for a non-spiking readout)

    @property
    def weight(self) -> torch.nn.Parameter:
        return self.module.weight  # type: ignore[return-value]

    @property
    def n_weights(self) -> int:
        return int(self.weight.numel())

    @property
    def kind(self) -> str:
        return SUPPORTED[type(self.module)]


@dataclass(frozen=True, eq=False)
class SpikingGraph:
    """The ops traced from a model in call order (a chain, or a DAG with residual adds), plus
    what the pipeline needs to run it."""

    model: nn.Module
    ops: tuple[Op, ...]
    input_shape: tuple[int, ...]  # per-sample input shape of one time step

    def sources(self, i: int) -> tuple[int, ...]:
        """Indices of the ops op ``i`` reads (``INPUT`` for the graph's input)."""
        return self.ops[i].inputs or (i - 1,)

    @cached_property
    def consumers(self) -> tuple[tuple[int, ...], ...]:
        """For every op, the indices of the ops that read it, in call order."""
        out: list[list[int]] = [[] for _ in self.ops]
        for i in range(len(self.ops)):
            for j in self.sources(i):
                if j != INPUT:
                    out[j].append(i)
        return tuple(tuple(c) for c in out)

    @cached_property
    def is_chain(self) -> bool:
        """True when every op reads only the op called before it (no residual connections)."""
        return all(self.sources(i) == (i - 1,) for i in range(len(self.ops)))

    def downstream(self, i: int, *, through_neurons: bool) -> list[int]:
        """Ops reachable from op ``i`` without passing a synaptic op (nor, unless
        ``through_neurons``, a neuron op), in call order; the stopping ops are included."""
        seen: set[int] = set()
        todo = list(self.consumers[i])
        while todo:
            j = todo.pop()
            if j in seen:
                continue
            seen.add(j)
            kind = self.ops[j].kind
            if kind in SYNAPTIC_KINDS or (kind in NEURON_KINDS and not through_neurons):
                continue
            todo.extend(self.consumers[j])
        return sorted(seen)

    @cached_property
    def layers(self) -> tuple[Layer, ...]:
        out = []
        for i, op in enumerate(self.ops):
            if op.kind in SYNAPTIC_KINDS:
                # the first neuron op its current reaches (through BN, pooling, reshapes, adds)
                neuron = next((self.ops[j] for j in self.downstream(i, through_neurons=False)
                               if self.ops[j].kind in NEURON_KINDS), None)
                assert op.module is not None
                out.append(Layer(name=op.name, op_index=i, module=op.module, neuron=neuron))
        return tuple(out)

    @property
    def neuron_ops(self) -> tuple[Op, ...]:
        return tuple(op for op in self.ops if op.kind in NEURON_KINDS)

    @property
    def output_op(self) -> Op:
        return self.ops[-1]

    @property
    def n_outputs(self) -> int:
        return math.prod(self.output_op.out_shape)

    @property
    def n_weights(self) -> int:
        return sum(layer.n_weights for layer in self.layers)

    def layer(self, name: str) -> Layer:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise ModelError(f"no prunable layer named {name!r}; layers: "
                         f"{', '.join(la.name for la in self.layers)}")

    def describe(self) -> list[dict[str, object]]:
        """One dict per op, for reports (``inputs`` only where an op does not simply read the op
        before it)."""
        out: list[dict[str, object]] = []
        for i, op in enumerate(self.ops):
            d: dict[str, object] = {"name": op.name, "kind": op.kind,
                                    "in_shape": list(op.in_shape), "out_shape": list(op.out_shape)}
            if self.sources(i) != (i - 1,):
                d["inputs"] = ["@input" if j == INPUT else self.ops[j].name
                               for j in self.sources(i)]
            out.append(d)
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class NeuronSpec:
    """A neuron op's parameters as its snnTorch module holds them (detached float32 CPU
    tensors, scalar or per neuron; decays clamped to [0, 1] as snnTorch applies them). The NIR
    side's twin, read from NIR nodes, is ``exporters.neuron_step.NeuronParams``."""

    beta: torch.Tensor
    threshold: torch.Tensor
    reset_mechanism: str
    reset_delay: bool
    alpha: torch.Tensor | None = None  # synaptic decay (Synaptic only)


def neuron_spec(op: Op) -> NeuronSpec:
    """The parameters of a neuron op, read from its module."""
    m = op.module
    assert m is not None
    return NeuronSpec(
        beta=m.beta.detach().clamp(0, 1).cpu().float(),
        threshold=m.threshold.detach().cpu().float(), reset_mechanism=m.reset_mechanism,
        reset_delay=bool(m.reset_delay),
        alpha=m.alpha.detach().clamp(0, 1).cpu().float() if op.kind == "synaptic" else None)


def _leaf_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(n, m) for n, m in model.named_modules() if n and not list(m.children())]


#: snnTorch neurons with a recurrent connection (their own Linear/Conv feeds the spikes back)
_RECURRENT = tuple(getattr(snn, n) for n in ("RLeaky", "RSynaptic", "SLSTM", "SConv2dLSTM")
                   if hasattr(snn, n))


def _check_neurons(model: nn.Module) -> None:
    """Refuse snnTorch neurons other than Leaky and Synaptic by name, containers included (a
    recurrent neuron holds its feedback layer as a child, so it is no leaf)."""
    for name, m in model.named_modules():
        if not isinstance(m, snn.SpikingNeuron) or type(m) in SUPPORTED:
            continue
        where = name or "<model>"
        if isinstance(m, _RECURRENT):
            raise ModelError(f"layer '{where}' is a recurrent snn.{type(m).__name__}: recurrent "
                             f"layers are not supported (slamp-deploy handles feed-forward "
                             f"networks); use snn.Leaky or snn.Synaptic")
        raise ModelError(f"layer '{where}' has unsupported type snn.{type(m).__name__}; "
                         f"supported: {supported_names()}")


def _check_supported(model: nn.Module) -> None:
    _check_neurons(model)
    leaves = [("<model>", model)] if not list(model.children()) else _leaf_modules(model)
    for name, m in leaves:
        if type(m) not in SUPPORTED:
            raise ModelError(f"layer '{name}' has unsupported type {type(m).__module__}."
                             f"{type(m).__name__}; supported: {supported_names()}")
        if isinstance(m, (snn.Leaky, snn.Synaptic)):
            if getattr(m, "inhibition", False):
                raise ModelError(f"layer '{name}': inhibition=True is not supported; "
                                 "build the neuron without inhibition")
            if getattr(m, "state_quant", False):
                raise ModelError(f"layer '{name}': state_quant is not supported; "
                                 "quantize after export instead")
            gsf = torch.as_tensor(m.graded_spikes_factor)
            if not torch.all(gsf == 1):
                raise ModelError(f"layer '{name}': graded_spikes_factor != 1 is not supported; "
                                 "use binary spikes (graded_spikes_factor=1.0)")
            if m.reset_mechanism not in RESET_MECHANISMS:
                raise ModelError(f"layer '{name}': unknown reset_mechanism "
                                 f"{m.reset_mechanism!r}")


def reset_state(model: nn.Module) -> None:
    """Clear every neuron's hidden state so the next call starts a fresh sequence."""
    for m in model.modules():
        if isinstance(m, (snn.Leaky, snn.Synaptic)):
            m.mem = torch.zeros(0, device=m.mem.device)
            if isinstance(m, snn.Synaptic):
                m.syn = torch.zeros(0, device=m.syn.device)


def _first(out: object) -> torch.Tensor:
    return out[0] if isinstance(out, tuple) else out  # type: ignore[return-value]


#: torch functions that add two tensors (``a + b``, ``a += b``, ``torch.add``) between layers
_ADD_FUNCS = {torch.add, torch.Tensor.add, torch.Tensor.add_, torch.Tensor.__add__,
              torch.Tensor.__radd__, torch.Tensor.__iadd__}


def _fn_name(func: object) -> str:
    """``torch.cat`` / ``Tensor.mul`` for the error messages."""
    qual = str(getattr(func, "__qualname__", getattr(func, "__name__", repr(func))))
    owner, _, name = qual.rpartition(".")
    if owner in ("TensorBase", "Tensor"):
        return f"Tensor.{name}"
    if owner == "_VariableFunctionsClass" or not owner:
        return f"torch.{name}"
    return f"{getattr(func, '__module__', 'torch')}.{qual}"


class _Recorder(TorchFunctionMode):
    """Records torch calls made by the model's own ``forward`` between leaf-module calls."""

    def __init__(self, depth: list[int], events: list[tuple]) -> None:
        super().__init__()
        self.depth, self.events = depth, events

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if self.depth[0] == 0:
            if _is_inplace(func, kwargs) and not _is_tensor_add(func, args, kwargs):
                self.events.append(("inplace", func, args, kwargs, out))
            elif isinstance(out, torch.Tensor):
                self.events.append(("fn", func, args, kwargs, out))
        return out


#: dunder methods that change their tensor in place (besides ``__iadd__``, a residual add)
_INPLACE_DUNDERS = {"__setitem__", "__iadd__", "__isub__", "__imul__", "__itruediv__",
                    "__ifloordiv__", "__imod__", "__ipow__", "__iand__", "__ior__", "__ixor__",
                    "__ilshift__", "__irshift__", "__imatmul__"}


def _is_inplace(func: object, kwargs: dict) -> bool:
    """Whether a torch call writes into an existing tensor: ``x.mul_(0)``, ``torch.relu_(x)``,
    ``x[...] = v``, ``x *= 2``, or ``out=``."""
    name = str(getattr(func, "__name__", ""))
    if name in _INPLACE_DUNDERS or "out" in kwargs:
        return True
    return name.endswith("_") and not name.startswith("_")


def trace(model: nn.Module, sample_shape: tuple[int, ...]) -> SpikingGraph:
    """Trace the leaf-module calls of one time step of ``model`` and the data flow between them.

    The model's ``forward`` must process one time step ``[N, *sample_shape]`` (snnTorch's
    ``init_hidden=True`` style, or a custom ``forward`` that calls its layers once per step; a
    ``forward`` that loops over time internally is traced over its first pass, and must repeat
    that pass exactly). A layer called twice in one step, an in-place tensor op and a permuting
    view between layers are refused by name.
    Between layers it may reshape (``view``, ``reshape``, ``flatten``) and add two tensors of
    the same shape (residual connections); anything else that computes new values between
    layers is refused, naming the function.

    Raises:
        ModelError: an unsupported layer (named, with the supported list), a forward that fails
            on the data's shape (both shapes named), or data flow that cannot be represented.
    """
    _check_supported(model)
    if not list(model.children()):
        model = nn.Sequential(model)
    events: list[tuple] = []
    depth = [0]
    names = {id(m): n for n, m in _leaf_modules(model)}
    calls = _Calls(names)

    def pre_hook(mod: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        depth[0] += 1
        calls.enter(mod)

    def hook(mod: nn.Module, inputs: tuple[torch.Tensor, ...], output: object) -> None:
        depth[0] -= 1
        if calls.looped:
            return
        calls.order.append(id(mod))
        if not inputs or not isinstance(inputs[0], torch.Tensor):
            raise ModelError(f"layer '{names[id(mod)]}' was called without a tensor input")
        events.append(("module", names[id(mod)], mod, inputs[0], _first(output)))

    handles = [h for _, m in _leaf_modules(model)
               for h in (m.register_forward_pre_hook(pre_hook), m.register_forward_hook(hook))]
    was_training = model.training
    model.eval()
    reset_state(model)
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    x = torch.zeros(_TRACE_BATCH, *sample_shape, device=device)
    try:
        with torch.no_grad(), _Recorder(depth, events):
            model(x)
        calls.finish()
    except ModelError:
        raise
    except Exception as e:  # the user's forward rejected the data's shape
        raise ModelError(f"the model's forward failed on one time step of shape "
                         f"[N, {', '.join(map(str, sample_shape))}]: {type(e).__name__}: "
                         f"{str(e).splitlines()[0] if str(e) else ''}; check that the data's "
                         f"per-sample shape matches the model's first layer") from e
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
        reset_state(model)
    if not any(ev[0] == "module" for ev in events):
        raise ModelError("the model's forward called no supported layer")
    ops = _build_ops(events, x, tuple(sample_shape))
    if not any(op.kind in SYNAPTIC_KINDS for op in ops):
        raise ModelError("the model has no Linear or Conv layer to prune")
    return SpikingGraph(model=model, ops=tuple(ops), input_shape=tuple(sample_shape))


class _Calls:
    """The order of the leaf-module calls in one ``forward``: each layer once per step, or, for
    a ``forward`` that loops over time itself, the same sequence again and again."""

    def __init__(self, names: dict[int, str]) -> None:
        self.names = names
        self.order: list[int] = []  # the first pass: ids of the modules in call order
        self.looped = False  # the first layer was called again: later calls repeat the pass
        self.pos = 0  # calls since the loop began

    def enter(self, mod: nn.Module) -> None:
        key = id(mod)
        if self.looped:
            want = self.order[self.pos % len(self.order)]
            if key != want:
                first, prev = self.names[self.order[0]], self.names[self.order[-1]]
                raise ModelError(f"layer '{first}' is called again after '{prev}', but the "
                                 f"forward then calls '{self.names[key]}' instead of repeating "
                                 f"the step: a layer called twice in one time step is not "
                                 f"supported; give each call its own module (copy.deepcopy)")
            self.pos += 1
        elif key in self.order:
            if key != self.order[0]:
                after = self.names[self.order[-1]]
                raise ModelError(f"layer '{self.names[key]}' is called twice in one time step "
                                 f"(again after '{after}'); slamp-deploy traces each layer once "
                                 f"per step: give each call its own module (copy.deepcopy)")
            self.looped, self.pos = True, 1  # a loop over time: the graph is complete

    def finish(self) -> None:
        """After the forward: a loop over time must end with a whole pass."""
        if self.looped and self.pos % len(self.order):
            first = self.names[self.order[0]]
            last = self.names[self.order[(self.pos - 1) % len(self.order)]]
            raise ModelError(f"layer '{first}' is called again, but the forward then stops "
                             f"after '{last}' instead of repeating the whole step; slamp-deploy "
                             f"traces each layer once per step: give each call its own module")


def _reshape_name(base: str, ops: list[Op]) -> str:
    """``base:reshape``, or ``base:reshape2``, ``base:reshape3``, ... when taken by an op."""
    taken = {op.name for op in ops}
    name = f"{base}:reshape"
    k = 2
    while name in taken:
        name, k = f"{base}:reshape{k}", k + 1
    return name


def _is_tensor_add(func: object, args: tuple, kwargs: dict) -> bool:
    """Whether a recorded function call adds exactly two tensors (a residual connection)."""
    return (func in _ADD_FUNCS and len(args) == 2 and not kwargs
            and all(isinstance(a, torch.Tensor) for a in args))


def _same_order(t: torch.Tensor, who: str, src: str, views: dict[int, str]) -> None:
    """A tensor sharing its producer's storage in another order (``permute``) is no reshape."""
    if not t.is_contiguous():
        fn = views.get(id(t), "a permuted or strided view")
        raise ModelError(f"{who} reads {fn} of the output of {src}, which reorders its values; "
                         f"between layers slamp-deploy supports reshapes (view / flatten) and "
                         f"residual adds only; remove the {fn} or do it inside a supported "
                         f"layer")


def _reordering_views(events: list[tuple]) -> dict[int, str]:
    """Refuse an in-place op between layers (naming it); the ids of the recorded tensors that
    are reordering views (``permute``, ``transpose``, ``expand``), with the function's name."""
    views: dict[int, str] = {}
    last = None
    for ev in events:
        if ev[0] == "module":
            last = ev[1]
        elif ev[0] == "inplace":
            after = f"after layer '{last}'" if last else "before the first layer"
            raise ModelError(f"the model's forward changes a tensor in place with "
                             f"{_fn_name(ev[1])} ({after}); slamp-deploy cannot trace in-place "
                             f"ops, so the traced model would differ from yours: remove it, or "
                             f"use a supported layer (e.g. nn.Dropout, snn.Leaky) instead")
        elif isinstance(ev[4], torch.Tensor) and not ev[4].is_contiguous():
            views[id(ev[4])] = _fn_name(ev[1])
    return views


def _build_ops(events: list[tuple], x: torch.Tensor, sample_shape: tuple[int, ...]) -> list[Op]:
    """Turn the recorded calls into ops with explicit inputs (reshapes and adds made ops)."""
    ops: list[Op] = []
    # storage address -> the op whose output lives there (INPUT: the graph's input). Every
    # recorded tensor stays referenced by ``events``, so no address is reused meanwhile.
    producer: dict[int, int] = {x.data_ptr(): INPUT}
    other: dict[int, str] = {}  # storage address -> a function between layers we cannot express

    def shape_of(j: int) -> tuple[int, ...]:
        return sample_shape if j == INPUT else ops[j].out_shape

    def name_of(j: int) -> str:
        return "the input" if j == INPUT else f"'{ops[j].name}'"

    def batched(t: torch.Tensor, who: str, what: str) -> None:
        if t.dim() == 0 or t.shape[0] != _TRACE_BATCH:
            raise ModelError(f"{who}: its {what} has shape {tuple(t.shape)}, which has no batch "
                             f"dimension; the model's forward must process one time step "
                             f"[N, ...] (no time dimension)")

    def source(t: torch.Tensor, who: str) -> int:
        batched(t, who, "input")
        key = t.data_ptr()
        if key not in producer:
            what = (f"the result of {other[key]}" if key in other else
                    "a tensor that no earlier layer produced (a slice, a copy or a constant)")
            raise ModelError(f"{who} takes its input from {what}; between layers slamp-deploy "
                             f"supports reshapes (view / flatten) and adding two tensors "
                             f"(residual connections); use nn modules such as nn.Flatten / "
                             f"nn.MaxPool2d for the rest")
        j = producer[key]
        _same_order(t, who, name_of(j), views)
        shape = tuple(t.shape[1:])
        if shape == shape_of(j):
            return j
        if math.prod(shape) != math.prod(shape_of(j)):
            raise ModelError(f"{who} reads part of the output of {name_of(j)} "
                             f"({list(shape)} of {list(shape_of(j))}); slices are not supported")
        base = "input" if j == INPUT else ops[j].name
        ops.append(Op(name=_reshape_name(base, ops), kind="reshape", module=None,
                      in_shape=shape_of(j), out_shape=shape, inputs=(j,)))
        return len(ops) - 1

    views = _reordering_views(events)
    for ev in events:
        if ev[0] == "module":
            _, name, mod, inp, out = ev
            who = f"layer '{name}'"
            src = source(inp, who)
            batched(out, who, "output")
            ops.append(Op(name=name, kind=SUPPORTED[type(mod)], module=mod,
                          in_shape=tuple(inp.shape[1:]), out_shape=tuple(out.shape[1:]),
                          inputs=(src,)))
            producer[out.data_ptr()] = len(ops) - 1
            continue
        _, func, args, kwargs, out = ev
        key = out.data_ptr()
        if _is_tensor_add(func, args, kwargs):
            a, b = args
            if a.shape != b.shape:
                raise ModelError(f"a residual add between layers adds shapes {list(a.shape[1:])} "
                                 f"and {list(b.shape[1:])}; slamp-deploy adds tensors of the "
                                 f"same shape only (no broadcasting)")
            srcs = (source(a, "a residual add"), source(b, "a residual add"))
            ops.append(Op(name="+".join("input" if j == INPUT else ops[j].name for j in srcs),
                          kind=ADD, module=None, in_shape=tuple(out.shape[1:]),
                          out_shape=tuple(out.shape[1:]), inputs=srcs))
            producer[key] = len(ops) - 1
            other.pop(key, None)
        elif key not in producer:  # new values, not a view of a known tensor
            of = next((views[id(a)] for a in args if id(a) in views), None)
            other[key] = _fn_name(func) + (f" of a {of}" if of else "")
    # the op chain as it was, when there are no residual connections: inputs stay implicit
    if all(op.inputs == (i - 1,) for i, op in enumerate(ops)):
        ops = [replace(op, inputs=()) for op in ops]
    return ops
