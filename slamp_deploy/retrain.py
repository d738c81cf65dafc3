"""Retraining with masks fixed (BPTT through snnTorch's surrogate gradients), and evaluation."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch

from .data import Dataset, encode
from .graph import SpikingGraph
from .prune import apply_masks, masks_fixed
from .runner import logits, loss, run


@torch.no_grad()
def evaluate(graph: SpikingGraph, data: Dataset, *, timesteps: int, encoding: str, readout: str,
             batch_size: int = 256, seed: int = 0) -> float:
    """Top-1 accuracy on ``data``."""
    was_training = graph.model.training
    graph.model.eval()
    gen = torch.Generator().manual_seed(seed)
    correct = 0
    device = next(graph.model.parameters()).device
    for xb, yb in data.batches(batch_size):
        x = encode(xb.to(device), timesteps, encoding, sequence=data.sequence, generator=gen)
        pred = logits(run(graph, x), readout).argmax(1)
        correct += int((pred.cpu() == yb).sum())
    graph.model.train(was_training)
    return correct / max(len(data), 1)


def retrain(graph: SpikingGraph, masks: Mapping[str, torch.Tensor], data: Dataset, *,
            epochs: int, timesteps: int, encoding: str, readout: str, lr: float = 1e-3,
            batch_size: int = 64, seed: int = 0,
            progress: Callable[[int], None] | None = None) -> list[float]:
    """Fine-tune all parameters for ``epochs`` with pruned weights held at exactly zero.

    Returns the mean training loss of each epoch. ``progress`` advances once per batch.
    """
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    device = next(graph.model.parameters()).device
    opt = torch.optim.Adam(graph.model.parameters(), lr=lr)
    history = []
    graph.model.train()
    with masks_fixed(graph, masks):
        for _ in range(epochs):
            total, n = 0.0, 0
            for xb, yb in data.batches(batch_size, shuffle=True, generator=gen):
                x = encode(xb.to(device), timesteps, encoding, sequence=data.sequence,
                           generator=gen)
                out = run(graph, x)
                batch_loss = loss(out, yb.to(device), readout)
                opt.zero_grad(set_to_none=True)
                batch_loss.backward()
                opt.step()
                apply_masks(graph, masks)
                total += batch_loss.item() * len(yb)
                n += len(yb)
                if progress:
                    progress(1)
            history.append(total / max(n, 1))
    graph.model.eval()
    return history
