"""The NIR interop measurements, both directions, as rows of ``tests/interop/results.json``.

Producer -> slamp-deploy: ``frameworks.py export-all`` (in ``.venv-interop``) writes each
framework's own NIR export of a small seeded network with that framework's own simulation of
it; slamp-deploy reads the file at the producer's dt (``read_nir(dt=...)``), runs the model it
built and compares the output spikes. Where a producer's exporter departs from NIR's equations,
the row's ``corrected`` entry reads the file again with that one departure undone (a patched
copy) and must then agree exactly: that is the measurement behind each documented departure.

slamp-deploy -> consumer: two small pruned networks exported by ``to_nir`` (and in the norse
form, ``for_consumer``); ``frameworks.py import-all`` reads them with each framework's own
importer and runs them; their output spikes are compared with ``nir_sim`` of the default export
(our reference). Where a consumer's importer departs from NIR's equations
(``CONSUMER_DEPARTURES``, with file and line), ``corrected`` is the same import with that
departure undone on the consumer's side (``frameworks.UNDONE``), which must then agree
exactly. ``scripts/interop_results.py`` writes results.json; ``test_frameworks.py`` recomputes
every row and compares.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nir
import numpy as np
import snntorch as snn
import torch
from slamp_deploy.exporters import nir_sim
from slamp_deploy.exporters.nir_export import for_consumer, to_nir, write_nir
from torch import nn

from slamp_deploy.errors import ModelError
from slamp_deploy.model.graph import trace
from slamp_deploy.model.nir_import import read_nir
from slamp_deploy.model.runner import run

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
RESULTS = HERE / "results.json"
FRAMEWORKS = HERE / "frameworks.py"


def interop_python() -> Path | None:
    """The interpreter with the other frameworks (``make interop-env``), or None."""
    p = Path(os.environ.get("SLAMP_INTEROP_PYTHON", ROOT / ".venv-interop" / "bin" / "python"))
    return p if p.is_file() else None


def _call(command: str, folder: Path) -> None:
    py = interop_python()
    assert py is not None, "no .venv-interop: run `make interop-env`"
    subprocess.run([str(py), str(FRAMEWORKS), command, str(folder)], check=True,
                   timeout=600, capture_output=True, text=True)


# ---------------------------------------------------------------------------- departures


def _scale_tau_by_1_over_dt(g: nir.NIRGraph, dt: float) -> None:
    for node in g.nodes.values():
        if isinstance(node, nir.LIF):
            node.tau = np.asarray(node.tau) / dt


def _r_is_tau_over_dt(g: nir.NIRGraph, dt: float) -> None:
    for node in g.nodes.values():
        if isinstance(node, (nir.LI, nir.LIF)):
            node.r = np.asarray(node.tau) / dt


def _reset_one_step_late(g: nir.NIRGraph, dt: float) -> None:
    for node in g.nodes.values():
        if isinstance(node, nir.CubaLIF):
            node.metadata = {"slamp.reset_mechanism": "zero", "slamp.reset_delay": True}


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Case:
    """A producer's export: its framework, node types, dt, and the departure (if any) its
    exporter makes from NIR's equations, with the patch that undoes it."""

    name: str
    framework: str
    nodes: str
    dt: float
    departure: str = ""
    undo: Callable[[nir.NIRGraph, float], None] | None = None


