"""VGG-style spiking networks for CIFAR-10, CIFAR-100 and CIFAR10-DVS.

The layout SNN pruning papers use: 3x3 convolutions without bias, each followed by BatchNorm and
a Leaky neuron, average pooling (NIR has no max pooling, so the network exports as it is
trained), then Flatten and one Linear classifier with a Leaky output layer (class = most output
spikes, or the last membrane with ``--readout membrane``). ``forward`` processes one time step
``[N, C, H, W]`` (snnTorch's ``init_hidden=True`` style), so slamp-deploy traces it as a chain.

Factories (no arguments, so ``--model slamp_deploy.examples.cifar_vgg:vgg11_cifar10`` works)::

    vgg11_cifar10  vgg16_cifar10  vgg11_cifar100  vgg16_cifar100
    vgg11_dvs48    vgg11_dvs64    vgg11_dvs128    (vgg11_dvs(size=48) for any of the sizes)

Every Leaky layer resets to zero (as Loihi 2 does) with beta 0.9 and threshold 1.0; train them
with ``examples/train.py``.
"""

from __future__ import annotations

import snntorch as snn
from torch import nn

BETA = 0.9
THRESHOLD = 1.0

#: channel widths, "A" = 2x2 average pooling (Simonyan & Zisserman's configurations A and D)
CONFIGS: dict[str, tuple[int | str, ...]] = {
    "vgg11": (64, "A", 128, "A", 256, 256, "A", 512, 512, "A", 512, 512, "A"),
    "vgg16": (64, 64, "A", 128, 128, "A", 256, 256, 256, "A", 512, 512, 512, "A", 512, 512, 512,
              "A"),
}


def _lif(**kw: object) -> snn.Leaky:
    return snn.Leaky(beta=BETA, threshold=THRESHOLD, init_hidden=True, reset_mechanism="zero",
                     **kw)


def vgg(config: str, *, n_classes: int, in_channels: int = 3, size: int = 32) -> nn.Sequential:
    """A spiking VGG: ``config`` is a key of :data:`CONFIGS`; input ``[N, in_channels, size,
    size]``; ``size`` must survive the five 2x2 poolings (at least 32)."""
    if config not in CONFIGS:
        raise ValueError(f"config {config!r}: choose one of {', '.join(CONFIGS)}")
    layers: list[nn.Module] = []
    c, s = in_channels, size
    for v in CONFIGS[config]:
        if v == "A":
            layers.append(nn.AvgPool2d(2))
            s //= 2
        else:
            assert isinstance(v, int)
            layers += [nn.Conv2d(c, v, 3, padding=1, bias=False), nn.BatchNorm2d(v), _lif()]
            c = v
    if s < 1:
        raise ValueError(f"size {size}: too small for five 2x2 poolings (use at least 32)")
    layers += [nn.Flatten(), nn.Linear(c * s * s, n_classes), _lif(output=True)]
    return nn.Sequential(*layers)


def vgg11_cifar10() -> nn.Sequential:
    """VGG-11 for CIFAR-10: [N, 3, 32, 32] -> 10 classes (9.2M weights)."""
    return vgg("vgg11", n_classes=10)


def vgg16_cifar10() -> nn.Sequential:
    """VGG-16 for CIFAR-10: [N, 3, 32, 32] -> 10 classes (14.7M weights)."""
    return vgg("vgg16", n_classes=10)


def vgg11_cifar100() -> nn.Sequential:
    """VGG-11 for CIFAR-100 (fine labels): [N, 3, 32, 32] -> 100 classes."""
    return vgg("vgg11", n_classes=100)


def vgg16_cifar100() -> nn.Sequential:
    """VGG-16 for CIFAR-100 (fine labels): [N, 3, 32, 32] -> 100 classes."""
    return vgg("vgg16", n_classes=100)


def vgg11_dvs(size: int = 48) -> nn.Sequential:
    """VGG-11 for CIFAR10-DVS frames: [N, 2, size, size] (OFF/ON counts) -> 10 classes."""
    return vgg("vgg11", n_classes=10, in_channels=2, size=size)


def vgg11_dvs48() -> nn.Sequential:
    """``vgg11_dvs(48)``, for ``cifar10-dvs:PATH?size=48``."""
    return vgg11_dvs(48)


def vgg11_dvs64() -> nn.Sequential:
    """``vgg11_dvs(64)``, for ``cifar10-dvs:PATH?size=64``."""
    return vgg11_dvs(64)


def vgg11_dvs128() -> nn.Sequential:
    """``vgg11_dvs(128)``, for the full 128x128 sensor."""
    return vgg11_dvs(128)


#: (data set kind, --model name of examples/train.py) -> factory name in this module
FACTORIES: dict[tuple[str, str], str] = {
    ("cifar10", "vgg11"): "vgg11_cifar10",
    ("cifar10", "vgg16"): "vgg16_cifar10",
    ("cifar100", "vgg11"): "vgg11_cifar100",
    ("cifar100", "vgg16"): "vgg16_cifar100",
    ("cifar10-dvs", "vgg11"): "vgg11_dvs{size}",
}
