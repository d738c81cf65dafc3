"""The mask lifecycle: alive masks, masks from a plan, apply them, keep them fixed in training.

In torch.ao's terms :func:`alive_masks` and :func:`masks_from_plan` prepare the masks,
:func:`masks_fixed` holds them during retraining, and :func:`apply_masks` squashes them into the
weights.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import contextmanager

import numpy as np
import torch

from slamp_deploy.model.graph import SpikingGraph
from slamp_deploy.prune.plan import PruningPlan

Masks = dict[str, torch.Tensor]  # layer name -> bool mask, True = kept


def magnitude_mask(weight: torch.Tensor, keep: int, alive: torch.Tensor | None = None
                   ) -> torch.Tensor:
    """Keep the ``keep`` largest-magnitude alive weights (ties: lower flat index wins)."""
    w = weight.detach().abs().flatten().double()
    if alive is not None:
        w = torch.where(alive.flatten(), w, torch.tensor(-1.0, dtype=w.dtype))
    n = w.numel()
    keep = max(0, min(keep, n))
    # what a stable descending sort's first ``keep`` are (every weight above the keep-th
    # largest, then the lowest-index ties at it), found by one selection instead of a sort
    mask = torch.zeros(n, dtype=torch.bool)
    if keep == n:
        mask[:] = True
    elif keep:
        thr = -torch.kthvalue(-w, keep).values
        mask = w > thr
        ties = torch.nonzero(w == thr).flatten()
        mask[ties[:keep - int(mask.sum())]] = True
    if alive is not None:
        mask &= alive.flatten()
    return mask.reshape(weight.shape)


def alive_masks(graph: SpikingGraph) -> Masks:
    """Weights that are currently non-zero."""
    return {la.name: (la.weight.detach() != 0).cpu() for la in graph.layers}


def masks_from_plan(graph: SpikingGraph, plan: PruningPlan, alive: Masks) -> Masks:
    """The plan's masks: a capped layer's exact mask, otherwise per-layer magnitude pruning to
    its keep count (never revives a weight)."""
    out = {}
    layers = {lay.name: lay for lay in plan.layers}
    for la in graph.layers:
        lay = layers[la.name]
        if lay.mask is not None:
            out[la.name] = torch.from_numpy(np.array(lay.mask, dtype=bool))
        else:
            out[la.name] = magnitude_mask(la.weight, lay.n_kept, alive[la.name])
    return out


@torch.no_grad()
def apply_masks(graph: SpikingGraph, masks: Mapping[str, torch.Tensor]) -> None:
    """Zero every pruned weight in place."""
    for la in graph.layers:
        la.weight.mul_(masks[la.name].to(la.weight.device, la.weight.dtype))


@contextmanager
def masks_fixed(graph: SpikingGraph, masks: Mapping[str, torch.Tensor]):
    """Inside this block pruned weights get zero gradient; call :func:`apply_masks` after steps.

    Masking the gradient keeps optimisers with momentum from moving a pruned weight; re-applying
    the mask after each step guards against weight decay and numerical drift.
    """
    handles = []
    for la in graph.layers:
        m = masks[la.name].to(la.weight.device, la.weight.dtype)
        handles.append(la.weight.register_hook(lambda g, m=m: g * m))
    try:
        yield
    finally:
        for h in handles:
            h.remove()
