"""Pure-numpy reference simulator of NIR graphs, with snnTorch 1.0.0 step semantics.

``simulate(graph, x)`` runs a NIR graph (as written by slamp-deploy's exporter, or any
feed-forward NIR graph built from the supported nodes) for ``T`` steps on a batch of inputs
``x`` of shape ``[T, N, *input_shape]`` and returns every node's output ``[T, N, *shape]``:
spikes for neuron nodes, currents for synaptic nodes, plus ``"<node>.mem"`` (and
``"<node>.syn"`` for CubaLIF) with the membrane after each step as snnTorch returns it.

Arithmetic is float32 by default, in snnTorch's order of operations, so element-wise neuron
updates match a torch float32 run bit for bit; matrix products and convolutions accumulate
in numpy's order, so currents agree with torch to float32 rounding (~1e-7 relative), not
bitwise. ``dtype=np.float64`` gives a float64 run (what Lava's floating_pt uses).

Neuron semantics (node metadata ``slamp.reset_mechanism`` in {"zero", "subtract", "none"},
default "zero", and ``slamp.reset_delay``, default True, as snnTorch's default):

* LIF:  beta = 1 - dt/tau, input gain g = r*dt/tau (1 for snnTorch's r = tau/dt; the multiply
  is skipped when g == 1 so the float32 result is bitwise snnTorch's); v_leak adds
  (dt/tau)*v_leak per step. With reset flag r_t = (mem_{t-1} > thr):
  zero: mem_t = beta*((1 - r_t)*mem_{t-1}) + g*I_t;  subtract: mem_t = beta*mem_{t-1} + g*I_t
  - r_t*thr;  none: no reset.  Spike s_t = (mem_t > thr).
* IF:   as LIF with beta = 1 and g = r.
* CubaLIF: alpha = 1 - dt/tau_syn, beta = 1 - dt/tau_mem, g_syn = w_in*dt/tau_syn,
  g_mem = r*dt/tau_mem.  syn_t = alpha*syn_{t-1} + g_syn*I_t;  m = beta*mem_{t-1} + g_mem*syn_t;
  zero: mem_t = m - m*r_t (snnTorch's Synaptic zeroes the NEW membrane);  subtract: mem_t = m -
  r_t*thr.
* ``slamp.reset_delay`` False: as snnTorch, the update above is followed right after the
  spike by ``do_reset = s_t - r_t``; zero: mem_t -= do_reset*mem_t, subtract: mem_t -=
  do_reset*thr.
* A nonzero ``v_reset`` with the zero mechanism resets to v_reset instead of 0.

``dt`` comes from graph metadata ``slamp.dt`` (default 1e-4, snnTorch's convention).

Synaptic/shape nodes: Affine, Linear, Scale, Conv1d, Conv2d (stride, padding incl. "same"/
"valid", dilation, groups), AvgPool2d (count_include_pad, as torch's default), SumPool2d,
Flatten (per-sample dims, no batch). Several edges into one node are summed. Anything else, a
cycle, or a node that the input does not reach raises ExportError naming the node.

The graph check is ``nir_graph.check_nir_graph``, the per-node operations are the entries of
``nir_nodes.NODES`` and the neuron update is ``neuron_step.step``. Runs in the main env (numpy 2)
and in the Lava interpreter (Python 3.10, numpy<2): no torch, and slamp_deploy is optional (a
local ExportError stands in when it is not importable).
"""

from __future__ import annotations

from typing import Any

import numpy as np

if __package__:
    from . import nir_graph, nir_nodes
    from .neuron_step import NeuronState
else:  # loaded by path in the Lava interpreter (lava_runner puts this folder on sys.path)
    import nir_graph  # type: ignore[no-redef]
    import nir_nodes  # type: ignore[no-redef]
    from neuron_step import NeuronState  # type: ignore[no-redef]

ExportError = nir_graph.ExportError

__all__ = ["RUNTIME", "ExportError", "neuron_nodes", "simulate"]

# the report's NIR "runtime" string (report.json golden): keep it with this module's name
RUNTIME = "slamp_deploy.exporters.nir_sim (numpy, float32)"


def neuron_nodes(graph: Any) -> list[str]:
    """Names of the neuron nodes of ``graph``, in node order."""
    return [n for n, node in graph.nodes.items() if nir_nodes.is_neuron(node)]


def _input_shape(graph: Any, in_name: str, x: np.ndarray) -> tuple[int, ...]:
    try:
        in_shape = nir_graph.node_shape(graph.nodes[in_name], "output")
    except ExportError:
        in_shape = tuple(x.shape[2:])
    if x.ndim < 2 or tuple(x.shape[2:]) != in_shape:
        raise ExportError(
            f"input has shape {x.shape}; expected [T, N, {', '.join(map(str, in_shape))}]"
        )
    return in_shape


def _neuron_step(name: str, st: NeuronState, val: np.ndarray,
                 rec: dict[str, list[np.ndarray]]) -> np.ndarray:
    if val.shape[1:] != st.mem.shape[1:]:
        raise ExportError(
            f"NIR node {name!r} has neuron shape {st.mem.shape[1:]} but receives "
            f"{val.shape[1:]}: give every parameter the full per-neuron shape"
        )
    val = st.step(val)
    rec[f"{name}.mem"].append(st.mem)
    if st.syn is not None:
        rec[f"{name}.syn"].append(st.syn)
    return val


def simulate(graph: Any, x: np.ndarray, dtype: Any = np.float32) -> dict[str, np.ndarray]:
    """Run ``graph`` for ``T = x.shape[0]`` steps on ``x`` [T, N, *input_shape].

    Returns {node name: output [T, N, *shape]} for every node (spikes as 0/1 in ``dtype`` for
    neuron nodes; the Input and Output nodes included), plus ``"<node>.mem"`` (membrane after
    each step, as snnTorch returns it) and ``"<node>.syn"`` (CubaLIF synaptic current).
    """
    dtype = np.dtype(dtype).type
    order, preds = nir_graph.check_nir_graph(graph, nir_nodes.NODES)
    dt = nir_graph.graph_dt(graph)
    x = np.asarray(x)
    in_name = order[0]
    _input_shape(graph, in_name, x)
    n_steps, batch = x.shape[:2]
    states = {
        n: NeuronState(nir_nodes.neuron_params(n, graph.nodes[n], dt), batch, dtype)
        for n in order if nir_nodes.is_neuron(graph.nodes[n])
    }
    rec: dict[str, list[np.ndarray]] = {n: [] for n in order}
    for n, st in states.items():
        rec[f"{n}.mem"] = []
        if st.syn is not None:
            rec[f"{n}.syn"] = []
    for t in range(n_steps):
        out: dict[str, np.ndarray] = {}
        for n in order:
            if n == in_name:
                val = np.asarray(x[t], dtype=dtype)
            else:
                srcs = preds[n]
                val = out[srcs[0]]
                for s in srcs[1:]:
                    val = val + out[s]
                if n in states:
                    val = _neuron_step(n, states[n], val, rec)
                else:
                    val = nir_nodes.apply_node(n, graph.nodes[n], val)
            out[n] = val
            rec[n].append(val)
    return {k: np.stack(v).astype(dtype, copy=False) for k, v in rec.items()}
