"""ResNet-style spiking networks for CIFAR-10, CIFAR-100 and CIFAR10-DVS.

The residual layout of SNN pruning papers (the spiking ResNet-19 of Zheng et al., "Going deeper
with directly-trained larger spiking neural networks", AAAI 2021, used by SLAMP and other
pruning work; and a ResNet-18): a 3x3 stem convolution, then basic blocks

    out = lif2( bn2(conv2( lif1(bn1(conv1(x))) )) + shortcut(x) )

where the shortcut is the block's input itself, or a 1x1 convolution with BatchNorm when the
block changes the width or the resolution. The sum is taken on the currents, before the second
neuron layer (so the block's output is spikes, and NIR expresses the join as two edges into one
LIF node). Convolutions have no bias; pooling is average pooling (NIR has no max pooling); the
head is a global average pool, Flatten, and Linear layers with Leaky neurons.

``forward`` processes one time step ``[N, C, H, W]`` (snnTorch's ``init_hidden=True`` style);
slamp-deploy traces the residual adds from it (a DAG, not a chain).

Factories (no arguments, so ``--model slamp_deploy.examples.cifar_resnet:resnet19_cifar10``)::

    resnet19_cifar10  resnet18_cifar10  resnet19_cifar100  resnet18_cifar100
    resnet19_dvs48    resnet19_dvs64    (resnet19_dvs(size=48) for any size divisible by 4)
    resnet_tiny_digits  (a miniature trained on scikit-learn's digits, weights included)

Every Leaky layer resets to zero with beta 0.9 and threshold 1.0, as in examples/cifar_vgg.py;
train them with ``examples/train.py --model resnet19``.
"""

from __future__ import annotations

from importlib import resources

import snntorch as snn
import torch
from torch import nn

BETA = 0.9
THRESHOLD = 1.0

#: stem width, then one (width, blocks, stride) per stage, then the hidden width of the head
#: (0: one Linear straight to the classes)
CONFIGS: dict[str, tuple[int, tuple[tuple[int, int, int], ...], int]] = {
    # Zheng et al. 2021, ResNet-19: 128 | 3 x 128, 3 x 256 /2, 2 x 512 /2 | avgpool, fc 256, fc
    "resnet19": (128, ((128, 3, 1), (256, 3, 2), (512, 2, 2)), 256),
    # He et al. 2016, CIFAR ResNet-18: 64 | 2 x 64, 2 x 128 /2, 2 x 256 /2, 2 x 512 /2 | fc
    "resnet18": (64, ((64, 2, 1), (128, 2, 2), (256, 2, 2), (512, 2, 2)), 0),
}


def _lif(**kw: object) -> snn.Leaky:
    return snn.Leaky(beta=BETA, threshold=THRESHOLD, init_hidden=True, reset_mechanism="zero",
                     **kw)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with BatchNorm; the shortcut's current joins before ``lif2``."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.lif1 = _lif()
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut: nn.Sequential | None = None
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False),
                                          nn.BatchNorm2d(c_out))
        self.lif2 = _lif()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.lif1(self.bn1(self.conv1(x)))))
        out = out + (x if self.shortcut is None else self.shortcut(x))
        return self.lif2(out)


class SpikingResNet(nn.Module):
    """Stem, residual stages, global average pool and a Linear head (one time step)."""

    def __init__(self, stem: int, stages: tuple[tuple[int, int, int], ...], hidden: int, *,
                 n_classes: int, in_channels: int = 3, size: int = 32) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, stem, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(stem), _lif())
        blocks: list[nn.Module] = []
        c, s = stem, size
        for width, n, stride in stages:
            for k in range(n):
                st = stride if k == 0 else 1
                if s % st:
                    raise ValueError(f"size {size}: not divisible by the strides of the stages")
                blocks.append(BasicBlock(c, width, st))
                c, s = width, s // st
        self.layers = nn.Sequential(*blocks)
        self.pool = nn.AvgPool2d(s)  # global average pooling (a fixed kernel: NIR has no adaptive)
        head: list[nn.Module] = [nn.Flatten()]
        if hidden:
            head += [nn.Linear(c, hidden), _lif()]
            c = hidden
        head += [nn.Linear(c, n_classes), _lif(output=True)]
        self.head = nn.Sequential(*head)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.head(self.pool(self.layers(self.stem(x))))