CASES = (
    Case(name="snntorch-lif", framework="snnTorch 1.0.0", nodes="Affine, LIF", dt=1e-4),
    Case(name="snntorch-cubalif", framework="snnTorch 1.0.0", nodes="Affine, CubaLIF",
         dt=1e-4, departure="Synaptic resets one step late (reset_delay=True); the file "
         "does not say so", undo=_reset_one_step_late),
    Case(name="norse-lif-dt1", framework="norse 1.1.0", nodes="Affine, LIF", dt=1.0),
    Case(name="norse-lif-dt1e-3", framework="norse 1.1.0", nodes="Affine, LIF", dt=1e-3,
         departure="to_nir writes tau = dt/tau_mem_inv = dt*tau (norse/torch/utils/"
         "export_nir.py:37), exact only when dt = 1", undo=_scale_tau_by_1_over_dt),
    Case(name="sinabs-if-conv-sumpool", framework="sinabs 3.1.3",
         nodes="Conv2d, IF, SumPool2d, Flatten, Affine", dt=1.0,
         departure="none with SingleSpike and MembraneReset; sinabs' default MultiSpike and "
         "MembraneSubtract are not NIR's IF; to_nir leaves the Conv2d input_shape unset "
         "(nir.write then fails)"),
    Case(name="spyx-li-threshold", framework="spyx 1.0.0", nodes="Affine, LI, Threshold",
         dt=1.0, departure="PSU_LIF exported with r = 1 while it applies unit input gain "
         "(NIR needs r = tau/dt)", undo=_r_is_tau_over_dt),
    Case(name="spyx-lif", framework="spyx 1.0.0", nodes="Affine, LIF", dt=1.0,
         departure="LIF exported with r = beta; spyx's LIF spikes on the previous membrane "
         "and subtracts the threshold, which NIR's LIF cannot say"),
    Case(name="rockpool-cubalif", framework="rockpool 3.1.0", nodes="Linear, CubaLIF",
         dt=1e-3, departure="LIFTorch decays by exp(-dt/tau), writes w_in = 1 and r = "
         "tau*exp(-dt/tau)/dt, and subtracts the threshold: not NIR's forward Euler"),
)


def _read_and_run(path: Path, dt: float, x: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = read_nir(path, dt=dt).model
    g = trace(model, tuple(x.shape[2:]))
    with torch.no_grad():
        return run(g, torch.from_numpy(x)).spikes.numpy()


def _verdict(ours: np.ndarray, theirs: np.ndarray) -> tuple[str, float]:
    ours = ours.reshape(theirs.shape)
    agree = round(float((ours == theirs).mean()), 3)
    exact = bool(np.array_equal(ours, theirs)) and theirs.sum() > 0
    return ("exact" if exact else "approximate"), agree


def _export_row(case: Case, folder: Path) -> dict[str, Any]:
    d = folder / case.name
    row: dict[str, Any] = {"framework": case.framework, "direction": "into slamp-deploy",
                           "case": case.name, "nodes": case.nodes, "dt": case.dt,
                           "departure": case.departure}
    if (d / "error.txt").is_file():
        return row | {"verdict": "producer fails", "agreement": None,
                      "note": (d / "error.txt").read_text()}
    x, y = np.load(d / "x.npy"), np.load(d / "y.npy")
    try:
        verdict, agree = _verdict(_read_and_run(d / "graph.nir", case.dt, x), y)
        row |= {"verdict": verdict, "agreement": agree, "note": ""}
    except ModelError as e:
        row |= {"verdict": "refused", "agreement": None,
                "note": str(e).split(": ", 1)[1][:300]}
    if case.undo is not None:
        g = nir.read(str(d / "graph.nir"), type_check=False)
        case.undo(g, case.dt)
        fixed = d / "undone.nir"
        nir.write(str(fixed), g, compression=None)
        v, a = _verdict(_read_and_run(fixed, case.dt, x), y)
        row["corrected"] = {"verdict": v, "agreement": a}
    return row


# ---------------------------------------------------------------------------- our exports


def _pruned(model: nn.Module, shape: tuple[int, ...]) -> Any:
    torch.manual_seed(0)
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            with torch.no_grad():
                m.weight.uniform_(-0.2, 1.5)
                m.weight.mul_((torch.rand_like(m.weight) > 0.5).float())  # half pruned
                m.bias.zero_()
    return trace(model, shape)


def _leaky(beta: float) -> nn.Module:
    return snn.Leaky(beta=beta, reset_mechanism="zero", reset_delay=False, init_hidden=True)


def _mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(6, 8), _leaky(0.8), nn.Linear(8, 3), _leaky(0.7))


def _conv() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), _leaky(0.8), nn.AvgPool2d(2),
                         nn.Flatten(), nn.Linear(18, 3), _leaky(0.7))


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Ours:
    """One of our exports: its node types as written, the network, the per-sample input
    shape, and the consumer form (``for_consumer``; None: the default ``to_nir`` file, read
    by every consumer)."""

    nodes: str
    make: Callable[[], nn.Module]
    shape: tuple[int, ...]
    form: str | None = None


def _mlp_if() -> nn.Module:
    return nn.Sequential(nn.Linear(6, 8), _leaky(1.0), nn.Linear(8, 3), _leaky(1.0))


