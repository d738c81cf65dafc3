"""The targeted sweep that chose the form of the downstream-aware lambda (docs/method.md).

    python -m benchmarks.lambda_sweep TASK SPARSITIES SEEDS CANDIDATES EPOCHS OUT.json
    python -m benchmarks.lambda_sweep --render benchmarks/results/lambda_sweep.json

Each candidate is a way to turn the calibration statistics into per-layer lambdas; the run is
the quality benchmark's own (:func:`benchmarks.quality.run_one`, fixed lambdas, no hardware
target), so its accuracies are comparable with ``quality_full*.json`` at the same seed. LAMP
runs beside the candidates unless OUT's name contains ``nolamp``. Candidates:

* ``l2``: the own-layer estimator (today's default).
* ``chain_linear``: the l2 ratio of the chain response, errors crossing every later population
  linearly, decays as configured.
* ``chain``: the same with zero-reset memories shortened by the measured firing rate.
* ``chain_sqrt``: ``sqrt(chain)``.
* ``chain_incoherent``: coherent accumulation in the layer's own neurons, then the later
  populations adding the spike errors in power (``sqrt(sum G[k]^2 E[t-k]^2)``), for spike
  errors whose signs are uncorrelated from step to step.
* ``stage_max``: the largest own-layer ratio over the populations on the layer's paths.
* ``downstream``: ``sqrt(l2 * chain)``, what ``--lambda-variant downstream`` computes.
* ``readout_l2``: ``downstream``, but a readout (a layer whose neurons reach no later
  population) keeps its ``l2`` factor (they differ where the readout has a zero reset).
* ``anchored``: ``downstream``, but a readout's factor is its ``l2`` factor times the mean
  amplification ``downstream / l2`` of the layers whose neurons feed it, so the readout keeps
  ``l2``'s ratio to them instead of paying for the input layer's gain.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from slamp_deploy.prune.calibrate import (
    TemporalStats,
    _neuron_impulse,
    calibrate,
    downstream_impulse,
    neuron_successors,
)
from slamp_deploy.prune.temporal import temporal_factor

from .quality import RunSpec, _context, _init_worker, run_one
from .tasks import Task, prepare

CANDIDATES = ("l2", "chain_linear", "chain", "chain_sqrt", "chain_incoherent", "stage_max",
              "downstream", "readout_l2", "anchored")


def _reachable(graph: Any, i: int) -> set[int]:
    seen: set[int] = set()
    todo = [i]
    while todo:
        j = todo.pop()
        if j not in seen:
            seen.add(j)
            todo.extend(neuron_successors(graph, j))
    return seen


def _incoherent(graph: Any, st: TemporalStats) -> dict[str, float]:
    T = st.timesteps
    idx = {id(op): k for k, op in enumerate(graph.ops)}
    by_neuron = {idx[id(la.neuron)]: la.name for la in graph.layers if la.neuron is not None}
    out = {}
    for la in graph.layers:
        a, w = st.activity_rms[la.name], st.timestep_weights
        if la.neuron is None:
            out[la.name] = 1.0
            continue
        h = _neuron_impulse(la.neuron, T, float(np.mean(st.firing_rate[la.neuron.name])))
        E = np.array([sum(h[t - u] * a[u] for u in range(t + 1)) for t in range(T)])
        succ = neuron_successors(graph, idx[id(la.neuron)])
        num_t = E
        if succ:
            G = sum(n * st.downstream[by_neuron[j]] for j, n in succ.items()) / sum(succ.values())
            num_t = np.array([math.sqrt(sum(G[t - u] ** 2 * E[u] ** 2 for u in range(t + 1)))
                              for t in range(T)])
        num, den = math.sqrt(np.mean((w * num_t) ** 2)), math.sqrt(np.mean((w * a) ** 2))
        out[la.name] = max(1.0, num / den) if den > 0 else 1.0
    return out


def candidates(task: Task, seed: int) -> dict[str, dict[str, float]]:
    """Every candidate's lambdas on the seed's calibration subset of the dense network."""
    ctx = _context(task, RunSpec(task=task.name, variant="sweep", method="slamp", sparsity=0.0,
                                 seed=seed, epochs=0))
    g = ctx.graph
    st = calibrate(g, ctx.parts.calib, timesteps=ctx.timesteps, encoding=ctx.cfg.encoding,
                   readout=ctx.cfg.readout, seed=seed)
    a, w = st.activity_rms, st.timestep_weights
    linear = downstream_impulse(g, ctx.timesteps)
    idx = {id(op): k for k, op in enumerate(g.ops)}
    c = {"l2": st.lambdas("l2"),
         "chain_linear": {n: temporal_factor(linear[n], a[n], w, "l2") for n in a},
         "chain": {n: temporal_factor(st.downstream[n], a[n], w, "l2") for n in a},
         "chain_incoherent": _incoherent(g, st),
         "stage_max": {la.name: 1.0 if la.neuron is None else max(
             temporal_factor(_neuron_impulse(g.ops[i], ctx.timesteps), a[la.name], w, "l2")
             for i in _reachable(g, idx[id(la.neuron)])) for la in g.layers},
         "downstream": st.lambdas("downstream")}
    c["chain_sqrt"] = {n: math.sqrt(v) for n, v in c["chain"].items()}
    c["readout_l2"], c["anchored"] = _readout_keeping(g, c["l2"], c["downstream"])
    return c


def _readout_keeping(g: Any, l2: dict[str, float], ds: dict[str, float]
                     ) -> tuple[dict[str, float], dict[str, float]]:
    """The two readout-keeping candidates: a readout is a layer whose neurons reach no later
    population; the layers feeding it are those whose neurons' successors include it."""
    idx = {id(op): k for k, op in enumerate(g.ops)}
    neuron = {la.name: idx[id(la.neuron)] for la in g.layers if la.neuron is not None}
    succ = {n: neuron_successors(g, i) for n, i in neuron.items()}
    ro, anch = dict(ds), dict(ds)
    for la in g.layers:
        if la.neuron is not None and succ[la.name]:
            continue
        feed = [n for n, s in succ.items() if la.name in neuron and neuron[la.name] in s]
        ro[la.name] = l2[la.name]
        amp = np.mean([ds[n] / l2[n] for n in feed]) if feed else 1.0
        anch[la.name] = l2[la.name] * float(amp)
    return ro, anch