def resnet(config: str, *, n_classes: int, in_channels: int = 3, size: int = 32
           ) -> SpikingResNet:
    """A spiking ResNet: ``config`` is a key of :data:`CONFIGS`; input ``[N, in_channels, size,
    size]``."""
    if config not in CONFIGS:
        raise ValueError(f"config {config!r}: choose one of {', '.join(CONFIGS)}")
    stem, stages, hidden = CONFIGS[config]
    return SpikingResNet(stem, stages, hidden, n_classes=n_classes, in_channels=in_channels,
                         size=size)


def resnet_tiny(n_classes: int = 10, in_channels: int = 1, size: int = 8) -> SpikingResNet:
    """A two-stage miniature (16 | 16, 32 /2 | fc) with both kinds of shortcut (identity, and
    1x1 conv with BatchNorm), for tests and CPU experiments on scikit-learn's 8x8 digits."""
    return SpikingResNet(16, ((16, 1, 1), (32, 1, 2)), 0, n_classes=n_classes,
                         in_channels=in_channels, size=size)


def resnet_tiny_digits() -> SpikingResNet:
    """:func:`resnet_tiny` with the weights trained on digits that ship beside this file
    (``examples/train_digits.py --arch resnet``; direct encoding, 8 steps, spike-count readout):
    ``slamp-deploy --model slamp_deploy.examples.cifar_resnet:resnet_tiny_digits``."""
    from slamp_deploy.model.loader import load_weights

    model = resnet_tiny()
    load_weights(model, str(resources.files("slamp_deploy.examples") / "digits_resnet.pt"))
    return model


def resnet19_cifar10() -> SpikingResNet:
    """ResNet-19 for CIFAR-10: [N, 3, 32, 32] -> 10 classes (12.7M weights)."""
    return resnet("resnet19", n_classes=10)


def resnet18_cifar10() -> SpikingResNet:
    """ResNet-18 for CIFAR-10: [N, 3, 32, 32] -> 10 classes (11.2M weights)."""
    return resnet("resnet18", n_classes=10)


def resnet19_cifar100() -> SpikingResNet:
    """ResNet-19 for CIFAR-100 (fine labels): [N, 3, 32, 32] -> 100 classes."""
    return resnet("resnet19", n_classes=100)


def resnet18_cifar100() -> SpikingResNet:
    """ResNet-18 for CIFAR-100 (fine labels): [N, 3, 32, 32] -> 100 classes."""
    return resnet("resnet18", n_classes=100)


def resnet19_dvs(size: int = 48) -> SpikingResNet:
    """ResNet-19 for CIFAR10-DVS frames: [N, 2, size, size] (OFF/ON counts) -> 10 classes."""
    return resnet("resnet19", n_classes=10, in_channels=2, size=size)


def resnet19_dvs48() -> SpikingResNet:
    """``resnet19_dvs(48)``, for ``cifar10-dvs:PATH?size=48``."""
    return resnet19_dvs(48)


def resnet19_dvs64() -> SpikingResNet:
    """``resnet19_dvs(64)``, for ``cifar10-dvs:PATH?size=64``."""
    return resnet19_dvs(64)


def resnet19_dvs128() -> SpikingResNet:
    """``resnet19_dvs(128)``, for the full 128x128 sensor."""
    return resnet19_dvs(128)


#: (data set kind, --model name of examples/train.py) -> factory name in this module
FACTORIES: dict[tuple[str, str], str] = {
    ("cifar10", "resnet19"): "resnet19_cifar10",
    ("cifar10", "resnet18"): "resnet18_cifar10",
    ("cifar100", "resnet19"): "resnet19_cifar100",
    ("cifar100", "resnet18"): "resnet18_cifar100",
    ("cifar10-dvs", "resnet19"): "resnet19_dvs{size}",
}
