"""``slamp-deploy check``: map a (pruned or dense) model onto a chip and report every rule."""

from __future__ import annotations

import argparse
import sys

from slamp_deploy.chips import load_profile
from slamp_deploy.fit.search import fit_section
from slamp_deploy.fit.verdict import FitReport
from slamp_deploy.model.graph import trace
from slamp_deploy.model.loader import load_model
from slamp_deploy.pipeline.run import PipelineConfig, load_data
from slamp_deploy.prune.masks import alive_masks


def check_model(args: argparse.Namespace) -> FitReport:
    """Load the model named by ``args`` and check its current (non-zero) weights."""
    profile = load_profile(args.target)
    loaded = load_model(args.model, args.weights, device="cpu")
    cfg = PipelineConfig(target=args.target, model=args.model, weights=args.weights,
                         data=args.data)
    ds, _ = load_data(cfg)
    graph = trace(loaded.model, ds.sample_shape)
    rep, _section = fit_section(graph, alive_masks(graph), profile, args.chips, args.cores)
    return rep


def run_check(args: argparse.Namespace) -> int:
    """Print the per-layer mapping and the verdict; 0 if it fits, 3 if not."""
    from rich.console import Console
    from rich.table import Table

    rep = check_model(args)
    t = Table(title=f"fit on {rep.target}")
    for col in ("layer", "kind", "neurons", "synapses", "fan-in", "fan-out", "cores",
                "binding rule", "margin"):
        t.add_column(col, justify="left" if col in ("layer", "kind", "binding rule") else "right")
    for lf in rep.layers:
        t.add_row(lf.name, lf.kind, f"{lf.neurons:,}", f"{lf.kept_synapses:,}",
                  str(lf.max_fan_in), str(lf.max_fan_out), "-" if lf.cores is None
                  else str(lf.cores), lf.binding_rule or "-",
                  "-" if lf.binding_margin is None else f"{lf.binding_margin:,}")
    con = Console()
    con.print(t)
    con.print(rep.summary(), soft_wrap=True)
    for v in rep.violations:
        how = "pruning relieves it" if v.relievable else "pruning cannot relieve it"
        con.print(f"  violated: {v.message} ({how}; {v.remedy})", soft_wrap=True)
    if rep.not_checked:
        con.print(f"  not checked (figure unknown): "
                  f"{', '.join(sorted({r.rule for r in rep.not_checked}))}", soft_wrap=True)
    if not rep.fits:
        print(f"error: {rep.summary()}", file=sys.stderr)
        return 3
    return 0
