"""Test helpers: NIR graphs built by hand in exactly the form slamp-deploy's exporter writes.

``chain_to_nir(modules, input_shape, timesteps)`` turns a list of torch/snnTorch modules
(Linear, Conv2d, Conv1d, Flatten, AvgPool2d, Leaky, Synaptic) into a NIRGraph following the
project's conventions (node names "0", "1", ...; dt = 1e-4; tau computed and stored in float64
so beta round-trips exactly in float32; metadata on the graph, neurons and synapses).
``run_torch(modules, x)`` steps the same modules for T steps and records spikes/membranes.
Imported by the exporter tests only; needs torch and snntorch (the main environment).
"""

from __future__ import annotations

import nir
import numpy as np
import snntorch as snn
import torch
from torch import nn

DT = 1e-4


def _meta_syn(w: np.ndarray) -> dict:
    kept = int(np.count_nonzero(w))
    return {"slamp.kept": kept, "slamp.total": int(w.size), "slamp.density": kept / w.size}


def _full(t: torch.Tensor, shape: tuple[int, ...]) -> np.ndarray:
    """A float32 parameter widened to float64 and broadcast to the per-neuron shape."""
    return np.broadcast_to(t.detach().double().numpy(), shape).astype(np.float64)


def _mechanism(mod: snn.SpikingNeuron) -> str:
    return {0: "subtract", 1: "zero", 2: "none"}[int(mod.reset_mechanism_val)]


def chain_to_nir(
    modules: list[nn.Module], input_shape: tuple[int, ...], timesteps: int = 8,
    encoding: str = "direct",
) -> nir.NIRGraph:
    nodes: dict[str, nir.NIRNode] = {"input": nir.Input(np.array(input_shape))}
    edges = []
    prev = "input"
    shape = tuple(input_shape)
    with torch.no_grad():
        for i, mod in enumerate(modules):
            name = str(i)
            if isinstance(mod, nn.Linear):
                w = mod.weight.detach().numpy().astype(np.float32)
                if mod.bias is not None:
                    node = nir.Affine(w, mod.bias.detach().numpy().astype(np.float32),
                                      metadata=_meta_syn(w))
                else:
                    node = nir.Linear(w, metadata=_meta_syn(w))
                shape = (mod.out_features,)
            elif isinstance(mod, (nn.Conv2d, nn.Conv1d)):
                w = mod.weight.detach().numpy().astype(np.float32)
                b = (mod.bias.detach().numpy() if mod.bias is not None
                     else np.zeros(mod.out_channels, np.float32))
                cls = nir.Conv2d if isinstance(mod, nn.Conv2d) else nir.Conv1d
                in_sp = shape[1:] if cls is nir.Conv2d else shape[1]
                node = cls(input_shape=in_sp, weight=w, stride=mod.stride, padding=mod.padding,
                           dilation=mod.dilation, groups=mod.groups, bias=b,
                           metadata=_meta_syn(w))
                shape = tuple(mod(torch.zeros((1, *shape))).shape[1:])
            elif isinstance(mod, nn.Flatten):
                node = nir.Flatten(input_type={"input": np.array(shape)}, start_dim=0)
                shape = (int(np.prod(shape)),)
            elif isinstance(mod, nn.AvgPool2d):
                node = nir.AvgPool2d(kernel_size=np.array(nn.modules.utils._pair(mod.kernel_size)),
                                     stride=np.array(nn.modules.utils._pair(mod.stride)),
                                     padding=np.array(nn.modules.utils._pair(mod.padding)))
                shape = tuple(mod(torch.zeros((1, *shape))).shape[1:])
            elif isinstance(mod, (snn.Synaptic, snn.Leaky)):
                beta = _full(mod.beta.clamp(0, 1), shape)
                thr = _full(mod.threshold, shape)
                zeros = np.zeros(shape)
                meta = {"slamp.reset_mechanism": _mechanism(mod),
                        "slamp.reset_delay": bool(mod.reset_delay)}
                if isinstance(mod, snn.Synaptic):
                    alpha = _full(mod.alpha.clamp(0, 1), shape)
                    tau_syn = DT / (1.0 - alpha)
                    tau_mem = DT / (1.0 - beta)
                    node = nir.CubaLIF(tau_syn=tau_syn, tau_mem=tau_mem, r=tau_mem / DT,
                                       v_leak=zeros, v_threshold=thr, v_reset=zeros,
                                       w_in=tau_syn / DT, metadata=meta)
                elif np.all(beta == 1.0):
                    node = nir.IF(r=np.ones(shape), v_threshold=thr, v_reset=zeros,
                                  metadata=meta)
                else:
                    tau = DT / (1.0 - beta)
                    node = nir.LIF(tau=tau, r=tau / DT, v_leak=zeros, v_threshold=thr,
                                   v_reset=zeros, metadata=meta)
            else:
                raise TypeError(f"no NIR mapping for {type(mod).__name__} in the test builder")
            nodes[name] = node
            edges.append((prev, name))
            prev = name
    nodes["output"] = nir.Output(np.array(shape))
    edges.append((prev, "output"))
    graph = nir.NIRGraph(
        nodes=nodes, edges=edges,
        metadata={"slamp.dt": DT, "slamp.timesteps": int(timesteps),
                  "slamp.exporter_version": "test", "slamp.nir_version": nir.__version__,
                  "slamp.r_convention": "r = tau/dt (snnTorch)", "slamp.encoding": encoding,
                  "slamp.readout": "spikes"},
    )
    graph.infer_types()
    return graph


