"""The other frameworks' side of the NIR interop tests, run by ``.venv-interop/bin/python``
(norse, sinabs, rockpool, spyx and snnTorch live there; their pins conflict with the main env).

    python frameworks.py export-all OUT   build every case's network in its framework, write
        OUT/CASE/graph.nir with the framework's own NIR exporter, OUT/CASE/x.npy (input
        [T, N, ...]) and OUT/CASE/y.npy (the framework's own simulation, [T, N, ...])
    python frameworks.py import-all DIR   read every DIR/NAME/graph.nir with each framework's
        own importer, run it on DIR/NAME/x.npy and write DIR/NAME/FRAMEWORK.npy (or .txt with
        the importer's failure); for snnTorch, sinabs and spyx also FRAMEWORK-undone.npy, the same
        import with the framework's departures from NIR's equations undone (UNDONE)

Every network is small and seeded, so a run takes seconds. Nothing here imports slamp_deploy.
"""

from __future__ import annotations

import logging
import sys
import warnings
from pathlib import Path

import nir
import numpy as np
import torch

warnings.filterwarnings("ignore")
logging.disable(logging.WARNING)
T, N = 12, 4


def _spikes(shape: tuple[int, ...], p: float = 0.4, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.random((T, N, *shape)) < p).astype(np.float32)


def _uniform(layer: torch.nn.Module, lo: float, hi: float) -> None:
    with torch.no_grad():
        layer.weight.uniform_(lo, hi)
        if getattr(layer, "bias", None) is not None:
            layer.bias.zero_()


# ------------------------------------------------------------------------------ snnTorch


def _snntorch_net(neuron: str) -> torch.nn.Module:
    import snntorch as snn

    torch.manual_seed(0)
    l1, l2 = torch.nn.Linear(6, 8), torch.nn.Linear(8, 3)
    _uniform(l1, -0.3, 0.9)
    _uniform(l2, -0.3, 0.9)
    if neuron == "lif":
        # per-neuron parameters: with scalars export_to_nir fails type inference
        n1 = snn.Leaky(beta=torch.full((8,), 0.8), threshold=torch.ones(8),
                       reset_mechanism="zero", init_hidden=True)
        n2 = snn.Leaky(beta=torch.full((3,), 0.7), threshold=torch.ones(3),
                       reset_mechanism="zero", init_hidden=True)
    else:
        n1 = snn.Synaptic(alpha=torch.full((8,), 0.6), beta=torch.full((8,), 0.8),
                          threshold=torch.ones(8), reset_mechanism="zero", init_hidden=True)
        n2 = snn.Synaptic(alpha=torch.full((3,), 0.5), beta=torch.full((3,), 0.7),
                          threshold=torch.ones(3), reset_mechanism="zero", init_hidden=True)
    return torch.nn.Sequential(l1, n1, l2, n2)


