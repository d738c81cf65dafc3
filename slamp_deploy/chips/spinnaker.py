"""The SpiNNaker family (SpiNNaker 1 and 2): the core-grid mapper with a counted synapse budget
per processing element; no section of its own."""

from __future__ import annotations

from slamp_deploy.chips.core_grid import CoreGrid
from slamp_deploy.chips.family import register_family

__all__ = ["SpiNNaker"]


@register_family
class SpiNNaker(CoreGrid):
    """SpiNNaker: ARM processing elements as cores, each layer on its own cores."""

    name = "spinnaker"
