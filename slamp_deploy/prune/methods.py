r"""The pruning methods and their registry: one class per method, registered by name.

Every method answers one question: how many weights does each layer keep? Within a layer the
survivors are always the largest-magnitude weights
(:func:`slamp_deploy.prune.masks.magnitude_mask`), so methods differ only in their allocation
across layers. A *score* method gives every weight a
score and keeps the global top-k (:meth:`ScoreMethod.scores`, with the fast sorted form
:meth:`ScoreMethod.sorted_scores`); a *density* method states each layer's density
(:meth:`DensityMethod.densities`). A new method is one registered class here (or in any module
imported before it is named); :func:`slamp_deploy.prune.allocate.allocate`, the fit search and
the CLI choices read the registry.

LAMP (Lee et al., ICLR 2021). Sort a layer's weights ascending by magnitude; the weight at sorted
position :math:`u` scores

.. math::  \mathrm{lamp}(u) = \frac{W[u]^2}{\sum_{v \ge u} W[v]^2}

SLAMP (this project's reconstruction, see docs/method.md) multiplies a layer's LAMP scores by its
temporal importance :math:`\lambda_l \ge 1` (:mod:`slamp_deploy.prune.temporal`).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import ClassVar, Literal, TypeVar

import torch

from slamp_deploy.errors import UnknownTargetError, UsageError

__all__ = [
    "DensityMethod",
    "PruningMethod",
    "ScoreMethod",
    "available_methods",
    "get_method",
    "lamp_scores",
    "register_method",
]

_REGISTRY: dict[str, type[PruningMethod]] = {}
_M = TypeVar("_M", bound="type[PruningMethod]")


class PruningMethod(ABC):
    """A way to split a global keep count over the layers; subclass ScoreMethod or DensityMethod."""

    name: ClassVar[str]
    kind: ClassVar[Literal["score", "density"]]
    #: whether the method reads SLAMP's temporal factor per layer (the others get 1.0)
    uses_lambdas: ClassVar[bool] = False
    #: whether, within a layer, a larger ``|w|`` never scores lower (density methods: always);
    #: then the magnitude masks of the plan's counts are the method's own top scores
    magnitude_order: ClassVar[bool] = True

    def threshold_binding(self) -> str:
        """What the report names as the reason for a layer's count when no cap decided it."""
        return f"{self.name}.threshold" if self.kind == "score" else f"{self.name}.density"


class ScoreMethod(PruningMethod):
    """Keeps the global top-k of per-weight scores (ties: layers in order, then flat index)."""

    kind: ClassVar[Literal["score", "density"]] = "score"

    @abstractmethod
    def scores(self, weight: torch.Tensor, lam: float) -> torch.Tensor:
        """Score of every weight, in the weight's shape, float64; 0 for a pruned (zero) weight."""

    def sorted_scores(self, weight: torch.Tensor, lam: float) -> torch.Tensor:
        """The layer's scores in descending order, negated (so ascending), float64, on the CPU.

        The allocator counts with this form; an override must equal the default bit for bit.
        """
        return torch.sort(self.scores(weight.cpu(), lam).flatten(), descending=True).values.neg_()


class DensityMethod(PruningMethod):
    """States each layer's density; each layer then keeps its count by magnitude."""

    kind: ClassVar[Literal["score", "density"]] = "density"

    @abstractmethod
    def densities(self, shapes: Mapping[str, tuple[int, ...]], density: float,
                  order: Sequence[str]) -> dict[str, float]:
        """Per-layer densities (layer name -> fraction kept) for a global ``density``.

        ``shapes`` holds each layer's weight shape, ``order`` the layer names in network order.
        """


def register_method(cls: _M) -> _M:
    """Class decorator: make ``cls`` available under ``cls.name`` (registration order is kept)."""
    if not issubclass(cls, (ScoreMethod, DensityMethod)):
        raise UsageError(f"pruning method {cls.__qualname__}: subclass ScoreMethod or "
                         f"DensityMethod (the allocator knows those two kinds)")
    if cls.name in _REGISTRY:
        raise UsageError(f"pruning method {cls.name!r} is registered twice "
                         f"({_REGISTRY[cls.name].__qualname__} and {cls.__qualname__})")
    _REGISTRY[cls.name] = cls
    return cls


def available_methods(kind: Literal["score", "density"] | None = None) -> tuple[str, ...]:
    """Names of the registered methods (of one ``kind``, if given), in registration order."""
    return tuple(n for n, c in _REGISTRY.items() if kind is None or c.kind == kind)


def get_method(name: str) -> PruningMethod:
    """The registered method called ``name``.

    Raises:
        UnknownTargetError: no method has that name (the message lists the known ones).
    """
    cls = _REGISTRY.get(name)
    if cls is None:
        raise UnknownTargetError(f"unknown method {name!r}; choose one of "
                                 f"{', '.join(available_methods())}")
    return cls()


