"""slamp-deploy: SLAMP pruning of spiking neural networks for neuromorphic chips.

The subpackages follow the data flow, each importing only those below it (``make lint`` enforces
it): ``model`` (load and trace the user's network) -> ``prune`` (temporal scores, allocation,
masks, current matching, retraining) -> ``chips`` (hardware profiles and one module per chip
family) -> ``fit`` (will it fit?) -> ``measure`` (activity and energy) -> ``exporters`` and
``verify`` (NIR, ONNX, Lava, each run and compared) -> ``report`` (one typed report, rendered as
JSON, Markdown, HTML and PNG) -> ``pipeline`` (the stages of a run) -> ``cli`` (the only printer).
"""

from __future__ import annotations

__version__ = "0.1.0"
