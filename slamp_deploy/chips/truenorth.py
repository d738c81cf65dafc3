"""The TrueNorth family: the core-grid mapper with a crossbar budget per core
(``core.synapse_encoding = "crossbar"``, ``core.synapses_max``); no section of its own."""

from __future__ import annotations

from slamp_deploy.chips.core_grid import CoreGrid
from slamp_deploy.chips.family import register_family

__all__ = ["TrueNorth"]


@register_family
class TrueNorth(CoreGrid):
    """IBM TrueNorth: crossbar cores, each layer on its own cores."""

    name = "truenorth"
