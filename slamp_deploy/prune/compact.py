"""Compaction: a model and the channels each group keeps (:class:`StructurePlan`) become a
smaller model, and the same removal as masks on the full-size model (its reference).

Every op's output carries a *row mask*: a boolean over its per-sample shape that selects whole
slices along dim 0 (channels of a conv map, neurons of a vector; after a Flatten, each kept
channel's spatial block). A synaptic layer sets it from its group's keep set; BatchNorm,
dropout, pooling and neurons pass it on; a reshape reshapes it (and must leave it a selection
along dim 0); a residual add needs both inputs' masks equal (the groups make them so). From the
masks, :func:`compact_model` slices a deep copy in place: a layer's weight rows (its kept
outputs) and columns (its source's kept rows), its bias, a BatchNorm's affine parameters and
running statistics, and every per-neuron tensor of snnTorch's ``Leaky`` / ``Synaptic`` (beta,
alpha, threshold, learnable or not: whichever dimension lines up with the neurons' dim 0).
:func:`structured_masks` is the same removal on the full-size model as zeros: the removed rows
of every layer and the columns that read removed rows, biases of removed rows included; the
tests prove that the compact model spikes exactly as that masked model does at every kept
neuron.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import snntorch as snn
import torch
from torch import nn

from slamp_deploy.errors import ModelError
from slamp_deploy.model.graph import (
    ADD,
    INPUT,
    SYNAPTIC_KINDS,
    SpikingGraph,
    reset_state,
)
from slamp_deploy.prune.structure import StructurePlan, check_keep

__all__ = ["LayerShrink", "compact_graph", "compact_model", "row_masks", "shrink_table",
           "structured_masks"]

#: per-neuron tensors of snnTorch's Leaky / Synaptic that follow the neurons' shape
_NEURON_TENSORS = ("beta", "alpha", "threshold", "graded_spikes_factor")


def _rows(mask: np.ndarray) -> np.ndarray:
    """The kept indices along dim 0 of a row mask (it must select whole dim-0 slices)."""
    flat = mask.reshape(mask.shape[0], -1) if mask.ndim else mask.reshape(1, 1)
    any_, all_ = flat.any(1), flat.all(1)
    if not np.array_equal(any_, all_):
        raise ModelError("structure: a reshape mixes kept and removed channels within one row; "
                         "only reshapes that keep whole channels (Flatten) are supported")
    return np.nonzero(all_)[0]


def row_masks(graph: SpikingGraph, plan: StructurePlan) -> list[np.ndarray]:
    """Every op's output row mask under ``plan`` (see the module docstring).

    Raises:
        ModelError: a reshape that splits channels, or a join of different keep sets.
    """
    check_keep(plan.groups, plan.keep)
    keep = plan.layer_keep
    masks: list[np.ndarray] = []

    def of(j: int) -> np.ndarray:
        return np.ones(graph.input_shape, dtype=bool) if j == INPUT else masks[j]

    for i, op in enumerate(graph.ops):
        src = of(graph.sources(i)[0])
        shape = tuple(op.out_shape)
        if op.kind in SYNAPTIC_KINDS:
            ch = np.zeros(shape[0], dtype=bool)
            ch[list(keep[op.name])] = True
            masks.append(np.broadcast_to(ch.reshape((-1,) + (1,) * (len(shape) - 1)),
                                         shape).copy())
        elif op.kind in ("reshape", "flatten"):
            m = src.reshape(shape)
            _rows(m)
            masks.append(m)
        elif op.kind == ADD:
            other = of(graph.sources(i)[1])
            if not np.array_equal(src, other):
                raise ModelError(f"structure: the residual join {op.name!r} adds inputs that "
                                 f"keep different channels; joined layers are one group")
            masks.append(src)
        else:  # channel-wise ops keep dim 0 (pooling changes the other dims only)
            ch = np.zeros(shape[0], dtype=bool)
            ch[_rows(src)] = True
            masks.append(np.broadcast_to(ch.reshape((-1,) + (1,) * (len(shape) - 1)),
                                         shape).copy())
    return masks


@dataclass(frozen=True, slots=True, kw_only=True)
class LayerShrink:
    """One synaptic layer's outputs and inputs before and after (for the report)."""

    name: str
    kind: str
    outputs_before: int
    outputs_after: int
    inputs_before: int
    inputs_after: int


def shrink_table(graph: SpikingGraph, plan: StructurePlan) -> tuple[LayerShrink, ...]:
    """Each layer's output neurons/channels and input columns/channels, before and after."""
    masks = row_masks(graph, plan)
    out = []
    for la in graph.layers:
        j = graph.sources(la.op_index)[0]
        src = np.ones(graph.input_shape, dtype=bool) if j == INPUT else masks[j]
        out.append(LayerShrink(name=la.name, kind=la.kind,
                               outputs_before=int(la.weight.shape[0]),
                               outputs_after=len(plan.layer_keep[la.name]),
                               inputs_before=int(la.weight.shape[1]) * int(la.module.groups
                                                                           if la.kind != "linear"
                                                                           else 1),
                               inputs_after=len(_rows(src))))
    return tuple(out)


