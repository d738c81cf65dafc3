"""The pruning plan: what every layer keeps and why, capped by a chip or not (one frozen type).

:func:`slamp_deploy.prune.allocate.allocate` returns it for a method; the raw capped greedy
(:func:`slamp_deploy.prune.allocate.allocate_capped`) returns it with the cap levels as bindings
and no method. A layer carries its exact mask when the caps chose the weights; otherwise its keep
count is applied by magnitude (:func:`slamp_deploy.prune.masks.masks_from_plan`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from slamp_deploy.geometry import LayerCaps

__all__ = ["LayerPlan", "PruningPlan"]


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class LayerPlan:
    """The plan of one layer."""

    name: str
    n_weights: int
    n_alive: int  # weights that could be kept (alive, and with a positive score when capped)
    n_kept: int
    binding: str  # what decided the count: "<method>.threshold", "cap.fan_in", a cap level, ...
    layer_score: float | None = None  # lambda for slamp, 1 for lamp, density for others
    refused: tuple[tuple[str, int], ...] = ()  # (cap level, alive weights refused there)
    caps: LayerCaps | None = None  # the caps applied (None: not capped)
    mask: np.ndarray | None = field(default=None, repr=False)  # bool, read-only; None: magnitude


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class PruningPlan:
    """Every layer's plan, in network order, with the totals."""

    method: str | None  # None: the raw capped greedy, not a method's plan
    layers: tuple[LayerPlan, ...]
    keep_requested: int | None  # the global keep count asked for (None: as many as caps allow)
    n_kept: int
    n_weights: int
    n_alive: int

    @property
    def keep(self) -> dict[str, int]:
        return {lay.name: lay.n_kept for lay in self.layers}

    @property
    def binding(self) -> dict[str, str]:
        return {lay.name: lay.binding for lay in self.layers}

    @property
    def layer_score(self) -> dict[str, float | None]:
        return {lay.name: lay.layer_score for lay in self.layers}

    @property
    def masks(self) -> dict[str, np.ndarray]:
        """The exact masks of the layers that carry one (all of them when capped)."""
        return {lay.name: lay.mask for lay in self.layers if lay.mask is not None}
