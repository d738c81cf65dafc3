"""``slamp-deploy energy``: its options, and the side-by-side table of
:func:`slamp_deploy.pipeline.energy.compare_energy` on the terminal."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import TYPE_CHECKING

from slamp_deploy.cli import options
from slamp_deploy.errors import UnknownTargetError, UsageError

if TYPE_CHECKING:
    from rich.table import Table

    from slamp_deploy.measure.activity import ActivityReport
    from slamp_deploy.measure.energy import EnergyEstimate, EnergyTerm
    from slamp_deploy.pipeline.energy import EnergyComparison

DEFAULT_TARGETS = "loihi2,truenorth,speck"


def energy_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="slamp-deploy energy",
        description="Energy per inference of a model on several chips, from exact SynOps, spike "
                    "and neuron-update counts on the evaluation data and each profile's "
                    "published figures (with their confidence), beside the 45 nm ANN/SNN "
                    "reference. Totals resting on unknown or unverified figures are marked.")
    p.add_argument("--targets", default=DEFAULT_TARGETS,
                   help=f"comma-separated profile names or paths/to/chip.toml, or 'all' "
                        f"(default {DEFAULT_TARGETS})")
    # energy runs in one process: torchrun's --dist-timeout would be accepted and ignored
    options.add_model_data(p, tuple(n for n in options.MODEL_DATA if n != "dist_timeout"))
    return p


def parse_targets(spec: str) -> list[str]:
    """Target names from ``--targets``; refuses unknown names, listing the known ones."""
    from slamp_deploy.chips.toml import available_targets

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


def _activity_line(act: ActivityReport) -> str:
    from slamp_deploy.report.format import format_count

    return (f"{act.samples} evaluation samples x {act.timesteps} steps: SynOps per sample "
            f"{format_count(act.synops)} (Effective_ACs {format_count(act.effective_acs)}, "
            f"Effective_MACs {format_count(act.effective_macs)}), ANN of the same shape "
            f"{format_count(act.ann_macs)} MACs; connection sparsity "
            f"{act.connection_sparsity:.3f}, activation sparsity {act.activation_sparsity:.3f}; "
            f"spikes per sample {format_count(act.spikes)}")


def _cell(term: EnergyTerm) -> str:
    from slamp_deploy.measure.energy import format_energy

    if term.omitted:
        return "unknown"
    return f"{format_energy(term.energy_j)} ({term.confidence})"


def _table(cmp: EnergyComparison) -> Table:
    from rich.table import Table

    from slamp_deploy.measure.energy import format_energy

    t = Table(title="energy and latency per inference (one sample, all timesteps)")
    for col in ("target", "SynOps", "spikes", "updates", "static", "total", "range",
                "latency", "status"):
        t.add_column(col, justify="left" if col in ("target", "status") else "right")
    for row in cmp.rows:
        est = row.estimate
        terms = {tm.name: tm for tm in est.terms}
        total = "unknown" if est.total_j is None else (
            (">= " if est.status == "partial" else "") + format_energy(est.total_j)
            + ("" if est.plain else " *"))
        status = est.status + (", unverified" if est.unverified else "")
        t.add_row(row.target, *(_cell(terms[k]) for k in ("synops", "spikes", "neuron_updates",
                                                          "static")), total,
                  est.range().strip()[1:-1] or "-", _latency_cell(est), status)
    t.add_section()
    ref = cmp.reference
    t.add_row("ANN 45 nm", f"{format_energy(ref.ann_j)} (D)", "-", "-", "-",
              format_energy(ref.ann_j), "-", "-", "reference")
    t.add_row("SNN 45 nm", f"{format_energy(ref.snn_j)} (D)", "-", "-", "-",
              format_energy(ref.snn_j), "-", "-", "reference")
    return t


def _latency_cell(est: EnergyEstimate) -> str:
    from slamp_deploy.measure.latency import format_time

    lat = est.latency
    if lat is None or lat.total_s is None:
        return "unknown"
    rng = ("" if lat.low_s is None or lat.high_s is None or lat.low_s == lat.high_s
           else f" [{format_time(lat.low_s)}-{format_time(lat.high_s)}]")
    basis = "tick" if lat.basis == "fixed tick" else "model"
    return f"{format_time(lat.total_s)}{rng} ({basis}, {lat.confidence})"


def run_energy(argv: Sequence[str]) -> int:
    """Print the side-by-side table; raises SlampError on bad input (the CLI prints it)."""
    from rich.console import Console
    from rich.markup import escape

    from slamp_deploy.measure.energy import CONNECTION
    from slamp_deploy.pipeline.energy import compare_energy

    args = energy_parser().parse_args(argv)
    cmp = compare_energy(options.to_config(args), parse_targets(args.targets))
    con = Console()
    if not con.is_terminal:  # piped or captured: wide enough for every column, no folding
        con = Console(width=200)
    con.print(escape(_activity_line(cmp.activity)), soft_wrap=True)
    con.print(_table(cmp))
    con.print("Each cell: energy (weakest confidence of its figures); range: the sum of the "
              "terms' low and high bounds; latency: steps x step time, from a fixed tick "
              "(tick) or the step-time model (model: max(step floor, time per synop x SynOps "
              "per step on the busiest core), compute-bound); static = static power x latency. "
              "* not plain fact: a partial total omits terms whose figure is unknown (a lower "
              "bound); an unverified one rests on U figures. 45 nm reference: ANN = MACs x 4.6 "
              "pJ, SNN = Effective_MACs x 4.6 pJ + Effective_ACs x 0.9 pJ (Horowitz, ISSCC "
              "2014). Routing hops are not modelled. " + CONNECTION[0].upper() + CONNECTION[1:]
              + ".", soft_wrap=True)
    for row in cmp.rows:
        if row.estimate.flags:
            con.print(escape(f"  {row.target}: " + "; ".join(row.estimate.flags)),
                      soft_wrap=True)
    return 0
