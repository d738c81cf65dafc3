"""``slamp-deploy check``: its options, and the per-layer table and verdict of
:func:`slamp_deploy.pipeline.check.check_model` on the terminal.

The fit of a model depends only on its weights and the per-sample input shape, so ``check``
takes ``--model``, ``--weights`` and ``--data`` and none of the run's other model and data
options (time steps, encoding, readout, device, seeds, evaluation split): it used to accept them
and ignore them, which let a user believe they changed the verdict.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from slamp_deploy.cli import options

if TYPE_CHECKING:
    from rich.table import Table

    from slamp_deploy.chips.verdict import FitReport

#: the model and data options the fit depends on
CHECK_MODEL_DATA = ("model", "weights", "nir_dt", "data")


def check_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="slamp-deploy check",
        description="Map a (pruned or dense) model onto a chip and report every rule. Exit 0 "
                    "if it fits, 3 if it does not.")
    options.add_option(p, "target", required=True, default=None)
    options.add_option(p, "chips")
    options.add_option(p, "cores")
    options.add_model_data(p, CHECK_MODEL_DATA)
    return p


def _layer_table(rep: FitReport) -> Table:
    from rich.table import Table

    t = Table(title=f"fit on {rep.target}")
    for col in ("layer", "kind", "neurons", "synapses", "fan-in", "fan-out", "cores",
                "binding rule", "margin"):
        t.add_column(col, justify="left" if col in ("layer", "kind", "binding rule") else "right")
    for lf in rep.layers:
        t.add_row(lf.name, lf.kind, f"{lf.neurons:,}", f"{lf.kept_synapses:,}",
                  str(lf.max_fan_in), str(lf.max_fan_out), "-" if lf.cores is None
                  else str(lf.cores), lf.binding_rule or "-",
                  "-" if lf.binding_margin is None else f"{lf.binding_margin:,}")
    return t


def run_check(argv: Sequence[str]) -> int:
    """Print the per-layer mapping and the verdict; 0 if it fits, 3 if not."""
    from rich.console import Console

    from slamp_deploy.chips.verdict import NOT_CHECKED_HELP
    from slamp_deploy.pipeline.check import check_model

    rep = check_model(options.to_config(check_parser().parse_args(argv)))
    con = Console()
    con.print(_layer_table(rep))
    con.print(rep.summary(), soft_wrap=True)
    for v in rep.violations:
        how = "pruning relieves it" if v.relievable else "pruning cannot relieve it"
        remedy = "" if v.remedy in v.message else f"; {v.remedy}"  # yes/no rules carry it
        con.print(f"  violated: {v.message} ({how}{remedy})", soft_wrap=True)
    for w in rep.warnings:
        where = f"layer {w.layer}" if w.layer is not None else "network"
        con.print(f"  warning: {where}: {w.rule}: {w.reason}", soft_wrap=True)
    tight = rep.tightest()
    if tight:
        con.print("  tightest rules: " + "; ".join(
            f"{c.rule} on {c.layer or 'network'}: {c.value:,} of {c.limit:,} (margin {c.margin:,})"
            for c in tight if c.value is not None and c.limit is not None
            and c.margin is not None), soft_wrap=True)
    if rep.not_checked:
        con.print(f"  not checked: {'; '.join(rep.not_checked_lines())}", soft_wrap=True)
        con.print(f"  {NOT_CHECKED_HELP}", soft_wrap=True)
    if not rep.fits:
        print(f"error: {rep.summary()}", file=sys.stderr)
        return 3
    return 0
