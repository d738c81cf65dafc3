"""Pruning quality: SLAMP against LAMP, global magnitude, uniform, uniform+ and ERK, plus ablations.

    python -m benchmarks.quality --mode quick     # CI-sized (make bench-quality)
    python -m benchmarks.quality --mode full      # the published table (make bench-quality-full)

Every run is the pipeline's own prune-and-recover stage (calibrate, allocate, prune, current
matching, retraining with masks fixed) on one task, one method, one sparsity and one seed, with the
same retraining budget for every method. No hardware target is applied (no fan-in or core caps),
so methods differ only in how they allocate sparsity across layers. Per run we record accuracy on
the fixed evaluation set right after pruning, after current matching and after retraining, and
the SynOps of the dense and of the final pruned network on the evaluation set.

SynOps (synaptic operations) = for every prunable layer and step, the number of (input event,
kept synapse) pairs: the layer applied with its 0/1 mask as weights to the 0/1 indicator of its
non-zero inputs, summed. For the first layer of the digits network the input is analog, so a
"event" there is a non-zero pixel. Reduction = dense SynOps / pruned SynOps (per sample, both on
the evaluation set).

The main ``slamp`` runs use the pipeline's default lambda variant (``PipelineConfig``). The
ablations that decide SLAMP's defaults run SLAMP with: lambda variant max / l2 / sqrt / measured /
downstream (``slamp_deploy.prune.temporal``), gradient timestep weights, and current matching off
(also for LAMP), on the same seeds and sparsities; every lambda variant is also compared with
LAMP (win / tie / loss, :func:`compare_variants`). ``--ablations`` runs a subset.

Results go to ``benchmarks/results/quality_<mode>.{json,csv}`` (``--out`` to change), one PNG per
task, and a rich table on stdout. Nothing is hard-coded: every number is measured by the run.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import platform
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from slamp_deploy.config import PipelineConfig
from slamp_deploy.data import Dataset, encode
from slamp_deploy.model.graph import SpikingGraph
from slamp_deploy.model.runner import run as run_graph
from slamp_deploy.pipeline.run import (
    PipelineContext,
    _no_progress,
    _Timer,
)
from slamp_deploy.pipeline.run import prepare as prepare_run
from slamp_deploy.prune.calibrate import TemporalStats
from slamp_deploy.prune.methods import available_methods
from slamp_deploy.prune.recover import synaptic_current

from .tasks import TASKS, Task, prepare

SPARSITIES = (0.5, 0.7, 0.8, 0.9, 0.95, 0.98)
RESULTS = Path(__file__).resolve().parent / "results"


def _default_lambda() -> str:
    f = next(f for f in fields(PipelineConfig) if f.name == "lambda_variant")
    return str(f.default if f.default is not MISSING else "max")


#: the pipeline's default lambda variant: what the main ``slamp`` runs use
DEFAULT_LAMBDA = _default_lambda()
LAMBDA_NAMES = ("max", "l2", "sqrt", "measured", "downstream")

#: ablation name -> (method, lambda variant, timestep weights, current matching); the one that
#: equals the main slamp run (the default variant) is not run twice but aliased
ABLATIONS: dict[str, tuple[str, str, str, bool]] = {
    **{f"slamp.{lv}": ("slamp", lv, "uniform", True) for lv in LAMBDA_NAMES},
    "slamp.gradient": ("slamp", DEFAULT_LAMBDA, "gradient", True),
    "slamp.no_cm": ("slamp", DEFAULT_LAMBDA, "uniform", False),
    "lamp.no_cm": ("lamp", DEFAULT_LAMBDA, "uniform", False),
}

#: per mode: tasks, methods, sparsities, seeds, ablation sparsities, retraining epochs per task
MODES: dict[str, dict[str, Any]] = {
    # a smoke run that must stay under a minute with four tasks on a shared 2-core machine:
    # SLAMP (default variant), LAMP and the downstream variant, 300 retraining and 300
    # evaluation samples per task, one epoch
    "quick": {"tasks": TASKS, "methods": ("slamp", "lamp"), "sparsities": (0.9,), "seeds": (0,),
              "ablation_sparsities": (0.9,), "ablations": ("slamp.downstream",),
              "epochs": dict.fromkeys(TASKS, 1), "train_limit": dict.fromkeys(TASKS, 300),
              "eval_limit": 300},
    "full": {"tasks": TASKS, "methods": available_methods(), "sparsities": SPARSITIES,
             "seeds": (0, 1, 2),
             "ablation_sparsities": (0.7, 0.8, 0.9, 0.95, 0.98),
             "epochs": {"digits": 3, "digits-resnet": 3, "temporal": 2, "audio": 2},
             "train_limit": {"digits": None, "digits-resnet": None, "temporal": None,
                             "audio": None},
             "eval_limit": None},
}


@dataclass(frozen=True)
class RunSpec:
    """One pipeline run of the benchmark."""

    task: str
    variant: str  # a method name, or an ablation name
    method: str
    sparsity: float
    seed: int
    epochs: int
    lambda_variant: str = DEFAULT_LAMBDA
    timestep_weights: str = "uniform"
    current_matching: bool = True
    lambdas: dict[str, float] | None = None  # fixed lambdas (the "measured" variant)


# ----------------------------------------------------------------------------- one run


@dataclass(frozen=True, eq=False)
class _FixedLambdas(TemporalStats):
    """Calibration statistics whose lambdas are given (the measured variant)."""

    fixed: dict[str, float] = field(default_factory=dict)

    def lambdas(self, variant: str = "max") -> dict[str, float]:
        return dict(self.fixed)


@dataclass
class _BenchContext(PipelineContext):
    """The pipeline's context, with an optional override of SLAMP's lambdas."""

    lambda_override: dict[str, float] | None = None

    def _calibrate(self) -> TemporalStats:
        stats = super()._calibrate()
        if self.lambda_override is None:
            return stats
        base = {f.name: getattr(stats, f.name) for f in fields(TemporalStats)}
        return _FixedLambdas(**base, fixed=dict(self.lambda_override))


def _config(task: Task, spec: RunSpec, out: str, calib_samples: int = 256) -> PipelineConfig:
    return PipelineConfig(
        model=task.model, weights=task.weights, data=str(task.train), eval_data=str(task.eval),
        encoding=task.encoding, readout=task.readout, method=spec.method,
        sparsity=spec.sparsity, epochs=spec.epochs,
        current_matching=spec.current_matching,
        lambda_variant="max" if spec.lambda_variant == "measured" else spec.lambda_variant,
        timestep_weights=spec.timestep_weights, seed=spec.seed, calib_samples=calib_samples,
        out=out)


def _context(task: Task, spec: RunSpec) -> _BenchContext:
    """Load, trace and split exactly as :func:`slamp_deploy.pipeline.run.run` does (no target)."""
    cfg = _config(task, spec, out=os.devnull)
    cfg.validate()
    torch.manual_seed(cfg.seed)
    loaded, graph, parts, T = prepare_run(cfg)
    return _BenchContext(cfg=cfg, loaded=loaded, graph=graph, parts=parts, timesteps=T,
                         timer=_Timer(), progress=_no_progress, profile=None,
                         lambda_override=spec.lambdas)


@torch.no_grad()
def synops(graph: SpikingGraph, data: Dataset, *, timesteps: int, encoding: str, seed: int = 0,
           batch_size: int = 256) -> dict[str, float]:
    """Mean SynOps per sample of every prunable layer over ``timesteps`` (see module docstring)."""
    at = {la.op_index: la for la in graph.layers}
    masks = {la.name: (la.weight.detach() != 0).to(la.weight.dtype) for la in graph.layers}
    total = dict.fromkeys(masks, 0.0)

    def count(i: int, op: Any, t: int, inp: torch.Tensor, out: torch.Tensor) -> None:
        la = at.get(i)
        if la is not None:
            ev = (inp != 0).to(masks[la.name].dtype)
            total[la.name] += float(synaptic_current(la, ev, masks[la.name]).double().sum())

    was_training = graph.model.training
    graph.model.eval()
    gen = torch.Generator().manual_seed(seed)
    for xb, _ in data.batches(batch_size):
        run_graph(graph, encode(xb, timesteps, encoding, sequence=data.sequence, generator=gen),
                  observers=(count,))
    graph.model.train(was_training)
    return {k: v / max(len(data), 1) for k, v in total.items()}


def _activity_synops(report: dict[str, Any]) -> float | None:
    """Total pruned SynOps per sample from the report's activity section, when it has one."""
    act = report.get("activity")
    if not isinstance(act, dict):
        return None
    for key in ("synops_per_sample", "synops"):
        v = act.get(key)
        if isinstance(v, (int, float)):
            return float(v)
    return None


