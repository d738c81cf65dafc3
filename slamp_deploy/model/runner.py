"""Run a SpikingGraph over T time steps, with optional observers on every op call."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.nn import functional as F

from slamp_deploy.errors import UsageError
from slamp_deploy.model.graph import ADD, INPUT, NEURON_KINDS, Op, SpikingGraph, reset_state

READOUTS = ("spikes", "membrane")

#: observer(op_index, op, t, op_input, op_output) -> None; called after every op at every step.
Observer = Callable[[int, Op, int, torch.Tensor, torch.Tensor], None]


@dataclass(frozen=True, eq=False)
class RunOutput:
    """What the last op produced at every step."""

    spikes: torch.Tensor | None  # [T, N, C] output spikes (None if the last op is not spiking)
    mem: torch.Tensor  # [T, N, C] output membrane (or output current for a non-spiking readout)


def run(graph: SpikingGraph, x_seq: torch.Tensor, *,
        observers: tuple[Observer, ...] = ()) -> RunOutput:
    """Feed ``x_seq`` ``[T, N, *input_shape]`` through the graph, one step at a time.

    Neuron state is reset at the start, and lives in the snnTorch modules themselves, so the
    dynamics are snnTorch's own (reset mechanism, reset delay, clamped decays).
    """
    reset_state(graph.model)
    last = graph.output_op
    spikes: list[torch.Tensor] = []
    mems: list[torch.Tensor] = []
    for t in range(x_seq.shape[0]):
        h = step(graph, x_seq[t], t, observers)
        if last.kind in NEURON_KINDS:
            spikes.append(h.flatten(1))
            mems.append(last.module.mem.flatten(1))  # type: ignore[union-attr]
        else:
            mems.append(h.flatten(1))
    return RunOutput(spikes=torch.stack(spikes) if spikes else None, mem=torch.stack(mems))


def step(graph: SpikingGraph, h: torch.Tensor, t: int = 0,
         observers: tuple[Observer, ...] = ()) -> torch.Tensor:
    """One time step through every op (neuron state carries over in the modules).

    Observers see each op's (first) input; an add op's output is the sum of its two inputs.
    """
    chain = graph.is_chain
    x = h
    vals: list[torch.Tensor] = []
    for i, op in enumerate(graph.ops):
        if not chain:
            srcs = graph.sources(i)
            h = x if srcs[0] == INPUT else vals[srcs[0]]
        inp = h
        if op.kind == "reshape":
            h = h.reshape(h.shape[0], *op.out_shape)
        elif op.kind == ADD:
            j = graph.sources(i)[1]
            h = h + (x if j == INPUT else vals[j])
        elif op.kind in NEURON_KINDS:
            out = op.module(h)  # type: ignore[misc]
            h = out[0] if isinstance(out, tuple) else out
        else:
            h = op.module(h)  # type: ignore[misc]
        if not chain:
            vals.append(h)
        for obs in observers:
            obs(i, op, t, inp, h)
    return h


def check_readout(graph: SpikingGraph, readout: str) -> None:
    """Refuse a readout the model's last layer cannot give."""
    if readout not in READOUTS:
        raise UsageError(f"--readout {readout!r}: unknown; choose one of {', '.join(READOUTS)}")
    if readout == "spikes" and graph.output_op.kind not in NEURON_KINDS:
        raise UsageError(f"--readout spikes: the model's last layer '{graph.output_op.name}' is "
                         f"a {graph.output_op.kind}, not a spiking layer; use --readout membrane")


def logits(out: RunOutput, readout: str) -> torch.Tensor:
    """Class scores: output spike counts over time, or the last step's membrane."""
    if readout == "spikes":
        assert out.spikes is not None
        return out.spikes.sum(0)
    return out.mem[-1]


def loss(out: RunOutput, y: torch.Tensor, readout: str) -> torch.Tensor:
    """Training loss: cross-entropy on spike counts, or mean over steps of CE on the membrane."""
    if readout == "spikes":
        assert out.spikes is not None
        return F.cross_entropy(out.spikes.sum(0), y)
    return torch.stack([F.cross_entropy(m, y) for m in out.mem]).mean()
