"""The built-in example: a small convolutional spiking network for scikit-learn's digits.

``build_model()`` is the factory ``slamp-deploy`` loads when no ``--model`` is given; the trained
weights ``digits_csnn.pt`` next to this file were produced by ``examples/train_digits.py``.

Each Leaky layer has its own membrane decay (beta 0.5 to 0.95) so that the layers integrate over
different time scales, which is what SLAMP's temporal layer scores respond to. All layers reset
to zero, as Loihi 2 does, so the exported Lava network can match spike for spike.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import snntorch as snn
from torch import nn

TIMESTEPS = 8
ENCODING = "direct"
READOUT = "spikes"
BETAS = (0.5, 0.7, 0.9, 0.95)


def build_model() -> nn.Sequential:
    """Conv(1->16) -> Conv(16->32, stride 2) -> FC(512->128) -> FC(128->10), Leaky after each."""

    def lif(beta: float, **kw: object) -> snn.Leaky:
        return snn.Leaky(beta=beta, threshold=1.0, init_hidden=True, reset_mechanism="zero", **kw)

    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        lif(BETAS[0]),
        nn.Conv2d(16, 32, 3, stride=2, padding=1),
        lif(BETAS[1]),
        nn.Flatten(),
        nn.Linear(512, 128),
        lif(BETAS[2]),
        nn.Linear(128, 10),
        lif(BETAS[3], output=True),
    )


def weights_path() -> Path:
    """Where the trained state_dict ships (package data)."""
    return Path(str(resources.files("slamp_deploy.examples") / "digits_csnn.pt"))