def run_one(task: Task, spec: RunSpec) -> dict[str, Any]:
    """Run the pipeline's prune-and-recover stage for ``spec``; the measured facts as a dict."""
    t0 = time.perf_counter()
    ctx = _context(task, spec)
    T, enc = ctx.timesteps, ctx.cfg.encoding
    dense_ops = synops(ctx.graph, ctx.parts.eval, timesteps=T, encoding=enc, seed=spec.seed)
    ctx.prune_and_recover()
    report = ctx.build_report().to_dict()
    pruned_ops = synops(ctx.graph, ctx.parts.eval, timesteps=T, encoding=enc, seed=spec.seed)
    d, p = sum(dense_ops.values()), sum(pruned_ops.values())
    acc = report["accuracy"]
    return {
        **{k: v for k, v in asdict(spec).items() if k != "lambdas"},
        "acc_dense": acc["dense"],
        "acc_pruned": acc["pruned"],
        "acc_current_matched": acc.get("current_matched"),
        "acc_retrained": acc["retrained"],
        "sparsity_achieved": report["sparsity"]["achieved"],
        "synops_dense": d,
        "synops_pruned": p,
        "synops_reduction": d / p if p > 0 else math.inf,
        "activity_synops_reported": _activity_synops(report),
        "layers": {row["name"]: {"kept": row["weights_kept"], "total": row["weights_total"],
                                 "layer_score": row["layer_score"],
                                 "synops_dense": dense_ops[row["name"]],
                                 "synops_pruned": pruned_ops[row["name"]]}
                   for row in report["layers"]},
        "timestep_weights_measured": report["calibration"]["timestep_weights"],
        "seconds": round(time.perf_counter() - t0, 2),
    }