def _mlp_cuba() -> nn.Module:
    def syn(alpha: float, beta: float) -> nn.Module:
        return snn.Synaptic(alpha=alpha, beta=beta, reset_mechanism="zero", reset_delay=False,
                            init_hidden=True)

    return nn.Sequential(nn.Linear(6, 8), syn(0.6, 0.8), nn.Linear(8, 3), syn(0.5, 0.7))


_CONV_NODES = "Conv2d, LIF, SumPool2d (our AvgPool2d), Flatten, Affine"
OURS: dict[str, Ours] = {
    "slamp-mlp": Ours(nodes="Affine, LIF", make=_mlp, shape=(6,)),
    "slamp-mlp-if": Ours(nodes="Affine, IF", make=_mlp_if, shape=(6,)),
    "slamp-mlp-cubalif": Ours(nodes="Affine, CubaLIF", make=_mlp_cuba, shape=(6,)),
    "slamp-conv": Ours(nodes=_CONV_NODES, make=_conv, shape=(1, 6, 6)),
    "slamp-mlp-norse": Ours(nodes="Affine, LIF; norse form (r = 1)", make=_mlp, shape=(6,),
                            form="norse"),
    "slamp-conv-norse": Ours(nodes=_CONV_NODES + "; norse form (r = 1)", make=_conv,
                             shape=(1, 6, 6), form="norse"),
}
CONSUMERS = ("snntorch", "norse", "sinabs", "spyx", "rockpool")
_VERSIONS = {"snntorch": "snnTorch 1.0.0", "norse": "norse 1.1.0", "sinabs": "sinabs 3.1.3",
             "spyx": "spyx 1.0.0", "rockpool": "rockpool 3.1.0"}

#: where each consumer's importer departs from NIR's equations, per node type of our export (the
#: sources under .venv-interop/lib/python3.11/site-packages/): (node type, what, and whether
#: frameworks.UNDONE undoes it, default: if it has an entry for the consumer); norse's is
#: undone by our norse form, rockpool's by nothing
CONSUMER_DEPARTURES: dict[str, tuple[tuple[Any, ...], ...]] = {
    "snntorch": (
        ("IF", "from_nir maps IF to snn.Leaky(beta=0.9, init_hidden=False) with Leaky's default "
               "subtract reset (snntorch/import_nir.py:226-240): a leak and a reset NIR's IF "
               "has not, and the (spike, membrane) tuple it returns breaks the next layer"),),
    "norse": (
        ("LIF", "from_nir ignores a LIF's r (norse/torch/utils/import_nir.py:120-130, a warning "
                "unless r = 1): LIFBoxCell applies the gain dt/tau (norse/torch/functional/"
                "lif_box.py:95), NIR r*dt/tau; export for_consumer(graph, 'norse') (r = 1) and "
                "pass from_nir(dt=slamp.dt)"),),
    "sinabs": (
        ("LIF", "from_nir has no dt and builds LIFSqueeze with the layer defaults "
                "(sinabs/nir.py:94-108): decay exp(-1/tau) in steps (sinabs/layers/lif.py:121), "
                "MultiSpike and MembraneSubtract, not NIR's reset to v_reset; any(node.v_leak) "
                "(sinabs/nir.py:97) fails on a LIF of more than one dimension"),
        ("IF", "IF -> IAFSqueeze with MultiSpike, MembraneSubtract and a floor at -v_threshold "
               "(sinabs/nir.py:86-92), not NIR's reset to v_reset"),
        ("CubaLIF", "from_nir has no CubaLIF converter (sinabs/nir.py:25-118 returns None)",
         False),),
    "spyx": (
        ("LIF", "spyx's LIF spikes on the membrane before the update and subtracts the "
                "threshold (spyx/nn.py:215-216; from_nir keeps only tau and v_threshold, "
                "spyx/nir.py:213-217)"),
        ("IF", "spyx's IF spikes on the membrane before the update and subtracts the threshold "
               "(spyx/nn.py:167-168)"),
        ("CubaLIF", "spyx's CuBaLIF spikes on the membrane before the update and subtracts the "
                    "threshold (spyx/nn.py:451-454)"),
        ("Flatten", "its Flatten flattens channels-last (spyx/nn.py:758), so the Affine after a "
                    "conv reads a permuted vector"),),
    "rockpool": (
        ("LIF", "from_nir reads node.tau_mem on a LIF (rockpool/nn/modules/torch/nir.py:118), "
                "which nir.LIF does not have"),
        ("IF", "from_nir has no IF converter (rockpool/nn/modules/torch/nir.py:153)"),
        ("CubaLIF", "CubaLIF -> LIFTorch with dt = min(tau_mem/(1 + r)) (rockpool/nn/modules/"
                    "torch/nir.py:126-135), decays exp(-dt/tau), the synapse decayed after "
                    "the input is added and the threshold subtracted (rockpool/nn/modules/"
                    "torch/lif_torch.py:687-709), w_in not applied"),
        ("Conv2d", "no Conv2d, Flatten or pooling converter (nir.py:153)"),),
}