def _job(args: tuple[Task, RunSpec]) -> dict[str, Any]:
    r = run_one(*args)
    keep = ("task", "variant", "sparsity", "seed", "acc_pruned", "acc_current_matched",
            "acc_retrained", "seconds")
    return {k: r[k] for k in keep} | {"kept": {k: v["kept"] for k, v in r["layers"].items()}}


def sweep(task_name: str, sparsities: list[float], seeds: list[int], names: list[str],
          epochs: int, out: Path, jobs: int = 2) -> dict[str, Any]:
    task = prepare(task_name, Path(tempfile.mkdtemp(prefix="slamp-sweep-")))
    lams = {s: candidates(task, s) for s in seeds}
    specs = []
    for s in seeds:
        for sp in sparsities:
            if "nolamp" not in out.name:
                specs.append(RunSpec(task=task_name, variant="lamp", method="lamp", sparsity=sp,
                                     seed=s, epochs=epochs))
            specs += [RunSpec(task=task_name, variant=n, method="slamp", sparsity=sp, seed=s,
                              epochs=epochs, lambdas=lams[s][n]) for n in names]
    t0 = time.time()
    with ProcessPoolExecutor(jobs, mp_context=mp.get_context("spawn"),
                             initializer=_init_worker) as ex:
        runs = list(ex.map(_job, [(task, sp) for sp in specs]))
    res = {"task": task_name, "epochs": epochs, "seconds": round(time.time() - t0, 1),
           "lambdas": {str(s): lams[s] for s in seeds}, "runs": runs}
    out.write_text(json.dumps(res, indent=1) + "\n")
    return res


def render(data: list[dict[str, Any]]) -> str:
    """Per task: each candidate's seed-0 lambdas, and its accuracy (after current matching /
    after retraining) next to LAMP's at every swept sparsity."""
    out = []
    for d in data:
        names = [n for n in CANDIDATES if any(r["variant"] == n for r in d["runs"])]
        lam = d["lambdas"]["0"]
        sps = sorted({r["sparsity"] for r in d["runs"]})
        out += [f"**{d['task']}** (seed 0, {d['epochs']} retraining epochs; cells: after "
                "current matching / after retraining)", "",
                "| candidate | lambdas | " + " | ".join(f"{s:.2f}" for s in sps) + " |",
                "|---|---|" + "---|" * len(sps)]
        has_lamp = any(r["variant"] == "lamp" for r in d["runs"])
        for n in ["lamp", *names] if has_lamp else names:
            cells = []
            for s in sps:
                r = next((r for r in d["runs"] if r["variant"] == n and r["sparsity"] == s), None)
                cells.append("-" if r is None else
                             f"{r['acc_current_matched']:.3f} / {r['acc_retrained']:.3f}")
            lams = "1" if n == "lamp" else " / ".join(f"{v:.1f}" for v in lam[n].values())
            out.append(f"| {n} | {lams} | " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--render", type=Path)
    ap.add_argument("args", nargs="*")
    a = ap.parse_args()
    if a.render:
        print(render(json.loads(a.render.read_text())))
        return
    task, sps, seeds, names, epochs, out = a.args
    sweep(task, [float(s) for s in sps.split(",")], [int(s) for s in seeds.split(",")],
          names.split(","), int(epochs), Path(out))


if __name__ == "__main__":
    main()