def run_torch(modules: list[nn.Module], x: np.ndarray) -> dict[str, np.ndarray]:
    """Step the modules T times on x [T, N, ...]; returns spikes and membranes per neuron."""
    rec: dict[str, list[np.ndarray]] = {}
    for m in modules:
        if isinstance(m, snn.SpikingNeuron):
            m.reset_hidden() if m.init_hidden else None
    states: dict[int, tuple] = {}
    with torch.no_grad():
        for t in range(x.shape[0]):
            h = torch.from_numpy(np.ascontiguousarray(x[t], dtype=np.float32))
            for i, m in enumerate(modules):
                if isinstance(m, snn.Synaptic):
                    syn, mem = states.get(i, (torch.zeros(()), torch.zeros(())))
                    if syn.shape != h.shape:
                        syn, mem = torch.zeros_like(h), torch.zeros_like(h)
                    h, syn, mem = m(h, syn, mem)
                    states[i] = (syn, mem)
                    rec.setdefault(f"{i}.syn", []).append(syn.numpy().copy())
                elif isinstance(m, snn.Leaky):
                    mem = states.get(i, (torch.zeros(()),))[0]
                    if mem.shape != h.shape:
                        mem = torch.zeros_like(h)
                    h, mem = m(h, mem)
                    states[i] = (mem,)
                else:
                    h = m(h)
                    rec.setdefault(str(i), []).append(h.numpy().copy())
                    continue
                rec.setdefault(str(i), []).append(h.numpy().copy())
                rec.setdefault(f"{i}.mem", []).append(mem.numpy().copy())
    return {k: np.stack(v) for k, v in rec.items()}


def prune_(modules: list[nn.Module], density: float, seed: int = 0) -> None:
    """Zero a random (1 - density) fraction of every Linear/Conv weight in place."""
    # numpy's generator: torch.rand under the same seed as torch.manual_seed would replay the
    # stream that drew the init weights and prune exactly the positive (or negative) ones.
    rng = np.random.default_rng(seed + 7919)
    with torch.no_grad():
        for m in modules:
            if isinstance(m, (nn.Linear, nn.Conv2d, nn.Conv1d)):
                keep = torch.from_numpy(rng.random(tuple(m.weight.shape)) < density)
                m.weight.mul_(keep)


def example_net(beta: float = 0.9, reset: str = "zero") -> list[nn.Module]:
    """The lead's example shape: 8x8 digits, conv-conv-fc-fc, Leaky everywhere."""
    lk = lambda: snn.Leaky(beta=beta, reset_mechanism=reset)  # noqa: E731
    return [
        nn.Conv2d(1, 16, 3, padding=1), lk(),
        nn.Conv2d(16, 32, 3, stride=2, padding=1), lk(),
        nn.Flatten(), nn.Linear(512, 128), lk(),
        nn.Linear(128, 10), lk(),
    ]
