"""``slamp-deploy energy``: measure a model's activity once and estimate its energy per inference
on several targets, side by side.

The model is measured as it is (a pruned checkpoint's zeros count as pruned synapses) on the
evaluation part of the data, split exactly as the main command splits it, so the figures match the
``energy`` section of a run with the same model, data and seed.
"""

from __future__ import annotations

import argparse
from typing import Any

from slamp_deploy.errors import UnknownTargetError, UsageError

DEFAULT_TARGETS = "loihi2,truenorth,speck"


def build_parser() -> argparse.ArgumentParser:
    from slamp_deploy.cli import _add_model_args

    p = argparse.ArgumentParser(
        prog="slamp-deploy energy",
        description="Energy per inference of a model on several chips, from exact SynOps, spike "
                    "and neuron-update counts on the evaluation data and each profile's "
                    "published figures (with their confidence), beside the 45 nm ANN/SNN "
                    "reference. Totals resting on unknown or unverified figures are marked.")
    p.add_argument("--targets", default=DEFAULT_TARGETS,
                   help=f"comma-separated profile names or paths/to/chip.toml, or 'all' "
                        f"(default {DEFAULT_TARGETS})")
    _add_model_args(p)
    return p


def parse_targets(spec: str) -> list[str]:
    """Target names from ``--targets``; refuses unknown names, listing the known ones."""
    from slamp_deploy.chips import available_targets

    known = available_targets()
    if spec.strip() == "all":
        return known
    names = [s.strip() for s in spec.split(",") if s.strip()]
    if not names:
        raise UsageError("--targets: empty; pass comma-separated names, e.g. "
                         f"{DEFAULT_TARGETS} (known: {', '.join(known)})")
    for n in names:
        if n not in known and not (n.endswith(".toml") or "/" in n or "\\" in n):
            raise UnknownTargetError(f"--targets: unknown target {n!r}; known targets: "
                                     f"{', '.join(known)} (or a path to a .toml profile)")
    return list(dict.fromkeys(names))


def measure_model(args: argparse.Namespace) -> Any:
    """Load the model and data named by ``args`` and measure the evaluation part."""
    from slamp_deploy.measure.activity import measure
    from slamp_deploy.pipeline.run import PipelineConfig, prepare

    cfg = PipelineConfig(model=args.model, weights=args.weights, data=args.data,
                         eval_data=args.eval_data, timesteps=args.timesteps,
                         encoding=args.encoding, readout=args.readout,
                         eval_fraction=args.eval_fraction, calib_samples=args.calib_samples,
                         device=args.device, seed=args.seed)
    cfg.validate()
    _loaded, graph, parts, T = prepare(cfg)
    return measure(graph, parts.eval, timesteps=T, encoding=cfg.encoding, seed=cfg.seed,
                   label="model")


def run_energy(argv: list[str]) -> int:
    """Print the side-by-side table; raises SlampError on bad input (the CLI prints it)."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from slamp_deploy.chips import load_profile
    from slamp_deploy.measure.energy import ann_estimate, estimate, format_energy
    from slamp_deploy.report.sections import format_count

    args = build_parser().parse_args(argv)
    names = parse_targets(args.targets)
    profiles = [load_profile(n) for n in names]  # before the (slower) measurement
    act = measure_model(args)
    ref = ann_estimate(act)
    con = Console()
    con.print(escape(
        f"{act.samples} evaluation samples x {act.timesteps} steps: SynOps per sample "
        f"{format_count(act.synops)} (Effective_ACs {format_count(act.effective_acs)}, "
        f"Effective_MACs {format_count(act.effective_macs)}), ANN of the same shape "
        f"{format_count(act.ann_macs)} MACs; connection sparsity "
        f"{act.connection_sparsity:.3f}, activation sparsity {act.activation_sparsity:.3f}; "
        f"spikes per sample {format_count(act.spikes)}"), soft_wrap=True)
    t = Table(title="energy per inference (one sample, all timesteps)")
    for col in ("target", "SynOps", "spikes", "updates", "static", "total", "status"):
        t.add_column(col, justify="left" if col in ("target", "status") else "right")

    def cell(term: Any) -> str:
        if term.omitted:
            return "unknown"
        return f"{format_energy(term.energy_j)} ({term.confidence})"

    notes = []
    for p in profiles:
        est = estimate(act, p)
        terms = {tm.name: tm for tm in est.terms}
        total = "unknown" if est.total_j is None else (
            (">= " if est.status == "partial" else "") + format_energy(est.total_j)
            + ("" if est.plain else " *"))
        status = est.status + (", unverified" if est.unverified else "")
        t.add_row(p.name, *(cell(terms[k]) for k in ("synops", "spikes", "neuron_updates",
                                                      "static")), total, status)
        if est.flags:
            notes.append(f"{p.name}: " + "; ".join(est.flags))
    t.add_section()
    t.add_row("ANN 45 nm", f"{format_energy(ref.ann_j)} (D)", "-", "-", "-",
              format_energy(ref.ann_j), "reference")
    t.add_row("SNN 45 nm", f"{format_energy(ref.snn_j)} (D)", "-", "-", "-",
              format_energy(ref.snn_j), "reference")
    con.print(t)
    con.print("Each cell: energy (weakest confidence of its figures). * not plain fact: a "
              "partial total omits terms whose figure is unknown (a lower bound); an "
              "unverified one rests on U figures. 45 nm reference: ANN = MACs x 4.6 pJ, SNN = "
              "Effective_MACs x 4.6 pJ + Effective_ACs x 0.9 pJ (Horowitz, ISSCC 2014). "
              "Routing hops are not modelled.", soft_wrap=True)
    for line in notes:
        con.print(escape(f"  {line}"), soft_wrap=True)
    return 0
