"""The SpiNNaker family (SpiNNaker 1 and 2): the core-grid mapper over processing elements, with
the synapse budget its profile's ``core.synapse_encoding`` names; no section of its own."""

from __future__ import annotations

from slamp_deploy.chips.core_grid import CoreGrid
from slamp_deploy.chips.family import register_family

__all__ = ["SpiNNaker"]


@register_family
class SpiNNaker(CoreGrid):
    """SpiNNaker: ARM processing elements as cores, each layer on its own cores."""

    name = "spinnaker"
