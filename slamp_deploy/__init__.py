"""slamp-deploy: SLAMP pruning of spiking neural networks for neuromorphic chips."""

from __future__ import annotations

__version__ = "0.1.0"