ANALYTIC = ("max", "l2", "sqrt", "downstream")


def measure_lambdas(task: Task, seed: int) -> dict[str, Any]:
    """Measured lambdas of the dense network on the seed's calibration subset, and analytic ones."""
    from slamp_deploy.prune.calibrate import calibrate
    from slamp_deploy.prune.temporal import measured_lambdas

    spec = RunSpec(task=task.name, variant="lambdas", method="slamp", sparsity=0.0, seed=seed,
                   epochs=0)
    ctx = _context(task, spec)
    t0 = time.perf_counter()
    lam = measured_lambdas(ctx.graph, ctx.parts.calib, timesteps=ctx.timesteps,
                           encoding=ctx.cfg.encoding, seed=seed)
    seconds = time.perf_counter() - t0
    stats = calibrate(ctx.graph, ctx.parts.calib, timesteps=ctx.timesteps,
                      encoding=ctx.cfg.encoding, readout=ctx.cfg.readout,
                      timestep_weights="gradient", seed=seed)
    analytic = {v: stats.lambdas(v) for v in ANALYTIC}
    uniform = calibrate(ctx.graph, ctx.parts.calib, timesteps=ctx.timesteps,
                        encoding=ctx.cfg.encoding, readout=ctx.cfg.readout, seed=seed)
    return {"task": task.name, "seed": seed, "measured": lam, "measured_seconds": round(seconds, 2),
            "analytic_uniform": {v: uniform.lambdas(v) for v in ANALYTIC},
            "analytic_gradient_max": analytic["max"],
            "gradient_timestep_weights": [round(float(w), 4) for w in stats.timestep_weights]}


# ----------------------------------------------------------------------------- the plan


def _is_main(name: str) -> bool:
    """Whether ablation ``name`` is the configuration of the main slamp run."""
    return ABLATIONS[name] == ("slamp", DEFAULT_LAMBDA, "uniform", True)


def plan(mode: dict[str, Any], tasks: Sequence[str], lambdas: dict[tuple[str, int], dict],
         ablations: bool | Sequence[str] = True) -> list[RunSpec]:
    """Every run of the benchmark; ``ablations`` is True (all), False (none) or their names."""
    names = list(ABLATIONS) if ablations is True else list(ablations or ())
    specs: list[RunSpec] = []
    for task in tasks:
        ep = mode["epochs"][task]
        for seed in mode["seeds"]:
            for s in mode["sparsities"]:
                for m in mode["methods"]:
                    specs.append(RunSpec(task=task, variant=m, method=m, sparsity=s, seed=seed,
                                         epochs=ep))
            for s in mode["ablation_sparsities"] if names else ():
                for name in names:
                    m, lv, tw, cm = ABLATIONS[name]
                    if _is_main(name) and s in mode["sparsities"] and "slamp" in mode[
                            "methods"]:
                        continue  # the main slamp run is this configuration (aliased)
                    specs.append(RunSpec(
                        task=task, variant=name, method=m, sparsity=s, seed=seed, epochs=ep,
                        lambda_variant=lv, timestep_weights=tw, current_matching=cm,
                        lambdas=lambdas.get((task, seed)) if lv == "measured" else None))
    return specs


# ----------------------------------------------------------------------------- aggregation


def _stat(vals: Iterable[float | None]) -> tuple[float, float, int]:
    v = [x for x in vals if x is not None]
    if not v:
        return math.nan, math.nan, 0
    return float(np.mean(v)), float(np.std(v, ddof=1)) if len(v) > 1 else 0.0, len(v)


STAGES = ("acc_pruned", "acc_current_matched", "acc_retrained")


def aggregate(runs: list[dict[str, Any]], alias: str | None = None) -> list[dict[str, Any]]:
    """Mean and sample std over seeds per (task, variant, sparsity).

    ``alias`` (an ablation name) also files the main slamp runs under that name where it has no
    runs of its own: the default lambda variant's ablation is the main run.
    """
    groups: dict[tuple[str, str, float], list[dict[str, Any]]] = defaultdict(list)
    for r in runs:
        groups[(r["task"], r["variant"], r["sparsity"])].append(r)
    if alias is not None:
        for (task, variant, s), rs in list(groups.items()):
            if variant == "slamp" and (task, alias, s) not in groups:
                groups[(task, alias, s)] = rs
    rows = []
    for (task, variant, s), rs in sorted(groups.items()):
        row: dict[str, Any] = {"task": task, "variant": variant, "sparsity": s,
                               "seeds": len(rs), "acc_dense": rs[0]["acc_dense"]}
        for key in (*STAGES, "synops_reduction", "sparsity_achieved"):
            m, sd, _ = _stat(r[key] for r in rs)
            row[key] = m
            row[key + "_std"] = sd
        rows.append(row)
    return rows