def _index(t: torch.Tensor, dim: int, idx: np.ndarray) -> torch.Tensor:
    return t.detach().index_select(dim, torch.as_tensor(idx, dtype=torch.long, device=t.device))


def _set(module: nn.Module, name: str, value: torch.Tensor) -> None:
    """Replace parameter or buffer ``name`` of ``module``, keeping which of the two it is and
    whether it learns."""
    if name in module._parameters and module._parameters[name] is not None:
        old = module._parameters[name]
        module._parameters[name] = nn.Parameter(value.clone(), requires_grad=old.requires_grad)
    elif name in module._buffers and module._buffers[name] is not None:
        module._buffers[name] = value.clone()


def _shrink_synaptic(m: nn.Module, out_idx: np.ndarray, in_idx: np.ndarray, name: str) -> None:
    if isinstance(m, nn.Linear):
        _set(m, "weight", _index(_index(m.weight, 0, out_idx), 1, in_idx))
        m.out_features, m.in_features = len(out_idx), len(in_idx)
    else:
        assert isinstance(m, nn.modules.conv._ConvNd)
        if m.groups != 1 and (len(out_idx) != m.out_channels
                              or len(in_idx) != m.in_channels):
            raise ModelError(f"structure: layer {name!r} is a grouped convolution; its channels "
                             f"cannot be removed one by one")
        _set(m, "weight", _index(_index(m.weight, 0, out_idx), 1, in_idx))
        m.out_channels, m.in_channels = len(out_idx), len(in_idx)
    if m.bias is not None:
        _set(m, "bias", _index(m.bias, 0, out_idx))


def _shrink_batchnorm(m: nn.Module, idx: np.ndarray) -> None:
    assert isinstance(m, nn.modules.batchnorm._BatchNorm)
    for name in ("weight", "bias", "running_mean", "running_var"):
        t = getattr(m, name)
        if t is not None:
            _set(m, name, _index(t, 0, idx))
    m.num_features = len(idx)


def _shrink_neuron(m: nn.Module, shape: tuple[int, ...], idx: np.ndarray, name: str) -> None:
    """Slice every per-neuron tensor along the dimension that lines up with the neurons' dim 0
    under broadcasting (right-aligned: a ``(C,)`` beta on a vector, ``(C, 1, 1)`` or
    ``(C, H, W)`` on a map); scalars and tensors that broadcast over dim 0 stay."""
    for attr in _NEURON_TENSORS:
        t = m._parameters.get(attr)
        if t is None:
            t = m._buffers.get(attr)
        if t is None or t.dim() == 0 or t.numel() == 1:
            continue
        d = t.dim() - len(shape)
        if d < 0 or t.shape[d] == 1:
            continue  # broadcasts over the neurons' dim 0
        if t.shape[d] != shape[0]:
            raise ModelError(f"structure: layer {name!r}: {attr} has shape {tuple(t.shape)}, "
                             f"which does not line up with its {shape[0]} neurons")
        _set(m, attr, _index(t, d, idx))


def compact_graph(graph: SpikingGraph, plan: StructurePlan) -> SpikingGraph:
    """The compact model (:func:`compact_model`) with its graph: the same ops, reading the
    copy's modules, with the shrunk shapes (what tracing the copy gives, without running it:
    the tests compare the two).

    Raises:
        ModelError: as :func:`compact_model`.
    """
    masks = row_masks(graph, plan)
    model = compact_model(graph, plan, masks=masks)
    names = {id(m): n for n, m in graph.model.named_modules()}
    mods = dict(model.named_modules())
    if not list(graph.model.children()):  # trace wrapped a bare module in a Sequential
        raise ModelError("structure: the model is a single layer; nothing can be removed")
    shapes = [(len(_rows(m)), *op.out_shape[1:]) for m, op in zip(masks, graph.ops, strict=True)]
    ops = []
    for i, op in enumerate(graph.ops):
        j = graph.sources(i)[0]
        ops.append(replace(op, module=None if op.module is None else mods[names[id(op.module)]],
                           in_shape=tuple(graph.input_shape if j == INPUT else shapes[j]),
                           out_shape=tuple(shapes[i])))
    return SpikingGraph(model=model, ops=tuple(ops), input_shape=graph.input_shape)


