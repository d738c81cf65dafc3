"""Where a chip reads a layer's neurons by position, put the neurons there: a permutation of
hidden neurons is free and exact (the same network, its units renumbered), so the fit check,
the ``--fit`` search and the exported model all see the order the chip needs.

Today one family needs it: Xylo's ``config_from_specification`` keeps the input weights of
only the first ``xylo.input_projection_max`` neurons of the first hidden layer and the output
weights of only the last ``xylo.output_projection_max`` neurons of the layer the outputs read
(rockpool 3.1.0 ``syns65302/xylo_samna.py`` l.237-249), dropping the rest with a warning.
:func:`hidden_orders` finds, per hidden layer, an order whose fed neurons come first and whose
read neurons come last (both windows at once when one hidden layer is both);
:func:`permute_layers` applies it to the fit geometry and :func:`permute_graph` to the model
(weights, biases, per-neuron parameters and masks), in place.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

import numpy as np
import torch

from slamp_deploy.chips.profile import HardwareProfile
from slamp_deploy.geometry import LayerGeometry
from slamp_deploy.model.graph import SpikingGraph

__all__ = ["hidden_orders", "permute_graph", "permute_layers"]


def _window_order(n: int, fed: np.ndarray | None, read: np.ndarray | None, a: int, b: int
                  ) -> np.ndarray:
    """An order of ``n`` units with the ``fed`` ones in the first ``a`` positions and the
    ``read`` ones in the last ``b`` (stable within each class; best effort when impossible)."""
    idx = np.arange(n)
    f = np.zeros(n, bool) if fed is None else fed
    r = np.zeros(n, bool) if read is None else read
    only_f, both, only_r, none = idx[f & ~r], idx[f & r], idx[~f & r], idx[~f & ~r]
    # the both-block starts at s: after the fed-only ones, inside the read window, and must end
    # inside the fed window and before the read-only ones
    s = max(only_f.size, n - b) if read is not None else only_f.size
    if fed is None:
        return np.concatenate([none, only_r])
    if read is None:
        return np.concatenate([only_f, both, none])
    gap = max(s - only_f.size, 0)
    if s + both.size <= min(a, n - only_r.size) and gap <= none.size:
        return np.concatenate([only_f, none[:gap], both, none[gap:], only_r])
    return np.concatenate([only_f, both, none, only_r])


def hidden_orders(layers: Sequence[LayerGeometry], profile: HardwareProfile
                  ) -> dict[int, np.ndarray]:
    """Layer index -> the order of its output units the chip needs (only where it differs from
    the identity); empty for chips that read neurons by count only."""
    sec = profile.section("xylo") if profile.mapper == "xylo" else None
    if sec is None or len(layers) < 2 or any(lay.kind != "linear" for lay in layers):
        return {}
    a, b = sec.input_projection_max.as_int(), sec.output_projection_max.as_int()
    if a is None or b is None:
        return {}
    fed = layers[0].mask.any(axis=1)
    read = layers[-1].mask.any(axis=0)
    first, last = 0, len(layers) - 2
    wanted = {first: (fed, read if first == last else None)}
    if last != first:
        wanted[last] = (None, read)
    out = {}
    for i, (f, r) in wanted.items():
        order = _window_order(layers[i].mask.shape[0], f, r, a, b)
        if not np.array_equal(order, np.arange(order.size)):
            out[i] = order
    return out


def permute_layers(layers: Sequence[LayerGeometry], orders: Mapping[int, np.ndarray]
                   ) -> list[LayerGeometry]:
    """The layers with unit ``order[k]`` of layer ``i`` moved to position ``k`` (its rows, and
    the columns of the layer that reads it)."""
    out = list(layers)
    for i, order in orders.items():
        out[i] = replace(out[i], mask=out[i].mask[order])
        out[i + 1] = replace(out[i + 1], mask=out[i + 1].mask[:, order])
    return out


def _take(t: torch.Tensor, order: torch.Tensor, n: int, dim: int = 0) -> None:
    if t.dim() > dim and t.shape[dim] == n:
        t.data = t.data.index_select(dim, order.to(t.device)).contiguous()


@torch.no_grad()
def permute_graph(graph: SpikingGraph, masks: dict[str, torch.Tensor],
                  orders: Mapping[int, np.ndarray]) -> None:
    """Apply :func:`hidden_orders`' permutation to the model and its masks, in place: the same
    network with its hidden units renumbered (identical output spikes)."""
    for i, order in orders.items():
        la, nxt = graph.layers[i], graph.layers[i + 1]
        n = int(order.size)
        o = torch.as_tensor(order, dtype=torch.long)
        _take(la.module.weight, o, n)
        bias = getattr(la.module, "bias", None)
        if bias is not None:
            _take(bias, o, n)
        _take(nxt.module.weight, o, n, dim=1)
        masks[la.name] = masks[la.name].index_select(0, o.to(masks[la.name].device))
        masks[nxt.name] = masks[nxt.name].index_select(1, o.to(masks[nxt.name].device))
        neuron = la.neuron.module if la.neuron is not None else None
        for attr in ("beta", "threshold", "alpha"):
            t = getattr(neuron, attr, None)
            if isinstance(t, torch.Tensor) and t.numel() == n and n > 1:
                _take(t, o, n)
