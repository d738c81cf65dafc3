"""The traced graph against the user's own ``forward``: both run on the same input steps, and
their outputs must be equal bit for bit before anything is pruned.

:func:`~slamp_deploy.model.graph.trace` refuses what it can see it cannot express (in-place ops,
reordering views, a layer called twice); this check catches whatever else a ``forward`` does
that the graph does not (arithmetic on the output, a step that depends on something the tracer
never saw), so no model other than the user's is ever pruned and reported.
"""

from __future__ import annotations

import torch

from slamp_deploy.errors import ModelError
from slamp_deploy.model.graph import SpikingGraph, reset_state
from slamp_deploy.model.runner import step

__all__ = ["check_against_forward"]


def check_against_forward(graph: SpikingGraph, x_seq: torch.Tensor) -> None:
    """Run ``x_seq`` ``[T, N, *input_shape]`` through the user's ``forward`` and the graph.

    A ``forward`` that returns one step's output (or a tuple starting with it) is compared step
    by step, neuron state carried over; one that returns something else (e.g. its own loop over
    time) is compared on the output of its last layer's first call, from a fresh state.

    Raises:
        ModelError: the first step and the largest difference, and what to check.
    """
    model = graph.model
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            theirs = _their_outputs(graph, x_seq)
            if theirs is None:
                return
            per_step, outs = theirs
            reset_state(model)
            for t, mine in enumerate(outs):
                if not per_step:
                    reset_state(model)
                ours = step(graph, x_seq[t], t)
                if mine.shape != ours.shape or not torch.equal(mine, ours):
                    _refuse(graph, t, mine, ours)
    finally:
        reset_state(model)
        model.train(was_training)


def _their_outputs(graph: SpikingGraph,
                   x_seq: torch.Tensor) -> tuple[bool, list[torch.Tensor]] | None:
    """(per step?, the user's output at every step); None where there is nothing to hook."""
    model, last = graph.model, graph.output_op.module
    want = (x_seq.shape[1], *graph.output_op.out_shape)
    first_calls: list[torch.Tensor] = []
    calls = [0]

    def hook(mod: object, inputs: object, output: object) -> None:
        if calls[0] == len(first_calls):
            first_calls.append(_first(output).detach().clone())

    handle = last.register_forward_hook(hook) if last is not None else None
    try:
        reset_state(model)
        returned: list[torch.Tensor] = []
        for t in range(x_seq.shape[0]):
            out = _first(model(x_seq[t]))
            calls[0] += 1
            if isinstance(out, torch.Tensor) and tuple(out.shape) == want:
                returned.append(out.detach().clone())
    finally:
        if handle is not None:
            handle.remove()
    if len(returned) == x_seq.shape[0]:
        return True, returned
    if last is None or len(first_calls) < x_seq.shape[0]:
        return None
    # a forward with its own loop: compare each call's first pass, each from a fresh state
    first_calls.clear()
    calls[0] = 0
    handle = last.register_forward_hook(hook)
    try:
        for t in range(x_seq.shape[0]):
            reset_state(model)
            model(x_seq[t])
            calls[0] += 1
    finally:
        handle.remove()
    return False, first_calls


def _first(out: object) -> object:
    return out[0] if isinstance(out, tuple) and out else out


def _refuse(graph: SpikingGraph, t: int, mine: torch.Tensor, ours: torch.Tensor) -> None:
    if mine.shape != ours.shape:
        what = f"shape {tuple(mine.shape)} against the traced {tuple(ours.shape)}"
    else:
        diff = (mine.double() - ours.double()).abs()
        what = f"{int((diff > 0).sum())} of {diff.numel()} values differ (by up to " \
               f"{float(diff.max()):.3g})"
    raise ModelError(f"the traced model differs from the model's own forward at step {t} on a "
                     f"calibration batch ({what} at '{graph.output_op.name}'); the forward does "
                     f"something between or after its layers that slamp-deploy cannot see, so "
                     f"it would prune a different network: compute only with supported layers, "
                     f"reshapes and residual adds in forward")