def compare(rows: list[dict[str, Any]], stage: str, *, ref: str = "slamp",
            min_gap: float = 0.005) -> list[dict[str, Any]]:
    """SLAMP vs every other variant per (task, sparsity): win / tie / loss.

    A difference of means counts only if it exceeds both ``min_gap`` (0.5 points) and the larger
    of the two seed standard deviations; otherwise it is a tie.
    """
    by = {(r["task"], r["variant"], r["sparsity"]): r for r in rows}
    out = []
    for (task, variant, s), r in sorted(by.items()):
        if variant == ref or (task, ref, s) not in by or variant not in available_methods():
            continue
        a = by[(task, ref, s)]
        diff = a[stage] - r[stage]
        margin = max(min_gap, a[stage + "_std"], r[stage + "_std"])
        verdict = "tie" if abs(diff) <= margin else ("win" if diff > 0 else "loss")
        out.append({"task": task, "sparsity": s, "baseline": variant, "stage": stage,
                    "slamp": a[stage], "baseline_acc": r[stage], "diff": diff,
                    "margin": margin, "verdict": verdict})
    return out


def compare_variants(rows: list[dict[str, Any]], stage: str, *, ref: str = "lamp",
                     min_gap: float = 0.005) -> list[dict[str, Any]]:
    """Every lambda variant (``slamp.<variant>``) against LAMP per (task, sparsity), with
    :func:`compare`'s tie rule; ``slamp`` in each verdict is the variant's accuracy."""
    by = {(r["task"], r["variant"], r["sparsity"]): r for r in rows}
    out = []
    for (task, variant, s), a in sorted(by.items()):
        lv = variant.removeprefix("slamp.")
        if lv not in LAMBDA_NAMES or not variant.startswith("slamp.") or (task, ref, s) not in by:
            continue
        r = by[(task, ref, s)]
        diff = a[stage] - r[stage]
        margin = max(min_gap, a[stage + "_std"], r[stage + "_std"])
        verdict = "tie" if abs(diff) <= margin else ("win" if diff > 0 else "loss")
        out.append({"task": task, "sparsity": s, "variant": lv, "baseline": ref, "stage": stage,
                    "slamp": a[stage], "baseline_acc": r[stage], "diff": diff,
                    "margin": margin, "verdict": verdict})
    return out


# ----------------------------------------------------------------------------- output


def environment() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"python": platform.python_version(), "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(), "cpu": cpu,
            "cpu_count": os.cpu_count(), "platform": platform.platform()}


def write_results(out: Path, name: str, meta: dict[str, Any], runs: list[dict[str, Any]],
                  rows: list[dict[str, Any]], verdicts: list[dict[str, Any]],
                  lambdas: list[dict[str, Any]],
                  variant_verdicts: list[dict[str, Any]] | None = None) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    js = out / f"{name}.json"
    js.write_text(json.dumps({"meta": meta, "summary": rows, "verdicts": verdicts,
                              "variant_verdicts": variant_verdicts or [],
                              "lambdas": lambdas, "runs": runs}, indent=1, sort_keys=True,
                             default=float) + "\n")
    cs = out / f"{name}.csv"
    keys = list(rows[0]) if rows else []
    with cs.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        for r in rows:
            w.writerow({k: (round(v, 6) if isinstance(v, float) else v) for k, v in r.items()})
    return [js, cs]


def plot(out: Path, name: str, rows: list[dict[str, Any]]) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    for task in sorted({r["task"] for r in rows}):
        fig, axes = plt.subplots(1, 3, figsize=(15, 4.2), sharey=True)
        for ax, stage, title in zip(axes, STAGES, ("after pruning", "after current matching",
                                                   "after retraining"), strict=True):
            for m in available_methods():
                rs = sorted((r for r in rows if r["task"] == task and r["variant"] == m),
                            key=lambda r: r["sparsity"])
                if len(rs) < 1:
                    continue
                xs = [r["sparsity"] for r in rs]
                ax.errorbar(xs, [r[stage] for r in rs], yerr=[r[stage + "_std"] for r in rs],
                            marker="o", ms=4, capsize=3, label=m,
                            lw=2.2 if m == "slamp" else 1.2)
            dense = next(r["acc_dense"] for r in rows if r["task"] == task)
            ax.axhline(dense, color="k", ls=":", lw=1, label="dense")
            ax.set_title(f"{task}: {title}")
            ax.set_xlabel("sparsity")
            ax.grid(alpha=0.3)
        axes[0].set_ylabel("accuracy (mean ± std over seeds)")
        axes[-1].legend(fontsize=8)
        fig.tight_layout()
        p = out / f"{name}_{task}.png"
        fig.savefig(p, dpi=110)
        plt.close(fig)
        paths.append(p)
    return paths