def consumer_departure(fw: str, nodes: str) -> tuple[str, bool]:
    """The departures of consumer ``fw``'s importer that touch node types ``nodes``, and
    whether ``frameworks.UNDONE`` undoes all of them."""
    kinds = set(re.split(r"[^A-Za-z0-9]+", nodes))
    hits = [d for d in CONSUMER_DEPARTURES.get(fw, ()) if d[0] in kinds]
    return "; ".join(d[1] for d in hits), bool(hits) and all(d[2:] != (False,) for d in hits)


def _write_ours(folder: Path) -> dict[str, np.ndarray]:
    refs = {}
    rng = np.random.default_rng(1)
    xs: dict[tuple[int, ...], np.ndarray] = {}
    for name, case in OURS.items():
        d = folder / name
        d.mkdir(parents=True, exist_ok=True)
        g = _pruned(case.make(), case.shape)
        default = to_nir(g, timesteps=12, encoding="direct", readout="spikes")
        graph = default if case.form is None else for_consumer(default, case.form)
        write_nir(graph, d / "graph.nir")
        if case.shape not in xs:
            xs[case.shape] = (rng.random((12, 4, *case.shape)) < 0.4).astype(np.float32)
        np.save(d / "x.npy", xs[case.shape])
        out = next(src for src, dst in graph.edges if dst == "output")
        # the reference is our simulation of the default export (the form must agree with it)
        refs[name] = nir_sim.simulate(default, xs[case.shape])[out]
    return refs


def _consumer_verdict(d: Path, fw: str, ref: np.ndarray) -> dict[str, Any]:
    """verdict/agreement/note of consumer ``fw``'s run in folder ``d`` against ``ref``."""
    if (d / f"{fw}.txt").is_file():
        return {"verdict": "consumer fails", "agreement": None,
                "note": (d / f"{fw}.txt").read_text()}
    theirs = np.load(d / f"{fw}.npy")
    if theirs.size != ref.size:
        return {"verdict": "consumer fails", "agreement": None,
                "note": f"output shape {list(theirs.shape)}, expected {list(ref.shape)}"}
    verdict, agree = _verdict(theirs, ref)
    return {"verdict": verdict, "agreement": agree, "note": ""}


def _import_rows(folder: Path, refs: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    rows = []
    for name, case in OURS.items():
        d = folder / name
        for fw in CONSUMERS if case.form is None else (case.form,):
            why, undoable = consumer_departure(fw, case.nodes) if case.form is None \
                else ("", False)
            row: dict[str, Any] = {"framework": _VERSIONS[fw], "direction": "from slamp-deploy",
                                   "case": name, "nodes": case.nodes, "dt": 1e-4,
                                   "departure": why}
            row |= _consumer_verdict(d, fw, refs[name])
            ran = (d / f"{fw}-undone.npy").exists() or (d / f"{fw}-undone.txt").exists()
            if undoable and ran:
                c = _consumer_verdict(d, f"{fw}-undone", refs[name])
                row["corrected"] = {"verdict": c["verdict"], "agreement": c["agreement"]}
            rows.append(row)
    return rows


def measure(folder: Path) -> list[dict[str, Any]]:
    """Every row, from scratch, in ``folder`` (two runs of the interop interpreter)."""
    exports, ours = folder / "exports", folder / "ours"
    exports.mkdir(parents=True, exist_ok=True)
    ours.mkdir(parents=True, exist_ok=True)
    _call("export-all", exports)
    rows = [_export_row(c, exports) for c in CASES]
    refs = _write_ours(ours)
    _call("import-all", ours)
    return rows + _import_rows(ours, refs)


def write_results(rows: list[dict[str, Any]], path: Path = RESULTS) -> None:
    path.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        rows = measure(Path(tmp))
    json.dump(rows, sys.stdout, indent=1)
