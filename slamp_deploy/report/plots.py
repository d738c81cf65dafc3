"""The plots of report.html, drawn from a :class:`~slamp_deploy.report.model.RunReport`: one
function per plot, each ``None`` when the report has no data for it. matplotlib's Agg canvas is
used directly (no pyplot, no global backend change) at a fixed size and DPI with no metadata, so
the same report gives the same PNG bytes."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

from slamp_deploy.measure.energy import ANN_45NM, EnergyEstimate, energy_caveat, format_energy
from slamp_deploy.report.format import pct_change
from slamp_deploy.report.model import RunReport, TargetEnergy

__all__ = ["PLOT_TITLES", "render_plots"]

DPI = 100
#: plot file stem -> caption, in page order
PLOT_TITLES: dict[str, str] = {
    "accuracy": "Accuracy on the evaluation data, by stage",
    "sparsity": "Per-layer sparsity allocation",
    "fit_map": "Fit map: cores per layer against the chip's total",
    "firing_rate": "Firing rate per layer and timestep",
    "synops": "Synaptic operations per layer, dense vs pruned",
    "energy_targets": "Energy per inference, per target",
    "energy_layers": "Energy per layer on the target",
    "energy_45nm": "45 nm reference energy per layer",
}
DENSE_C, PRUNED_C = "#9db4d0", "#1f5fa8"
_TERM_C = {"synops": "#1f5fa8", "spikes": "#e08a1e", "neuron_updates": "#3c9d5d",
           "static": "#8c8c8c"}
_CMAP = ("#1f5fa8", "#e08a1e", "#3c9d5d", "#c0392b", "#7d3c98", "#17a2b8", "#8c564b")


def _figure(w: float, h: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()


def _style(ax: Any) -> None:
    ax.spines[["top", "right"]].set_visible(False)
    ax.grid(axis="y", color="#e6e6e6", linewidth=0.8)
    ax.set_axisbelow(True)


def _plot_accuracy(report: RunReport) -> bytes | None:
    acc = report.accuracy
    stages = [(k, lab) for k, lab in (("dense", "dense"), ("pruned", "pruned"),
                                       ("current_matched", "current\nmatched"),
                                       ("retrained", "retrained")) if k in acc]
    if not stages:
        return None
    fig = _figure(6, 3.2)
    ax = fig.add_subplot()
    vals = [acc[k] for k, _ in stages]
    bars = ax.bar([lab for _, lab in stages], vals,
                  color=[DENSE_C] + [PRUNED_C] * (len(stages) - 1))
    ax.bar_label(bars, labels=[f"{v:.3f}" for v in vals], padding=2, fontsize=9)
    ax.set_ylim(0, 1.08)
    ax.set_ylabel("top-1 accuracy")
    ax.set_title(f"{report.method} at sparsity {report.sparsity.achieved:.3f}", fontsize=10)
    _style(ax)
    return _png(fig)


def _plot_sparsity(report: RunReport) -> bytes | None:
    layers = report.layers
    if not layers:
        return None
    fig = _figure(max(6, 1.1 * len(layers) + 2), 3.4)
    ax = fig.add_subplot()
    bars = ax.bar([float(j) for j in range(len(layers))], [row.sparsity for row in layers], 0.8,
                  label=report.method, color=PRUNED_C)
    ax.bar_label(bars, labels=[f"{row.weights_kept:,}/{row.weights_total:,}" for row in layers],
                 padding=2, fontsize=8)
    ax.set_xticks(range(len(layers)), [f"{row.name}\n{row.kind}" for row in layers])
    ax.set_ylim(0, 1.12)
    ax.set_ylabel("sparsity (fraction pruned)")
    target = report.sparsity.achieved
    ax.axhline(target, color="#c0392b", linestyle="--", linewidth=1,
               label=f"overall {target:.3f}")
    ax.legend(frameon=False, fontsize=8, loc="upper left")
    _style(ax)
    return _png(fig)


def _plot_fit(report: RunReport) -> bytes | None:
    if report.fit is None:
        return None
    rep = report.fit.report
    rows = [(lf.name, lf.cores) for lf in rep.layers if lf.cores is not None]
    if not rows:
        return None
    avail = rep.cores_available
    fig = _figure(6.5, 1.2 + 0.45 * (len(rows) + 1))
    ax = fig.add_subplot()
    labels = [n for n, _ in rows] + ["total"]
    vals = [c for _, c in rows] + [sum(c for _, c in rows)]
    colors = [PRUNED_C] * len(rows) + ["#333333"]
    ys = list(range(len(labels)))[::-1]
    bars = ax.barh(ys, vals, color=colors)
    ax.bar_label(bars, labels=[str(v) for v in vals], padding=3, fontsize=9)
    ax.set_yticks(ys, labels)
    if avail:
        ax.axvline(avail, color="#c0392b", linestyle="--", linewidth=1.2)
        ax.text(avail, ys[0] + 0.45, f" {avail} cores available", color="#c0392b",
                fontsize=9, va="bottom", ha="right" if max(vals) < avail else "left")
    ax.set_xlabel("cores")
    ax.set_title(f"{rep.target}: {'fits' if rep.fits else 'does not fit'}", fontsize=10)
    ax.spines[["top", "right"]].set_visible(False)
    return _png(fig)


def _plot_firing(report: RunReport) -> bytes | None:
    if report.activity is None:
        return None
    act = report.activity
    fig = _figure(6.5, 3.4)
    ax = fig.add_subplot()
    dense = {n.name: n for n in act.dense.neuron_layers}
    for i, n in enumerate(act.pruned.neuron_layers):
        c = _CMAP[i % len(_CMAP)]
        rates = n.firing_rate_per_step
        ax.plot(range(len(rates)), rates, marker="o", color=c, label=f"{n.name} pruned")
        if n.name in dense:
            d = dense[n.name].firing_rate_per_step
            ax.plot(range(len(d)), d, linestyle="--", color=c, alpha=0.6,
                    label=f"{n.name} dense")
    ax.set_xlabel("timestep")
    ax.set_ylabel("spikes per neuron per step")
    ax.legend(frameon=False, fontsize=7, ncols=2)
    _style(ax)
    return _png(fig)


def _plot_synops(report: RunReport) -> bytes | None:
    if report.activity is None:
        return None
    lp, ld = report.activity.pruned.layers, report.activity.dense.layers
    fig = _figure(max(6, 1.1 * len(lp) + 2), 3.4)
    ax = fig.add_subplot()
    xs = range(len(lp))
    ax.bar([x - 0.2 for x in xs], [la.synops for la in ld], 0.4, color=DENSE_C, label="dense")
    bars = ax.bar([x + 0.2 for x in xs], [la.synops for la in lp], 0.4, color=PRUNED_C,
                  label="pruned")
    ax.bar_label(bars, labels=[pct_change(d.synops, p.synops, none="")
                               for d, p in zip(ld, lp, strict=True)], padding=2, fontsize=8)
    ax.set_xticks(list(xs), [f"{la.name}\n{'MAC' if la.effective_macs else 'AC'}" for la in lp])
    ax.set_ylabel("SynOps per sample")
    ax.legend(frameon=False, fontsize=9)
    _style(ax)
    return _png(fig)


def _target_bar(ax: Any, y: int, lo: float, d: EnergyEstimate, p: EnergyEstimate) -> None:
    if p.total_j is None:
        ax.text(lo, y, "  unknown: no term could be computed", va="center",
                fontsize=7.5, color="#777777")
        return
    hatch = "" if p.plain else "///"
    ax.barh(y + 0.2, d.total_j or 0, 0.4, color=DENSE_C, hatch=hatch, left=0)
    ax.barh(y - 0.2, p.total_j, 0.4, color=PRUNED_C, hatch=hatch, left=0, edgecolor="white")
    for off, est in ((0.2, d), (-0.2, p)):  # the low-high range as a whisker
        if est.total_j and est.low_j and est.high_j and est.low_j < est.high_j:
            ax.errorbar(est.total_j, y + off, xerr=[[est.total_j - est.low_j],
                                                    [est.high_j - est.total_j]],
                        fmt="none", ecolor="#333333", elinewidth=0.8, capsize=2)
    ax.text(max(p.total_j, p.high_j or 0), y - 0.2, f" {p.short()}", va="center",
            fontsize=7.5)


def _plot_energy_targets(report: RunReport) -> bytes | None:
    en = report.energy
    if en is None or not en.targets:
        return None
    rows: list[TargetEnergy] = sorted(en.targets, key=lambda t: (t.name != en.target, t.name))
    fig = _figure(7.5, 1.2 + 0.42 * (len(rows) + 2))
    ax = fig.add_subplot()
    ann = en.reference_pruned.ann_j
    snn_d, snn_p = en.reference_dense.snn_j, en.reference_pruned.snn_j
    known = [v for t in rows for v in (t.dense.total_j, t.pruned.total_j, t.dense.low_j,
                                       t.pruned.low_j) if v]
    known += [v for v in (ann, snn_d, snn_p) if v]
    lo = min(known) / 3 if known else 1e-9
    n = len(rows) + 2
    labels, ys = [], []
    for i, t in enumerate(rows):
        ys.append(n - 1 - i)
        labels.append(t.name + (" (target)" if t.name == en.target else ""))
        _target_bar(ax, n - 1 - i, lo, t.dense, t.pruned)
    for j, (lab, a, b) in enumerate((("ANN, 45 nm", ann, ann), ("SNN, 45 nm", snn_d, snn_p))):
        y = 1 - j
        ys.append(y)
        labels.append(lab)
        if a:
            ax.barh(y + 0.2, a, 0.4, color=DENSE_C)
        if b:
            ax.barh(y - 0.2, b, 0.4, color=PRUNED_C if lab.startswith("SNN") else DENSE_C)
            ax.text(b, y - 0.2, f" {format_energy(b)}", va="center", fontsize=7.5)
    ax.set_yticks(ys, labels, fontsize=8)
    ax.set_xscale("log")
    ax.set_xlim(left=lo)
    ax.set_xlabel("J per inference (log scale); whiskers: low-high range; hatched: partial or "
                  "unverified")
    from matplotlib.patches import Patch

    ax.legend(handles=[Patch(color=DENSE_C, label="dense"),
                       Patch(color=PRUNED_C, label="pruned")], frameon=False, fontsize=8,
              loc="lower right")
    ax.spines[["top", "right"]].set_visible(False)
    return _png(fig)


def _plot_energy_layers(report: RunReport) -> bytes | None:
    primary = None if report.energy is None else report.energy.primary
    if primary is None:
        return None
    est = primary.pruned
    layers = est.layers
    terms = (("synops", "synops_j"), ("spikes", "spikes_j"),
             ("neuron_updates", "neuron_updates_j"))
    if not layers or all(getattr(la, k) is None for la in layers for _, k in terms):
        return None
    fig = _figure(max(6, 1.1 * len(layers) + 2), 3.4)
    ax = fig.add_subplot()
    bottom = [0.0] * len(layers)
    for name, key in terms:
        if all(getattr(la, key) is None for la in layers):
            continue
        vals = [getattr(la, key) or 0.0 for la in layers]
        ax.bar(range(len(layers)), vals, bottom=bottom, color=_TERM_C[name], label=name,
               hatch="" if est.plain else "///", edgecolor="white")
        bottom = [b + v for b, v in zip(bottom, vals, strict=True)]
    ax.set_xticks(range(len(layers)), [la.name for la in layers])
    ax.set_ylabel("J per inference")
    tags = energy_caveat(est)
    caveat = f" ({'; '.join(tags)})" if tags else ""
    ax.set_title(f"{est.target}, pruned{caveat}; static power is chip-wide, not shown",
                 fontsize=9)
    ax.legend(frameon=False, fontsize=8)
    _style(ax)
    return _png(fig)


def _plot_energy_45nm(report: RunReport) -> bytes | None:
    if report.energy is None:
        return None
    lp = report.energy.reference_pruned.layer_j()
    ld = {n: snn for n, _, snn in report.energy.reference_dense.layer_j()}
    names = [n for n, _, _ in lp]
    fig = _figure(max(6, 1.1 * len(names) + 2), 3.4)
    ax = fig.add_subplot()
    xs = range(len(names))
    mac, ac = ANN_45NM["mac_pj"], ANN_45NM["ac_pj"]
    ax.bar([x - 0.27 for x in xs], [ann for _, ann, _ in lp], 0.27, color="#bbbbbb",
           label=f"ANN (MAC {mac.value} {mac.unit})")
    ax.bar(list(xs), [ld.get(n, 0.0) for n in names], 0.27, color=DENSE_C, label="SNN dense")
    ax.bar([x + 0.27 for x in xs], [snn for _, _, snn in lp], 0.27, color=PRUNED_C,
           label=f"SNN pruned (AC {ac.value} {ac.unit})")
    ax.set_xticks(list(xs), names)
    ax.set_ylabel("J per inference")
    ax.legend(frameon=False, fontsize=8)
    _style(ax)
    return _png(fig)


_PLOTTERS: dict[str, Callable[[RunReport], bytes | None]] = {
    "accuracy": _plot_accuracy,
    "sparsity": _plot_sparsity,
    "fit_map": _plot_fit,
    "firing_rate": _plot_firing,
    "synops": _plot_synops,
    "energy_targets": _plot_energy_targets,
    "energy_layers": _plot_energy_layers,
    "energy_45nm": _plot_energy_45nm,
}


def render_plots(report: RunReport) -> dict[str, bytes]:
    """Plot stem -> PNG bytes, for every plot the report has data for (page order)."""
    out = {}
    for name in PLOT_TITLES:
        png = _PLOTTERS[name](report)
        if png is not None:
            out[name] = png
    return out