def lamp_scores(weight: torch.Tensor) -> torch.Tensor:
    r"""LAMP score of every weight of one layer, in the weight's shape.

    .. math::  \mathrm{lamp}(u) = W[u]^2 / \sum_{v \ge u} W[v]^2

    over the weights sorted ascending by magnitude (stable: ties keep flat-index order). The
    largest weight scores exactly 1; pruned (zero) weights score 0; scores are invariant to
    rescaling the layer. Pure: the input is not modified.
    """
    w = weight.detach().flatten().double()
    sq = w * w
    order = torch.sort(sq, stable=True).indices
    sorted_sq = sq[order]
    # suffix sums: denom[u] = sum_{v >= u} sorted_sq[v]
    denom = torch.flip(torch.cumsum(torch.flip(sorted_sq, [0]), 0), [0])
    s = torch.where(denom > 0, sorted_sq / torch.where(denom > 0, denom, 1.0), 0.0)
    out = torch.empty_like(s)
    out[order] = s
    return out.reshape(weight.shape)


@register_method
class Slamp(ScoreMethod):
    """LAMP scores times the layer's temporal factor lambda."""

    name = "slamp"
    uses_lambdas = True

    def scores(self, weight: torch.Tensor, lam: float) -> torch.Tensor:
        return lamp_scores(weight) * lam

    def sorted_scores(self, weight: torch.Tensor, lam: float) -> torch.Tensor:
        """Equal bit for bit to ``lamp_scores(weight) * lam`` sorted: within a layer LAMP scores
        rise with magnitude, so one sort of the magnitudes orders them (no scatter back)."""
        s = torch.sort(weight.detach().flatten().abs().cpu(), descending=True).values.double()
        s.square_()
        denom = torch.cumsum(s, 0)
        s.div_(torch.where(denom > 0, denom, 1.0))
        del denom
        if lam != 1.0:
            s.mul_(lam)
        return s.neg_()


@register_method
class Lamp(Slamp):
    """LAMP: the layer-adaptive magnitude score (SLAMP with every lambda 1)."""

    name = "lamp"
    uses_lambdas = False


@register_method
class GlobalMagnitude(ScoreMethod):
    """Global magnitude pruning: the score is ``|w|``."""

    name = "global"

    def scores(self, weight: torch.Tensor, lam: float) -> torch.Tensor:
        return weight.detach().abs().double()

    def sorted_scores(self, weight: torch.Tensor, lam: float) -> torch.Tensor:
        return torch.sort(weight.detach().flatten().abs().cpu(), descending=True).values.double(
        ).neg_()


@register_method
class Uniform(DensityMethod):
    """Every layer at the global density."""

    name = "uniform"

    def densities(self, shapes: Mapping[str, tuple[int, ...]], density: float,
                  order: Sequence[str]) -> dict[str, float]:
        return {n: density for n in order}


@register_method
class UniformPlus(DensityMethod):
    """First layer dense, last layer at most 80% pruned, the layers between uniform."""

    name = "uniform+"

    def densities(self, shapes: Mapping[str, tuple[int, ...]], density: float,
                  order: Sequence[str]) -> dict[str, float]:
        names = list(order)
        sizes = _sizes(shapes, names)
        total = sum(sizes.values())
        dens = {names[0]: 1.0}
        budget = density * total - sizes[names[0]]
        others = names[1:]
        d = _clip01(budget / max(sum(sizes[n] for n in others), 1))
        if others and d < 0.2:
            last = names[-1]
            dens[last] = min(1.0, 0.2)
            middle = others[:-1]
            d = _clip01((budget - 0.2 * sizes[last]) / max(sum(sizes[n] for n in middle), 1))
            others = middle
        dens.update({n: d for n in others})
        return dens


@register_method
class Erk(DensityMethod):
    """ERK (Evci et al. 2020): density proportional to ``sum(shape) / prod(shape)``."""

    name = "erk"

    def densities(self, shapes: Mapping[str, tuple[int, ...]], density: float,
                  order: Sequence[str]) -> dict[str, float]:
        # scaled so the total matches; layers that would exceed density 1 are made dense and
        # the rest rescaled
        names = list(order)
        sizes = _sizes(shapes, names)
        total = sum(sizes.values())
        raw = {n: sum(shapes[n]) / sizes[n] for n in names}
        dense: set[str] = set()
        while True:
            budget = density * total - sum(sizes[n] for n in dense)
            free = [n for n in names if n not in dense]
            eps = budget / max(sum(raw[n] * sizes[n] for n in free), 1e-12)
            over = [n for n in free if eps * raw[n] > 1.0]
            if not over:
                break
            dense.update(over)
        return {n: 1.0 if n in dense else eps * raw[n] for n in names}


def _sizes(shapes: Mapping[str, tuple[int, ...]], names: Sequence[str]) -> dict[str, int]:
    return {n: math.prod(shapes[n]) for n in names}


def _clip01(v: float) -> float:
    return min(max(v, 0.0), 1.0)