def _run_torch_steps(net: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    out = []
    with torch.no_grad():
        for t in range(x.shape[0]):
            y = net(torch.from_numpy(x[t]))
            out.append((y[0] if isinstance(y, tuple) else y).numpy())
    return np.stack(out)


def export_snntorch(neuron: str) -> tuple[nir.NIRGraph, np.ndarray, np.ndarray]:
    from snntorch import utils
    from snntorch.export_nir import export_to_nir

    net = _snntorch_net(neuron)
    x = _spikes((6,))
    g = export_to_nir(net, torch.zeros(6))  # [1, 6] fails type inference (batch dim)
    utils.reset(net)
    return g, x, _run_torch_steps(net, x)


# ------------------------------------------------------------------------------ norse


def export_norse(dt: float) -> tuple[nir.NIRGraph, np.ndarray, np.ndarray]:
    import norse.torch as norse
    from norse.torch.module.lif_box import LIFBoxCell, LIFBoxParameters

    torch.manual_seed(0)
    l1, l2 = torch.nn.Linear(6, 8), torch.nn.Linear(8, 3)
    # tau = 5 steps of dt either way (tau_mem_inv = 1 / (5 dt))
    _uniform(l1, -0.5, 2.5)
    _uniform(l2, -0.5, 2.5)
    inv = torch.tensor(1.0 / (5 * dt))
    net = norse.SequentialState(l1, LIFBoxCell(LIFBoxParameters(tau_mem_inv=inv), dt=dt),
                                l2, LIFBoxCell(LIFBoxParameters(tau_mem_inv=inv), dt=dt))
    g = norse.to_nir(net, torch.zeros(1, 6), dt=dt)
    x = _spikes((6,))
    state, out = None, []
    with torch.no_grad():
        for t in range(T):
            y, state = net(torch.from_numpy(x[t]), state)
            out.append(y.numpy())
    return g, x, np.stack(out)


# ------------------------------------------------------------------------------ sinabs


def export_sinabs() -> tuple[nir.NIRGraph, np.ndarray, np.ndarray]:
    import sinabs.layers as sl
    from sinabs.activation import MembraneReset, SingleSpike
    from sinabs.nir import to_nir

    torch.manual_seed(0)
    conv, lin = torch.nn.Conv2d(1, 2, 3, padding=1, bias=False), torch.nn.Linear(2 * 3 * 3, 3)
    _uniform(conv, -0.2, 0.8)
    _uniform(lin, -0.2, 0.6)

    def iaf() -> torch.nn.Module:
        return sl.IAFSqueeze(batch_size=N, spike_fn=SingleSpike, reset_fn=MembraneReset())

    net = torch.nn.Sequential(conv, iaf(), sl.SumPool2d(2), torch.nn.Flatten(), lin, iaf())
    x = _spikes((1, 6, 6))
    g = to_nir(net, torch.zeros(N, 1, 6, 6))
    # sinabs leaves the conv's input_shape and the types unset, which nir.write refuses
    g.nodes["0"].input_shape = np.array([6, 6])
    g.infer_types()
    for m in net.modules():
        if isinstance(m, sl.IAFSqueeze):
            m.reset_states()
    with torch.no_grad():  # Squeeze layers take [N*T, ...] batch-major: sample n's T steps
        y = net(torch.from_numpy(np.ascontiguousarray(x.transpose(1, 0, 2, 3, 4)))
                .reshape(N * T, 1, 6, 6))
    return g, x, y.reshape(N, T, 3).numpy().transpose(1, 0, 2)


# ------------------------------------------------------------------------------ spyx


def export_spyx(kind: str) -> tuple[nir.NIRGraph, np.ndarray, np.ndarray]:
    import jax.numpy as jnp
    from flax import nnx
    from spyx import nn as snn
    from spyx.nir import to_nir

    rngs = nnx.Rngs(0)
    l1, l2 = nnx.Linear(6, 8, rngs=rngs), nnx.Linear(8, 3, rngs=rngs)
    rng = np.random.default_rng(0)
    l1.kernel[...] = jnp.array(rng.uniform(-0.3, 0.9, (6, 8)), jnp.float32)
    l2.kernel[...] = jnp.array(rng.uniform(-0.3, 0.9, (8, 3)), jnp.float32)
    cls = snn.PSU_LIF if kind == "psu" else snn.LIF
    n1, n2 = cls((8,), beta=0.8, rngs=rngs), cls((3,), beta=0.7, rngs=rngs)
    model = snn.Sequential(l1, n1, l2, n2)
    g = to_nir(model, {"input": np.array([6])}, {"output": np.array([3])}, dt=1)
    x = _spikes((6,))
    from spyx.nn import run

    y, _ = run(model, jnp.asarray(x))
    return g, x, np.asarray(y)


# ------------------------------------------------------------------------------ rockpool


def export_rockpool() -> tuple[nir.NIRGraph, np.ndarray, np.ndarray]:
    from rockpool.nn.combinators import Sequential
    from rockpool.nn.modules import LIFTorch, LinearTorch
    from rockpool.nn.modules.torch.nir import to_nir

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    dt = 1e-3

    def weight(i: int, o: int) -> torch.Tensor:
        return torch.tensor(rng.uniform(-0.3, 0.9, (i, o)), dtype=torch.float32)

    net = Sequential(
        LinearTorch((6, 8), weight=weight(6, 8)),
        LIFTorch(8, tau_mem=0.02, tau_syn=0.01, dt=dt, max_spikes_per_dt=1),
        LinearTorch((8, 3), weight=weight(8, 3)),
        LIFTorch(3, tau_mem=0.02, tau_syn=0.01, dt=dt, max_spikes_per_dt=1))
    g = to_nir(net, torch.zeros(1, 1, 6))
    x = _spikes((6,))
    with torch.no_grad():  # rockpool takes [batch, time, channels]
        y, _, _ = net(torch.from_numpy(np.ascontiguousarray(x.transpose(1, 0, 2))))
    return g, x, y.numpy().transpose(1, 0, 2)


EXPORTS = {
    "snntorch-lif": lambda: export_snntorch("lif"),
    "snntorch-cubalif": lambda: export_snntorch("cubalif"),
    "norse-lif-dt1": lambda: export_norse(1.0),
    "norse-lif-dt1e-3": lambda: export_norse(1e-3),
    "sinabs-if-conv-sumpool": export_sinabs,
    "spyx-li-threshold": lambda: export_spyx("psu"),
    "spyx-lif": lambda: export_spyx("lif"),
    "rockpool-cubalif": export_rockpool,
}


# ------------------------------------------------------------------------------ importers


def import_snntorch(g: nir.NIRGraph, x: np.ndarray) -> np.ndarray:
    from snntorch import utils
    from snntorch.import_nir import import_from_nir

    net = import_from_nir(g)
    utils.reset(net)
    return _run_torch_steps(net, x)


def import_norse(g: nir.NIRGraph, x: np.ndarray) -> np.ndarray:
    import norse.torch as norse

    net = norse.from_nir(g, dt=float(g.metadata.get("slamp.dt", 1e-3)))
    state, out = None, []
    with torch.no_grad():
        for t in range(x.shape[0]):
            y, state = net(torch.from_numpy(x[t]), state)
            out.append(y.numpy())
    return np.stack(out)


def import_sinabs(g: nir.NIRGraph, x: np.ndarray) -> np.ndarray:
    from sinabs.nir import from_nir

    return _run_sinabs(from_nir(g, batch_size=x.shape[1]), x)


def _run_sinabs(net: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    """Squeeze layers take [N*T, ...] batch-major (sinabs/layers/reshape.py:80: sample n's T
    steps in a row), so [T, N, ...] goes in as that and comes back as [T, N, ...]."""
    t, n = x.shape[:2]
    with torch.no_grad():
        y = net(torch.from_numpy(np.ascontiguousarray(np.swapaxes(x, 0, 1)))
                .reshape(n * t, *x.shape[2:]))
    y = y[0] if isinstance(y, tuple) else y
    return np.swapaxes(y.numpy().reshape(n, t, *y.shape[1:]), 0, 1)


def import_spyx(g: nir.NIRGraph, x: np.ndarray) -> np.ndarray:
    import jax.numpy as jnp
    from spyx.nir import from_nir

    if x.ndim == 5:  # spyx convolves channels-last: [T, N, H, W, C]
        x = np.ascontiguousarray(x.transpose(0, 1, 3, 4, 2))
    _, y = from_nir(g, jnp.asarray(x), dt=float(g.metadata.get("slamp.dt", 1.0)))
    return np.asarray(y)


def import_rockpool(g: nir.NIRGraph, x: np.ndarray) -> np.ndarray:
    from rockpool.nn.modules.torch.nir import from_nir

    net = from_nir(g)
    with torch.no_grad():  # nirtorch's graph executor returns (output, state)
        y = net(torch.from_numpy(np.ascontiguousarray(np.swapaxes(x, 0, 1))))[0]
    return np.swapaxes(y.numpy(), 0, 1)


IMPORTS = {"snntorch": import_snntorch, "norse": import_norse, "sinabs": import_sinabs,
           "spyx": import_spyx, "rockpool": import_rockpool}


# ------------------------------------------------------------------ importers, departures undone
# Each runs the framework's own importer and simulator with only its documented departures from
# NIR's equations undone (the measurement behind each consumer row's "departure"); the file's
# dt is slamp.dt, the neurons' r = tau/dt (unit gain, which both frameworks apply).


def import_snntorch_undone(g: nir.NIRGraph, x: np.ndarray) -> np.ndarray:
    """snnTorch with NIR's IF: no leak (beta = 1, not 0.9), reset to zero (not Leaky's default
    subtract) and a module that returns spikes only (init_hidden=True; snntorch/import_nir.py:
    226-240 builds Leaky(beta=0.9, init_hidden=False), whose (spike, membrane) tuple the next
    layer cannot take)."""
    import snntorch as snn
    import snntorch.import_nir as imp

    original = imp._nir_to_snntorch_module

    def patched(node, hack_w_scale=True, init_hidden=False):
        if isinstance(node, nir.IF):
            return snn.Leaky(beta=1.0, threshold=float(np.unique(node.v_threshold)[0]),
                             reset_mechanism="zero", reset_delay=False, init_hidden=True)
        return original(node, hack_w_scale=hack_w_scale, init_hidden=init_hidden)

    imp._nir_to_snntorch_module = patched
    try:
        return import_snntorch(g, x)
    finally:
        imp._nir_to_snntorch_module = original


def import_sinabs_undone(g: nir.NIRGraph, x: np.ndarray) -> np.ndarray:
    """sinabs with NIR's LIF: decay 1 - dt/tau (not exp(-1/tau) in steps, sinabs/layers/
    lif.py:121), one spike per step and reset to zero (not the layer defaults MultiSpike and
    MembraneSubtract, sinabs/nir.py:100; for IF the same and no floor at -v_threshold,
    sinabs/nir.py:86-92), and v_leak checked with np.any (``any(node.v_leak)`` at
    sinabs/nir.py:97 fails on a LIF of more than one dimension)."""
    import sinabs.layers as sl
    from sinabs.activation import MembraneReset, SingleSpike
    from sinabs.nir import from_nir

    dt = float(g.metadata["slamp.dt"])
    beta = {}
    for name, node in g.nodes.items():
        if isinstance(node, nir.LIF):
            beta[name] = torch.from_numpy(1.0 - dt / np.asarray(node.tau, dtype=np.float64))
            node.v_leak = np.asarray(node.v_leak).reshape(-1)  # only checked, never used
    net = from_nir(g, batch_size=x.shape[1])
    for name, m in net.named_modules():
        if isinstance(m, sl.LIFSqueeze):
            m.train_alphas = True  # alpha_mem is then used as given (sinabs/layers/lif.py:118)
            m.alpha_mem = torch.nn.Parameter(beta[name.split(".")[-1]].float())
            m.alpha_syn = None
            m.spike_fn, m.reset_fn = SingleSpike, MembraneReset()
        if isinstance(m, sl.IAFSqueeze):  # sinabs/nir.py:86-92: also min_v_mem = -v_threshold
            m.spike_fn, m.reset_fn, m.min_v_mem = SingleSpike, MembraneReset(), None
    return _run_sinabs(net, x)


def import_spyx_undone(g: nir.NIRGraph, x: np.ndarray) -> np.ndarray:
    """spyx with NIR's LIF, IF and CubaLIF: spike on the updated membrane and reset it to zero
    (spyx's LIF, IF and CuBaLIF spike on the membrane before the update and subtract the
    threshold, spyx/nn.py:215-216, 167-168 and 451-454),
    and Flatten in NIR's channels-first order (spyx runs channels-last and flattens that,
    spyx/nn.py:758, so the Affine after a conv reads a permuted vector)."""
    import jax.numpy as jnp
    from spyx import nn as snn

    def lif_step(self, x, V):
        V = jnp.clip(self.beta[...], 0, 1) * V + x
        spikes = (self.threshold < V).astype(V.dtype)
        return spikes, V * (1 - spikes)

    def if_step(self, x, V):
        V = V + x
        spikes = (self.threshold < V).astype(V.dtype)
        return spikes, V * (1 - spikes)

    def cuba_step(self, x, VI):
        V, current = jnp.split(VI, 2, -1)
        current = jnp.clip(self.alpha[...], 0, 1) * current + x
        V = jnp.clip(self.beta[...], 0, 1) * V + current
        spikes = (self.threshold < V).astype(V.dtype)
        return spikes, jnp.concatenate([V * (1 - spikes), current], axis=-1)

    def flatten(self, x):
        if x.ndim == 4:  # [N, H, W, C] -> NIR's [N, C, H, W] order
            x = x.transpose(0, 3, 1, 2)
        return x.reshape(x.shape[0], -1)

    classes = (snn.LIF, snn.IF, snn.CuBaLIF, snn.Flatten)
    saved = [c.__call__ for c in classes]
    for c, step in zip(classes, (lif_step, if_step, cuba_step, flatten), strict=True):
        c.__call__ = step
    try:
        return import_spyx(g, x)
    finally:
        for c, step in zip(classes, saved, strict=True):
            c.__call__ = step


UNDONE = {"snntorch": import_snntorch_undone, "sinabs": import_sinabs_undone,
          "spyx": import_spyx_undone}


def _plain(g: nir.NIRGraph) -> nir.NIRGraph:
    """Torch tensors in a graph (norse and sinabs leave them) as numpy, so nir.write works."""
    for node in g.nodes.values():
        for k, v in list(vars(node).items()):
            if isinstance(v, torch.Tensor):
                setattr(node, k, v.detach().numpy())
    return g


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"[:200]


def export_all(out: Path) -> None:
    """Every case of EXPORTS into OUT/CASE/ (graph.nir, x.npy, y.npy), or OUT/CASE/error.txt
    with the producer's failure."""
    for case, make in EXPORTS.items():
        d = out / case
        d.mkdir(parents=True, exist_ok=True)
        try:
            g, x, y = make()
            # gzip cannot hold the scalar datasets norse writes
            nir.write(str(d / "graph.nir"), _plain(g), compression=None)
        except Exception as e:  # the producer's own failure is a result
            (d / "error.txt").write_text(_first_line(e))
            continue
        np.save(d / "x.npy", x)
        np.save(d / "y.npy", np.asarray(y, dtype=np.float32))


def import_all(folder: Path) -> None:
    """For every FOLDER/NAME/graph.nir and x.npy: each framework's output spikes in
    FOLDER/NAME/FRAMEWORK.npy, or its failure in FOLDER/NAME/FRAMEWORK.txt."""
    for d in sorted(p for p in folder.iterdir() if (p / "graph.nir").is_file()):
        x = np.load(d / "x.npy")
        runs = [(name, run) for name, run in IMPORTS.items()]
        runs += [(f"{name}-undone", run) for name, run in UNDONE.items()]
        for name, run in runs:
            try:
                y = run(nir.read(str(d / "graph.nir")), x)
                np.save(d / f"{name}.npy", np.asarray(y, dtype=np.float32))
            except Exception as e:
                (d / f"{name}.txt").write_text(_first_line(e))


def main(argv: list[str]) -> int:
    if argv[0] == "export-all":
        export_all(Path(argv[1]))
        return 0
    if argv[0] == "import-all":
        import_all(Path(argv[1]))
        return 0
    raise SystemExit(f"unknown command {argv[0]!r}")


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