def print_tables(rows: list[dict[str, Any]], verdicts: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    con = Console(width=max(120, Console().width))
    for task in sorted({r["task"] for r in rows}):
        rs = [r for r in rows if r["task"] == task]
        dense = rs[0]["acc_dense"]
        variants = [m for m in available_methods() if any(r["variant"] == m for r in rs)]
        t = Table(title=f"{task}: accuracy pruned / current-matched / retrained "
                        f"(mean over {rs[0]['seeds']} seed(s); dense {dense:.3f})")
        t.add_column("sparsity")
        for v in variants:
            t.add_column(v, justify="right")
        for s in sorted({r["sparsity"] for r in rs}):
            cells = []
            for v in variants:
                r = next((r for r in rs if r["variant"] == v and r["sparsity"] == s), None)
                cells.append("-" if r is None else
                             f"{r['acc_pruned']:.3f} / {r['acc_current_matched']:.3f} / "
                             f"{r['acc_retrained']:.3f}±{r['acc_retrained_std']:.3f}\n"
                             f"SynOps ÷{r['synops_reduction']:.1f}")
            t.add_row(f"{s:.2f}", *cells)
        con.print(t)
        abl = [r for r in rs if r["variant"] not in available_methods() or r["variant"] == "slamp"]
        if any(r["variant"] not in available_methods() for r in abl):
            names = ["slamp", *[a for a in ABLATIONS if a != "slamp.max"]]
            t = Table(title=f"{task}: ablations (pruned / current-matched / retrained)")
            t.add_column("sparsity")
            for n in names:
                t.add_column(n.replace("slamp", "slamp(max)") if n == "slamp" else n,
                             justify="right")
            for s in sorted({r["sparsity"] for r in abl if r["variant"] != "slamp"}):
                cells = []
                for n in names:
                    r = next((r for r in rs if r["variant"] == n and r["sparsity"] == s), None)
                    cm = ("-" if r is None or r["acc_current_matched"] is None
                          or math.isnan(r["acc_current_matched"])
                          else f"{r['acc_current_matched']:.3f}")
                    cells.append("-" if r is None else
                                 f"{r['acc_pruned']:.3f} / {cm} / {r['acc_retrained']:.3f}")
                t.add_row(f"{s:.2f}", *cells)
            con.print(t)
    if verdicts:
        t = Table(title="SLAMP vs each baseline: win / tie / loss (sparsities counted)")
        t.add_column("task")
        t.add_column("stage")
        bases = [m for m in available_methods() if m != "slamp"]
        for b in bases:
            t.add_column(b, justify="center")
        for task, stage, counts in verdict_counts(verdicts, bases):
            t.add_row(task, stage.removeprefix("acc_"), *("/".join(map(str, c)) for c in counts))
        con.print(t)


# ----------------------------------------------------------------------------- markdown


def _pm(m: float | None, sd: float | None) -> str:
    if m is None or (isinstance(m, float) and math.isnan(m)):
        return "-"
    return f"{m:.3f}" if not sd else f"{m:.3f} ± {sd:.3f}"


def verdict_counts(verdicts: list[dict[str, Any]], bases: list[str]
                   ) -> list[tuple[str, str, list[tuple[int, int, int]]]]:
    """(task, stage, [(wins, ties, losses) per baseline]) for every task and stage."""
    rows = []
    for task in sorted({v["task"] for v in verdicts}):
        for stage in STAGES:
            counts = []
            for b in bases:
                vs = [v["verdict"] for v in verdicts
                      if v["task"] == task and v["stage"] == stage and v["baseline"] == b]
                counts.append((vs.count("win"), vs.count("tie"), vs.count("loss")))
            rows.append((task, stage, counts))
    return rows


def _method_table(rs: list[dict[str, Any]], variants: list[str], sps: list[float], stage: str,
                  label: str) -> list[str]:
    """One task's table of a stage per sparsity and method (best accuracy in bold)."""
    out = [f"**{label}** (mean ± std over {rs[0]['seeds']} seeds)", "",
           "| sparsity | " + " | ".join(variants) + " |",
           "|---|" + "---|" * len(variants)]
    for s in sps:
        cells = []
        best = max((r[stage] for r in rs if r["sparsity"] == s and r["variant"]
                    in variants), default=None)
        for v in variants:
            r = next((r for r in rs if r["variant"] == v and r["sparsity"] == s), None)
            c = "-" if r is None else (f"{r[stage]:.1f}" if stage == "synops_reduction"
                                       else _pm(r[stage], r[stage + "_std"]))
            if r is not None and stage != "synops_reduction" and r[stage] == best:
                c = f"**{c}**"
            cells.append(c)
        out.append(f"| {s:.2f} | " + " | ".join(cells) + " |")
    out.append("")
    return out


def _ablation_table(rs: list[dict[str, Any]], names: list[str], asps: list[float], stage: str,
                    label: str, default: str) -> list[str]:
    """One task's ablation table of a stage, with a row of means over the sparsities."""
    out = [f"**Ablations, {label}** (slamp = lambda {default}, uniform timestep weights, "
           "current matching on)", "",
           "| sparsity | " + " | ".join(names) + " |",
           "|---|" + "---|" * len(names)]
    for s in asps:
        cells = []
        for n in names:
            r = next((r for r in rs if r["variant"] == n and r["sparsity"] == s),
                     None)
            cells.append("-" if r is None else _pm(r[stage], r[stage + "_std"]))
        out.append(f"| {s:.2f} | " + " | ".join(cells) + " |")
    means = []
    for n in names:
        v = [r[stage] for r in rs if r["variant"] == n and r["sparsity"] in asps]
        ok = len(v) == len(asps) and not any(math.isnan(x) for x in v)
        means.append(f"{np.mean(v):.3f}" if ok else "-")
    out.append("| mean | " + " | ".join(means) + " |")
    out.append("")
    return out


def _task_section(task: str, rows: list[dict[str, Any]], default: str) -> list[str]:
    """A task's method tables per stage, then its ablation tables when it has ablation runs."""
    rs = [r for r in rows if r["task"] == task]
    variants = [m for m in available_methods() if any(r["variant"] == m for r in rs)]
    sps = sorted({r["sparsity"] for r in rs if r["variant"] in available_methods()})
    out = [f"### {task}: dense accuracy {rs[0]['acc_dense']:.3f}", ""]
    for stage, label in (("acc_pruned", "right after pruning"),
                         ("acc_current_matched", "after current matching"),
                         ("acc_retrained", "after retraining"),
                         ("synops_reduction", "SynOps reduction (dense / pruned, x)")):
        out += _method_table(rs, variants, sps, stage, label)
    abl = [a for a in ABLATIONS if a != f"slamp.{default}" and any(
        r["variant"] == a for r in rs)]
    asps = sorted({r["sparsity"] for r in rs if r["variant"] in abl})
    if asps:
        names = ["slamp", *abl, "lamp"]
        for stage, label in (("acc_pruned", "right after pruning"),
                             ("acc_current_matched", "after current matching"),
                             ("acc_retrained", "after retraining")):
            out += _ablation_table(rs, names, asps, stage, label, default)
    return out


def _variant_section(vv: list[dict[str, Any]]) -> list[str]:
    """Every lambda variant against LAMP (win / tie / loss), and the issue's goal per variant."""
    lvs = [lv for lv in LAMBDA_NAMES if any(v["variant"] == lv for v in vv)]
    out = ["### Each lambda variant against LAMP (win / tie / loss over the ablation "
           "sparsities)", "",
           "| task | stage | " + " | ".join(lvs) + " |", "|---|---|" + "---|" * len(lvs)]
    for task in sorted({v["task"] for v in vv}):
        for stage in STAGES:
            cells = []
            for lv in lvs:
                vs = [v["verdict"] for v in vv
                      if v["task"] == task and v["stage"] == stage and v["variant"] == lv]
                cells.append(f"{vs.count('win')} / {vs.count('tie')} / {vs.count('loss')}")
            out.append(f"| {task} | {stage.removeprefix('acc_')} | " + " | ".join(cells) + " |")
    out += ["", "Against the goal (after retraining no loss to LAMP at 70-98%; before retraining, "
            "after current matching, a win at 80-98%): sparsities that miss it, with the "
            "accuracy difference to LAMP", "",
            "| task | variant | retrained: losses at 0.70-0.98 | current matched: no win at "
            "0.80-0.98 |", "|---|---|---|---|"]
    for task in sorted({v["task"] for v in vv}):
        for lv in lvs:
            def miss(stage: str, lo: float, bad: tuple[str, ...], task: str = task,
                     lv: str = lv) -> str:
                vs = [v for v in vv if v["task"] == task and v["variant"] == lv
                      and v["stage"] == stage and v["sparsity"] >= lo - 1e-9]
                if not vs:
                    return "-"
                m = [f"{v['sparsity']:.2f} ({v['diff']:+.3f})" for v in vs if v["verdict"] in bad]
                return ", ".join(m) if m else "none"
            out.append(f"| {task} | {lv} | {miss('acc_retrained', 0.7, ('loss',))} | "
                       f"{miss('acc_current_matched', 0.8, ('loss', 'tie'))} |")
    out.append("")
    return out


def _verdict_section(verdicts: list[dict[str, Any]]) -> list[str]:
    """Win / tie / loss counts of SLAMP against each baseline, then SLAMP's losses one by one."""
    bases = [m for m in available_methods() if m != "slamp"]
    out = ["### SLAMP against each baseline (win / tie / loss over the sparsities)", "",
           "| task | stage | " + " | ".join(bases) + " |", "|---|---|" + "---|" * len(bases)]
    for task, stage, counts in verdict_counts(verdicts, bases):
        cells = [" / ".join(map(str, c)) for c in counts]
        out.append(f"| {task} | {stage.removeprefix('acc_')} | " + " | ".join(cells) + " |")
    out.append("")
    losses = [v for v in verdicts if v["verdict"] == "loss"]
    if losses:
        out += ["Losses of SLAMP (accuracy difference SLAMP - baseline):", ""]
        for v in sorted(losses, key=lambda v: (v["task"], v["baseline"], v["stage"],
                                               v["sparsity"])):
            out.append(f"- {v['task']}, {v['baseline']}, {v['stage'].removeprefix('acc_')},"
                       f" sparsity {v['sparsity']:.2f}: {v['slamp']:.3f} vs "
                       f"{v['baseline_acc']:.3f} ({v['diff']:+.3f})")
        out.append("")
    return out


def _lambda_section(lam: list[dict[str, Any]]) -> list[str]:
    """The per-layer lambdas of the seed-0 calibration, analytic and measured."""
    out = ["### Lambdas per layer (seed 0 calibration subset)", "",
           "| task | layer | max | l2 | sqrt | measured | downstream | max, gradient weights |",
           "|---|---|---|---|---|---|---|---|"]
    for rec in lam:
        if rec["seed"] != 0:
            continue
        au = rec["analytic_uniform"]
        for layer, v in rec["measured"].items():
            ds = au["downstream"][layer] if "downstream" in au else math.nan
            out.append(f"| {rec['task']} | {layer} | {au['max'][layer]:.2f} | "
                       f"{au['l2'][layer]:.2f} | {au['sqrt'][layer]:.2f} | {v:.2f} | "
                       f"{ds:.2f} | {rec['analytic_gradient_max'][layer]:.2f} |")
    out.append("")
    return out


def _allocation_section(runs: list[dict[str, Any]]) -> list[str]:
    """Weights kept per layer and method at each sparsity, per task (seed 0)."""
    out = ["### Per-layer weights kept, SLAMP vs LAMP vs others (seed 0)", ""]
    shown = [*available_methods(), *(f"slamp.{lv}" for lv in LAMBDA_NAMES)]
    for task in sorted({r["task"] for r in runs}):
        rs = [r for r in runs if r["task"] == task and r["seed"] == 0 and r["variant"] in shown]
        if not rs:
            continue
        layers = list(rs[0]["layers"])
        out += [f"**{task}** (layer sizes: " + ", ".join(
            f"{la} {rs[0]['layers'][la]['total']}" for la in layers) + ")", "",
                "| sparsity | method | " + " | ".join(layers) + " |",
                "|---|---|" + "---|" * len(layers)]
        for s in sorted({r["sparsity"] for r in rs}):
            for m in shown:
                r = next((r for r in rs if r["sparsity"] == s and r["variant"] == m), None)
                if r is None:
                    continue
                out.append(f"| {s:.2f} | {m} | " + " | ".join(
                    str(r["layers"][la]["kept"]) for la in layers) + " |")
        out.append("")
    return out


def merge(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Several results files as one: their runs pooled, then aggregated and compared again.

    The files must share the default lambda variant. A run whose (task, variant, sparsity,
    seed) an earlier file already has is the same configuration measured twice; the first is
    kept. Lambda records are kept once per (task, seed).
    """
    if len(parts) == 1:
        return parts[0]
    defaults = {p["meta"].get("default_lambda_variant", "max") for p in parts}
    if len(defaults) > 1:
        raise ValueError(f"cannot merge results files of different default lambda variants "
                         f"{sorted(defaults)}")
    runs: dict[tuple[str, str, float, int], dict[str, Any]] = {}
    lams: dict[tuple[str, int], dict[str, Any]] = {}
    for p in parts:
        for r in p["runs"]:
            runs.setdefault((r["task"], r["variant"], r["sparsity"], r["seed"]), r)
        for rec in p.get("lambdas") or []:
            lams.setdefault((rec["task"], rec["seed"]), rec)
    default = defaults.pop()
    rows = aggregate(list(runs.values()), alias=f"slamp.{default}")
    return {"meta": {**parts[0]["meta"], "merged": [p["meta"] for p in parts]},
            "summary": rows, "runs": list(runs.values()), "lambdas": list(lams.values()),
            "verdicts": [v for st in STAGES for v in compare(rows, st)],
            "variant_verdicts": [v for st in STAGES for v in compare_variants(rows, st)]}


def render_markdown(data: dict[str, Any]) -> str:
    """Markdown tables of a results JSON (what docs/benchmarks.md shows)."""
    rows, verdicts, runs = data["summary"], data["verdicts"], data["runs"]
    default = data["meta"].get("default_lambda_variant", "max")
    out: list[str] = []
    for task in sorted({r["task"] for r in rows}):
        out += _task_section(task, rows, default)
    if verdicts:
        out += _verdict_section(verdicts)
    if data.get("variant_verdicts"):
        out += _variant_section(data["variant_verdicts"])
    lam = data.get("lambdas") or []
    if lam:
        out += _lambda_section(lam)
    # per-layer allocation, SLAMP vs LAMP (seed 0)
    out += _allocation_section(runs)
    return "\n".join(out)


# ----------------------------------------------------------------------------- driver


def _init_worker() -> None:
    torch.set_num_threads(1)


def _run_spec(args: tuple[Task, RunSpec]) -> dict[str, Any]:
    return run_one(*args)


def _lambda_job(args: tuple[Task, int]) -> dict[str, Any]:
    return measure_lambdas(*args)


def _map(fn, items: list, jobs: int, label: str) -> list:
    """Run ``fn`` over ``items`` (in worker processes when jobs > 1), with a progress bar."""
    from rich.progress import Progress

    results = []
    with Progress(transient=True) as prog:
        bar = prog.add_task(label, total=len(items))
        if jobs <= 1:
            for it in items:
                results.append(fn(it))
                prog.advance(bar)
        else:
            import multiprocessing as mp

            with ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("spawn"),
                                     initializer=_init_worker) as ex:
                for r in ex.map(fn, items):
                    results.append(r)
                    prog.advance(bar)
    return results


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description="slamp-deploy pruning-quality benchmark")
    ap.add_argument("--mode", choices=sorted(MODES), default="quick")
    ap.add_argument("--tasks", nargs="+", choices=TASKS)
    ap.add_argument("--methods", nargs="+", choices=available_methods())
    ap.add_argument("--sparsities", nargs="+", type=float)
    ap.add_argument("--seeds", nargs="+", type=int)
    ap.add_argument("--epochs", type=int, help="retraining epochs (all tasks)")
    ap.add_argument("--train-limit", type=int, help="use only the first N retraining samples")
    ap.add_argument("--eval-limit", type=int, help="use only the first N evaluation samples")
    ap.add_argument("--no-ablations", action="store_true")
    ap.add_argument("--ablations", nargs="+", choices=list(ABLATIONS),
                    help="run only these ablations (default: all)")
    ap.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1),
                    help="worker processes (1 thread each); 1 runs in this process")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--name", help="result file stem (default quality_<mode>)")
    ap.add_argument("--no-plot", action="store_true")
    ap.add_argument("--lambdas-only", action="store_true",
                    help="only measure every layer's lambdas (analytic and measured) per task "
                         "and seed, and write them as a results file without runs")
    ap.add_argument("--render", type=Path, nargs="+", metavar="JSON",
                    help="print the markdown tables of existing results files (several: one "
                         "run per task, merged) and exit")
    args = ap.parse_args(argv)
    if args.render:
        md = render_markdown(merge([json.loads(p.read_text()) for p in args.render]))
        print(md)
        return {"markdown": md}

    mode = dict(MODES[args.mode])
    tasks = args.tasks or mode["tasks"]
    for key in ("methods", "sparsities", "seeds"):
        if getattr(args, key):
            mode[key] = tuple(getattr(args, key))
    if args.sparsities:
        mode["ablation_sparsities"] = tuple(args.sparsities)
    if args.epochs is not None:
        mode["epochs"] = dict.fromkeys(TASKS, args.epochs)
    train_limit = dict(mode["train_limit"])
    if args.train_limit is not None:
        train_limit = dict.fromkeys(TASKS, args.train_limit)
    eval_limit = args.eval_limit if args.eval_limit is not None else mode["eval_limit"]
    name = args.name or f"quality_{args.mode}"
    ablations: bool | list[str] = (False if args.no_ablations
                                   else list(args.ablations) if args.ablations
                                   else list(mode["ablations"]) if "ablations" in mode else True)
    measured = ablations is True or "slamp.measured" in (ablations or [])

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="slamp-bench-") as work:
        prepared = {t: prepare(t, Path(work) / t, train_limit=train_limit[t],
                               eval_limit=eval_limit) for t in tasks}
        lam_jobs = ([(prepared[t], s) for t in tasks for s in mode["seeds"]]
                    if measured or args.lambdas_only else [])
        lam_results = _map(_lambda_job, lam_jobs, args.jobs, "measured lambdas")
        lambdas = {(r["task"], r["seed"]): r["measured"] for r in lam_results}
        specs = [] if args.lambdas_only else plan(mode, tasks, lambdas, ablations)
        runs = _map(_run_spec, [(prepared[s.task], s) for s in specs], args.jobs, "runs")
        descriptions = {t: prepared[t].description for t in tasks}
    rows = aggregate(runs, alias=f"slamp.{DEFAULT_LAMBDA}")
    verdicts = [v for st in STAGES for v in compare(rows, st)]
    variant_verdicts = [v for st in STAGES for v in compare_variants(rows, st)]
    meta = {"mode": args.mode, "argv": list(sys.argv[1:] if argv is None else argv),
            "tasks": descriptions, "methods": list(mode["methods"]),
            "sparsities": list(mode["sparsities"]), "seeds": list(mode["seeds"]),
            "ablation_sparsities": list(mode["ablation_sparsities"]) if ablations else [],
            "ablations": list(ABLATIONS) if ablations is True else list(ablations or []),
            "default_lambda_variant": DEFAULT_LAMBDA,
            "retrain_epochs": {t: mode["epochs"][t] for t in tasks},
            "train_limit": {t: train_limit[t] for t in tasks}, "eval_limit": eval_limit,
            "jobs": args.jobs, "wall_seconds": round(time.perf_counter() - t0, 1),
            "environment": environment(),
            "tie_rule": "tie when |mean difference| <= max(0.005, std of either side)"}
    files = write_results(args.out, name, meta, runs, rows, verdicts, lam_results,
                          variant_verdicts)
    if not args.no_plot:
        files += plot(args.out, name, rows)
    print_tables(rows, verdicts)
    print(f"{len(runs)} runs in {meta['wall_seconds']} s; wrote "
          + ", ".join(str(p) for p in files))
    return {"meta": meta, "summary": rows, "verdicts": verdicts,
            "variant_verdicts": variant_verdicts, "runs": runs, "files": files}


if __name__ == "__main__":
    main()
