"""SpikingGraph: the neutral description of a feed-forward spiking network.

:func:`trace` runs one time step of a user's snnTorch model with forward hooks on every leaf
module and records the chain of calls: which module runs after which, with per-sample shapes.
Everything downstream (calibration, scores, pruning, retraining, export) reads the graph and
never re-inspects the user's ``forward``. The graph keeps references to the user's modules, so
pruning a graph layer prunes the model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import snntorch as snn
import torch
from torch import nn

from .errors import ModelError

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
    """One step of the chain: a module call (or an implicit reshape between two calls)."""

    name: str  # module's fully-qualified name; "<reshape>" ops are named after their producer
    kind: str  # one of SUPPORTED's values, or "reshape"
    module: nn.Module | None  # None for implicit reshapes
    in_shape: tuple[int, ...]  # per-sample input shape (no batch dimension)
    out_shape: tuple[int, ...]  # per-sample output shape


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
    """An ordered chain of ops traced from a model, plus what the pipeline needs to run it."""

    model: nn.Module
    ops: tuple[Op, ...]
    input_shape: tuple[int, ...]  # per-sample input shape of one time step

    @cached_property
    def layers(self) -> tuple[Layer, ...]:
        out = []
        for i, op in enumerate(self.ops):
            if op.kind in SYNAPTIC_KINDS:
                neuron = None
                for nxt in self.ops[i + 1:]:
                    if nxt.kind in SYNAPTIC_KINDS:
                        break
                    if nxt.kind in NEURON_KINDS:
                        neuron = nxt
                        break
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
        """One dict per op, for reports."""
        return [{"name": op.name, "kind": op.kind, "in_shape": list(op.in_shape),
                 "out_shape": list(op.out_shape)} for op in self.ops]


def neuron_params(op: Op) -> dict[str, object]:
    """Parameters of a neuron op as plain tensors/values (detached, on CPU)."""
    m = op.module
    assert m is not None
    params: dict[str, object] = {
        "beta": m.beta.detach().clamp(0, 1).cpu().float(),
        "threshold": m.threshold.detach().cpu().float(),
        "reset_mechanism": m.reset_mechanism,
        "reset_delay": bool(m.reset_delay),
    }
    if op.kind == "synaptic":
        params["alpha"] = m.alpha.detach().clamp(0, 1).cpu().float()
    return params


def _leaf_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(n, m) for n, m in model.named_modules() if n and not list(m.children())]


def _check_supported(model: nn.Module) -> None:
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


def _same_data(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a is b or (a.data_ptr() == b.data_ptr() and a.numel() == b.numel())


def trace(model: nn.Module, sample_shape: tuple[int, ...]) -> SpikingGraph:
    """Trace the chain of leaf-module calls of one time step of ``model``.

    The model's ``forward`` must process one time step ``[N, *sample_shape]`` (snnTorch's
    ``init_hidden=True`` style, or a custom ``forward`` that calls its layers once per step; a
    ``forward`` that loops over time internally is traced up to the first repeated call).

    Raises:
        ModelError: an unsupported layer (named, with the supported list), a forward that fails
            on the data's shape (both shapes named), or data flow that is not a chain.
    """
    _check_supported(model)
    if not list(model.children()):
        model = nn.Sequential(model)
    calls: list[tuple[str, nn.Module, torch.Tensor, torch.Tensor]] = []
    seen: set[int] = set()
    stop = [False]
    names = {id(m): n for n, m in _leaf_modules(model)}

    def hook(mod: nn.Module, inputs: tuple[torch.Tensor, ...], output: object) -> None:
        if stop[0]:
            return
        if id(mod) in seen:  # forward loops over time: the chain is complete
            stop[0] = True
            return
        seen.add(id(mod))
        if not inputs or not isinstance(inputs[0], torch.Tensor):
            raise ModelError(f"layer '{names[id(mod)]}' was called without a tensor input")
        calls.append((names[id(mod)], mod, inputs[0], _first(output)))

    handles = [m.register_forward_hook(hook) for _, m in _leaf_modules(model)]
    was_training = model.training
    model.eval()
    reset_state(model)
    try:
        param = next(model.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
        x = torch.zeros(_TRACE_BATCH, *sample_shape, device=device)
        with torch.no_grad():
            model(x)
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
    if not calls:
        raise ModelError("the model's forward called no supported layer")

    ops: list[Op] = []
    for i, (name, mod, inp, out) in enumerate(calls):
        for what, t in (("input", inp), ("output", out)):
            if t.dim() == 0 or t.shape[0] != _TRACE_BATCH:
                raise ModelError(f"layer '{name}': its {what} has shape {tuple(t.shape)}, which "
                                 f"has no batch dimension; the model's forward must process one "
                                 f"time step [N, ...] (no time dimension)")
        if i > 0:
            prev_name, _, _, prev_out = calls[i - 1]
            if not _same_data(inp, prev_out):
                raise ModelError(
                    f"layer '{name}' does not take its input from the layer called before it "
                    f"('{prev_name}'); slamp-deploy supports feed-forward chains of layers "
                    f"(no residual or functional ops between layers: use nn modules such as "
                    f"nn.Flatten / nn.MaxPool2d)")
            if tuple(inp.shape) != tuple(prev_out.shape):
                ops.append(Op(name=f"{prev_name}:reshape", kind="reshape", module=None,
                              in_shape=tuple(prev_out.shape[1:]), out_shape=tuple(inp.shape[1:])))
        ops.append(Op(name=name, kind=SUPPORTED[type(mod)], module=mod,
                      in_shape=tuple(inp.shape[1:]), out_shape=tuple(out.shape[1:])))
    if not any(op.kind in SYNAPTIC_KINDS for op in ops):
        raise ModelError("the model has no Linear or Conv layer to prune")
    return SpikingGraph(model=model, ops=tuple(ops), input_shape=tuple(sample_shape))
