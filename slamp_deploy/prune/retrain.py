"""Retraining with masks fixed (BPTT through snnTorch's surrogate gradients), and evaluation.

Both run on one process or, under torchrun, on several: retraining wraps the model in
DistributedDataParallel and shards every epoch with DistributedSampler (the global batch is
``batch_size``; each rank takes ``batch_size / world_size``), evaluation shards the data and
all-reduces the number of correct answers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import nn
from torch.utils.data import DistributedSampler

from slamp_deploy.data import Dataset, encode
from slamp_deploy.distributed import (
    all_reduce_tensor,
    broadcast_buffers,
    check_batch,
    current,
    shard_indices,
)
from slamp_deploy.model.graph import SpikingGraph
from slamp_deploy.model.runner import RunOutput, logits, loss, run
from slamp_deploy.prune.masks import apply_masks, masks_fixed


@torch.no_grad()
def evaluate(graph: SpikingGraph, data: Dataset, *, timesteps: int, encoding: str, readout: str,
             batch_size: int = 256, seed: int = 0) -> float:
    """Top-1 accuracy on ``data`` (sharded across ranks under torchrun)."""
    world = current()
    full_n = len(data)
    if world.active:
        data = data.subset(shard_indices(full_n, world))
    was_training = graph.model.training
    graph.model.eval()
    gen = torch.Generator().manual_seed(seed + world.rank)
    correct = 0
    device = next(graph.model.parameters()).device
    for xb, yb in data.batches(batch_size):
        x = encode(xb.to(device), timesteps, encoding, sequence=data.sequence, generator=gen)
        pred = logits(run(graph, x), readout).argmax(1)
        correct += int((pred.cpu() == yb).sum())
    graph.model.train(was_training)
    total = int(all_reduce_tensor(torch.tensor([float(correct)])).item())
    return total / max(full_n, 1)


class _Step(nn.Module):
    """The graph's T-step run as one module, so DistributedDataParallel can wrap it."""

    def __init__(self, graph: SpikingGraph) -> None:
        super().__init__()
        self.model = graph.model
        self._graph = graph

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = run(self._graph, x)
        spikes = out.spikes if out.spikes is not None else torch.zeros_like(out.mem)
        return spikes, out.mem


def retrain(graph: SpikingGraph, masks: Mapping[str, torch.Tensor], data: Dataset, *,
            epochs: int, timesteps: int, encoding: str, readout: str, lr: float = 1e-3,
            batch_size: int = 64, seed: int = 0,
            progress: Callable[[int], None] | None = None) -> list[float]:
    """Fine-tune all parameters for ``epochs`` with pruned weights held at exactly zero.

    ``batch_size`` is the global batch. Returns the mean training loss of each epoch (averaged
    over ranks). ``progress`` advances once per local batch.
    """
    world = current()
    local_batch = check_batch(batch_size, world)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed + world.rank)  # rate-encoding draws per rank
    device = next(graph.model.parameters()).device
    step: nn.Module = _Step(graph)
    if world.active:
        step = nn.parallel.DistributedDataParallel(
            step, device_ids=[device.index] if device.type == "cuda" else None,
            broadcast_buffers=False)  # neuron states are per batch; BN is synced after training
    opt = torch.optim.Adam(graph.model.parameters(), lr=lr)
    sampler = DistributedSampler(range(len(data)), num_replicas=world.size, rank=world.rank,
                                 shuffle=True, seed=seed)
    history = []
    graph.model.train()
    with masks_fixed(graph, masks):
        for epoch in range(epochs):
            sampler.set_epoch(epoch)
            order = torch.tensor(list(sampler), dtype=torch.long)
            total = torch.zeros(2, dtype=torch.float64)
            for start in range(0, len(order), local_batch):
                idx = order[start:start + local_batch]
                xb = data.x[:, idx] if data.sequence else data.x[idx]
                yb = data.y[idx]
                x = encode(xb.to(device), timesteps, encoding, sequence=data.sequence,
                           generator=gen)
                spikes, mem = step(x)
                batch_loss = loss(RunOutput(spikes=spikes, mem=mem), yb.to(device), readout)
                opt.zero_grad(set_to_none=True)
                batch_loss.backward()
                opt.step()
                apply_masks(graph, masks)
                total += torch.tensor([batch_loss.item() * len(yb), len(yb)], dtype=torch.float64)
                if progress:
                    progress(1)
            total = all_reduce_tensor(total)
            history.append(float(total[0] / max(float(total[1]), 1.0)))
    broadcast_buffers(graph.model)
    graph.model.eval()
    return history