def compact_model(graph: SpikingGraph, plan: StructurePlan, *,
                  masks: list[np.ndarray] | None = None) -> nn.Module:
    """A deep copy of ``graph.model`` with the removed channels gone (the original is left as it
    is). Trace the copy again, or take :func:`compact_graph`, to run it; its neuron states are
    reset.

    Raises:
        ModelError: a reshape that splits channels, a grouped convolution losing channels, a
            per-neuron tensor that does not line up, or a join of different keep sets.
    """
    masks = row_masks(graph, plan) if masks is None else masks
    model = copy.deepcopy(graph.model)
    names = {id(m): n for n, m in graph.model.named_modules()}
    mods = dict(model.named_modules())
    for i, op in enumerate(graph.ops):
        if op.module is None:
            continue
        m = mods[names[id(op.module)]]
        idx = _rows(masks[i])
        j = graph.sources(i)[0]
        src = np.ones(graph.input_shape, dtype=bool) if j == INPUT else masks[j]
        if op.kind in SYNAPTIC_KINDS:
            _shrink_synaptic(m, idx, _rows(src), op.name)
        elif op.kind == "batchnorm":
            _shrink_batchnorm(m, idx)
        elif isinstance(m, (snn.Leaky, snn.Synaptic)):
            _shrink_neuron(m, tuple(op.out_shape), idx, op.name)
    reset_state(model)
    return model


def structured_masks(graph: SpikingGraph, plan: StructurePlan) -> dict[str, torch.Tensor]:
    """The removal as weight masks on the full-size model: a layer's removed rows and the
    columns that read removed rows are False. Zero a removed row's bias too
    (:func:`zero_removed_biases`) for the masked twin of :func:`compact_model`."""
    masks = row_masks(graph, plan)
    out = {}
    for la in graph.layers:
        w = la.weight
        rows = np.zeros(w.shape[0], dtype=bool)
        rows[list(plan.layer_keep[la.name])] = True
        j = graph.sources(la.op_index)[0]
        src = np.ones(graph.input_shape, dtype=bool) if j == INPUT else masks[j]
        cols = np.zeros(w.shape[1], dtype=bool)
        cols[_rows(src)] = True
        m = rows.reshape((-1, 1) + (1,) * (w.dim() - 2)) & cols.reshape(
            (1, -1) + (1,) * (w.dim() - 2))
        out[la.name] = torch.from_numpy(np.broadcast_to(m, tuple(w.shape)).copy())
    return out


@torch.no_grad()
def zero_removed_biases(graph: SpikingGraph, plan: StructurePlan) -> None:
    """Zero the biases of the removed rows, in place (the masked full-size twin)."""
    for la in graph.layers:
        b = getattr(la.module, "bias", None)
        if b is None:
            continue
        keep = torch.zeros(b.shape[0], dtype=torch.bool)
        keep[list(plan.layer_keep[la.name])] = True
        b.mul_(keep.to(b.device, b.dtype))


def count_neurons(graph: SpikingGraph) -> int:
    """Neurons of all neuron ops (per sample), for the report's before/after line."""
    return sum(math.prod(op.out_shape) for op in graph.neuron_ops)


def plan_from_keep(graph: SpikingGraph, keep: Mapping[str, list[int]], method: str
                   ) -> StructurePlan:
    """A plan from a saved keep map (group name -> kept channels), checked against ``graph``."""
    from slamp_deploy.prune.structure import channel_groups

    groups = channel_groups(graph)
    full = {g.name: tuple(range(g.channels)) for g in groups}
    full.update({k: tuple(int(x) for x in v) for k, v in keep.items()})
    check_keep(groups, full)
    return StructurePlan(method=method, groups=groups, keep=full,
                         group_score={g.name: 1.0 for g in groups})


def load_compact(path: str | Path) -> nn.Module:
    """Rebuild a run's compact model from its ``structure.json`` (the factory
    ``compact_model.py`` in the output folder calls this): the original model from its
    ``--model`` spec, traced at the recorded input shape, shrunk by the recorded keep sets, with
    the biases the run dropped dropped again. Load the weights (``pruned.pt``) into it.

    Raises:
        ModelError: a missing or unreadable file, or a model the keep sets do not fit.
    """
    import json

    from slamp_deploy.model.graph import trace
    from slamp_deploy.model.loader import load_model

    p = Path(path)
    try:
        rec = json.loads(p.read_text())
        spec, shape = rec["model"], tuple(int(x) for x in rec["input_shape"])
        keep, method, no_bias = rec["keep"], rec["method"], rec.get("no_bias", [])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ModelError(f"{p}: cannot read the compact model's record ({type(e).__name__}: "
                         f"{e}); it is written by a slamp-deploy run with --structure") from e
    graph = trace(load_model(spec, None).model, shape)
    plan = plan_from_keep(graph, keep, method)
    model = compact_model(graph, plan)
    mods = dict(model.named_modules())
    for name in no_bias:
        if name in mods and getattr(mods[name], "bias", None) is not None:
            mods[name].register_parameter("bias", None)
    return model
