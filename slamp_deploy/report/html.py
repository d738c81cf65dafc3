"""report.html: one self-contained file (plots embedded as base64 PNG, inline CSS, no script, no
external reference), plus PNG copies of the plots for ``plots/``.

Everything is drawn from the report dict alone (what report.json holds), so the page can be
rebuilt from a saved report.json: ``render_files(json.load(open("report.json")))``. Plots use
matplotlib's Agg canvas directly (no pyplot, no global backend change), a fixed size and DPI and no
metadata, so the same report gives the same bytes.
"""

from __future__ import annotations

import base64
import html
import io
import re
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["PLOT_TITLES", "markdown_to_html", "render_files", "render_html", "render_plots"]

DPI = 100
#: plot file stem -> caption, in page order
PLOT_TITLES: dict[str, str] = {
    "accuracy": "Accuracy on the evaluation data, by stage",
    "accuracy_vs_sparsity": "Accuracy against sparsity (sweep)",
    "sparsity": "Per-layer sparsity allocation",
    "fit_map": "Fit map: cores per layer against the chip's total",
    "firing_rate": "Firing rate per layer and timestep",
    "synops": "Synaptic operations per layer, dense vs pruned",
    "energy_targets": "Energy per inference, per target",
    "energy_layers": "Energy per layer on the target",
    "energy_45nm": "45 nm reference energy per layer",
}
#: report.md heading prefix -> plots shown under it
_PLACEMENT = {
    "Accuracy": ("accuracy", "accuracy_vs_sparsity"),
    "Layers": ("sparsity",),
    "Fit": ("fit_map",),
    "Activity": ("firing_rate", "synops"),
    "Energy": ("energy_targets", "energy_layers", "energy_45nm"),
}
_DENSE_C, _PRUNED_C = "#9db4d0", "#1f5fa8"
_TERM_C = {"synops": "#1f5fa8", "spikes": "#e08a1e", "neuron_updates": "#3c9d5d",
           "static": "#8c8c8c"}


# --------------------------------------------------------------------------------------------
# Plots


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


def _plot_accuracy(report: Mapping[str, Any]) -> bytes | None:
    acc = report.get("accuracy") or {}
    stages = [(k, lab) for k, lab in (("dense", "dense"), ("pruned", "pruned"),
                                       ("current_matched", "current\nmatched"),
                                       ("retrained", "retrained")) if k in acc]
    if not stages:
        return None
    fig = _figure(6, 3.2)
    ax = fig.add_subplot()
    vals = [acc[k] for k, _ in stages]
    bars = ax.bar([lab for _, lab in stages], vals,
                  color=[_DENSE_C] + [_PRUNED_C] * (len(stages) - 1))
    ax.bar_label(bars, labels=[f"{v:.3f}" for v in vals], padding=2, fontsize=9)
    ax.set_ylim(0, 1.08)
    ax.set_ylabel("top-1 accuracy")
    sp = report.get("sparsity", {})
    ax.set_title(f"{report.get('method', '')} at sparsity {sp.get('achieved', 0):.3f}",
                 fontsize=10)
    _style(ax)
    return _png(fig)


def _plot_sweep(report: Mapping[str, Any]) -> bytes | None:
    sweep = report.get("sweep")
    points = sweep.get("points") if isinstance(sweep, dict) else None
    if not isinstance(points, list) or not points:
        return None
    series: dict[str, list[tuple[float, float]]] = {}
    for p in points:
        if not isinstance(p, dict) or "sparsity" not in p or "accuracy" not in p:
            continue
        series.setdefault(str(p.get("method", report.get("method", ""))), []).append(
            (float(p["sparsity"]), float(p["accuracy"])))
    if not series:
        return None
    fig = _figure(6, 3.4)
    ax = fig.add_subplot()
    for name, pts in sorted(series.items()):
        pts.sort()
        ax.plot([s for s, _ in pts], [a for _, a in pts], marker="o", label=name)
    ax.set_xlabel("sparsity")
    ax.set_ylabel("top-1 accuracy")
    ax.legend(frameon=False, fontsize=9)
    _style(ax)
    return _png(fig)


def _comparison(report: Mapping[str, Any]) -> dict[str, dict[str, float]]:
    """method -> layer -> sparsity from a ``comparison`` section, if it has that shape."""
    comp = report.get("comparison")
    alloc = comp.get("allocations") if isinstance(comp, dict) else None
    if not isinstance(alloc, dict):
        return {}
    out: dict[str, dict[str, float]] = {}
    for method, layers in alloc.items():
        if isinstance(layers, dict):
            out[str(method)] = {str(k): float(v) for k, v in layers.items()
                                if isinstance(v, (int, float))}
    return out


def _plot_sparsity(report: Mapping[str, Any]) -> bytes | None:
    layers = report.get("layers") or []
    if not layers:
        return None
    names = [row["name"] for row in layers]
    methods = {report.get("method", "chosen"): {row["name"]: row["sparsity"] for row in layers}}
    for m, v in _comparison(report).items():
        methods.setdefault(m, v)
    fig = _figure(max(6, 1.1 * len(names) + 2), 3.4)
    ax = fig.add_subplot()
    width = 0.8 / len(methods)
    for i, (m, vals) in enumerate(methods.items()):
        xs = [j + (i - (len(methods) - 1) / 2) * width for j in range(len(names))]
        ys = [vals.get(n, 0.0) for n in names]
        bars = ax.bar(xs, ys, width, label=m, color=_PRUNED_C if i == 0 else None)
        if len(methods) == 1:
            ax.bar_label(bars, labels=[f"{row['weights_kept']:,}/{row['weights_total']:,}"
                                       for row in layers], padding=2, fontsize=8)
    ax.set_xticks(range(len(names)), [f"{n}\n{row['kind']}" for n, row in zip(names, layers,
                                                                             strict=True)])
    ax.set_ylim(0, 1.12)
    ax.set_ylabel("sparsity (fraction pruned)")
    target = report.get("sparsity", {}).get("achieved")
    if target is not None:
        ax.axhline(target, color="#c0392b", linestyle="--", linewidth=1,
                   label=f"overall {target:.3f}")
    ax.legend(frameon=False, fontsize=8, loc="upper left")
    _style(ax)
    return _png(fig)


def _plot_fit(report: Mapping[str, Any]) -> bytes | None:
    fit = report.get("fit")
    rep = fit.get("report") if isinstance(fit, dict) else None
    if not isinstance(rep, dict):
        return None
    rows = [(lf["name"], lf["cores"]) for lf in rep.get("layers", [])
            if lf.get("cores") is not None]
    if not rows:
        return None
    avail = rep.get("cores_available")
    fig = _figure(6.5, 1.2 + 0.45 * (len(rows) + 1))
    ax = fig.add_subplot()
    labels = [n for n, _ in rows] + ["total"]
    vals = [c for _, c in rows] + [sum(c for _, c in rows)]
    colors = [_PRUNED_C] * len(rows) + ["#333333"]
    ys = list(range(len(labels)))[::-1]
    bars = ax.barh(ys, vals, color=colors)
    ax.bar_label(bars, labels=[str(v) for v in vals], padding=3, fontsize=9)
    ax.set_yticks(ys, labels)
    if avail:
        ax.axvline(avail, color="#c0392b", linestyle="--", linewidth=1.2)
        ax.text(avail, ys[0] + 0.45, f" {avail} cores available", color="#c0392b",
                fontsize=9, va="bottom", ha="right" if max(vals) < avail else "left")
    ax.set_xlabel("cores")
    verdict = "fits" if rep.get("fits") else "does not fit"
    ax.set_title(f"{rep.get('target', '')}: {verdict}", fontsize=10)
    ax.spines[["top", "right"]].set_visible(False)
    return _png(fig)


def _plot_firing(report: Mapping[str, Any]) -> bytes | None:
    act = report.get("activity")
    if not isinstance(act, dict) or "pruned" not in act:
        return None
    fig = _figure(6.5, 3.4)
    ax = fig.add_subplot()
    cmap = ["#1f5fa8", "#e08a1e", "#3c9d5d", "#c0392b", "#7d3c98", "#17a2b8", "#8c564b"]
    dense = {n["name"]: n for n in act.get("dense", {}).get("neuron_layers", [])}
    for i, n in enumerate(act["pruned"]["neuron_layers"]):
        c = cmap[i % len(cmap)]
        rates = n["firing_rate_per_step"]
        ax.plot(range(len(rates)), rates, marker="o", color=c, label=f"{n['name']} pruned")
        if n["name"] in dense:
            d = dense[n["name"]]["firing_rate_per_step"]
            ax.plot(range(len(d)), d, linestyle="--", color=c, alpha=0.6,
                    label=f"{n['name']} dense")
    ax.set_xlabel("timestep")
    ax.set_ylabel("spikes per neuron per step")
    ax.legend(frameon=False, fontsize=7, ncols=2)
    _style(ax)
    return _png(fig)


def _plot_synops(report: Mapping[str, Any]) -> bytes | None:
    act = report.get("activity")
    if not isinstance(act, dict) or "pruned" not in act or "dense" not in act:
        return None
    lp, ld = act["pruned"]["layers"], act["dense"]["layers"]
    names = [la["name"] for la in lp]
    fig = _figure(max(6, 1.1 * len(names) + 2), 3.4)
    ax = fig.add_subplot()
    xs = range(len(names))
    ax.bar([x - 0.2 for x in xs], [la["synops"] for la in ld], 0.4, color=_DENSE_C,
           label="dense")
    bars = ax.bar([x + 0.2 for x in xs], [la["synops"] for la in lp], 0.4, color=_PRUNED_C,
                  label="pruned")
    ax.bar_label(bars, labels=[_change(d["synops"], p["synops"]) for d, p in
                               zip(ld, lp, strict=True)], padding=2, fontsize=8)
    ax.set_xticks(list(xs), [f"{la['name']}\n{'MAC' if la['effective_macs'] else 'AC'}"
                             for la in lp])
    ax.set_ylabel("SynOps per sample")
    ax.legend(frameon=False, fontsize=9)
    _style(ax)
    return _png(fig)


def _change(a: float, b: float) -> str:
    return "" if not a else f"{(b - a) / a * 100:+.0f}%"


def _plot_energy_targets(report: Mapping[str, Any]) -> bytes | None:
    en = report.get("energy")
    if not isinstance(en, dict) or not en.get("targets"):
        return None
    from slamp_deploy.measure.energy import format_energy

    order = [en.get("target"), *sorted(k for k in en["targets"] if k != en.get("target"))]
    order = [k for k in order if k in en["targets"]]
    ref = en.get("reference_45nm", {})
    rows: list[tuple[str, dict[str, Any] | None, dict[str, Any] | None]] = [
        (k, en["targets"][k]["dense"], en["targets"][k]["pruned"]) for k in order]
    fig = _figure(7.5, 1.2 + 0.42 * (len(rows) + 2))
    ax = fig.add_subplot()
    labels, ys = [], []
    known = [v for _, d, p in rows for v in (d["total_j"], p["total_j"]) if v]  # type: ignore
    ann = ref.get("pruned", {}).get("ann_j")
    snn_d, snn_p = ref.get("dense", {}).get("snn_j"), ref.get("pruned", {}).get("snn_j")
    known += [v for v in (ann, snn_d, snn_p) if v]
    lo = min(known) / 3 if known else 1e-9
    n = len(rows) + 2
    for i, (name, d, p) in enumerate(rows):
        y = n - 1 - i
        ys.append(y)
        labels.append(name + (" (target)" if name == en.get("target") else ""))
        assert d is not None and p is not None
        if p["total_j"] is None:
            ax.text(lo, y, "  unknown: no published figure for any term", va="center",
                    fontsize=7.5, color="#777777")
            continue
        hatch = "" if p["plain"] else "///"
        ax.barh(y + 0.2, d["total_j"] or 0, 0.4, color=_DENSE_C, hatch=hatch, left=0)
        ax.barh(y - 0.2, p["total_j"], 0.4, color=_PRUNED_C, hatch=hatch, left=0,
                edgecolor="white")
        tag = [] if p["plain"] else (["partial"] if p["status"] == "partial" else []) + (
            ["unverified"] if p["unverified"] else [])
        ge = ">= " if p["status"] == "partial" else ""
        ax.text(p["total_j"], y - 0.2, f" {ge}{format_energy(p['total_j'])}"
                + (f" ({', '.join(tag)})" if tag else ""), va="center", fontsize=7.5)
    for j, (lab, a, b) in enumerate((("ANN, 45 nm", ann, ann),
                                     ("SNN, 45 nm", snn_d, snn_p))):
        y = 1 - j
        ys.append(y)
        labels.append(lab)
        if a:
            ax.barh(y + 0.2, a, 0.4, color=_DENSE_C)
        if b:
            ax.barh(y - 0.2, b, 0.4, color=_PRUNED_C if lab.startswith("SNN") else _DENSE_C)
            ax.text(b, y - 0.2, f" {format_energy(b)}", va="center", fontsize=7.5)
    ax.set_yticks(ys, labels, fontsize=8)
    ax.set_xscale("log")
    ax.set_xlim(left=lo)
    ax.set_xlabel("J per inference (log scale); hatched: partial or unverified")
    from matplotlib.patches import Patch

    ax.legend(handles=[Patch(color=_DENSE_C, label="dense"),
                       Patch(color=_PRUNED_C, label="pruned")], frameon=False, fontsize=8,
              loc="lower right")
    ax.spines[["top", "right"]].set_visible(False)
    return _png(fig)


def _plot_energy_layers(report: Mapping[str, Any]) -> bytes | None:
    en = report.get("energy")
    if not isinstance(en, dict) or en.get("target") not in en.get("targets", {}):
        return None
    est = en["targets"][en["target"]]["pruned"]
    layers = est["layers"]
    terms = [("synops", "synops_j"), ("spikes", "spikes_j"), ("neuron_updates",
                                                             "neuron_updates_j")]
    if not layers or all(la[k] is None for la in layers for _, k in terms):
        return None
    fig = _figure(max(6, 1.1 * len(layers) + 2), 3.4)
    ax = fig.add_subplot()
    bottom = [0.0] * len(layers)
    for name, key in terms:
        vals = [la[key] or 0.0 for la in layers]
        if all(la[key] is None for la in layers):
            continue
        ax.bar(range(len(layers)), vals, bottom=bottom, color=_TERM_C[name], label=name,
               hatch="" if est["plain"] else "///", edgecolor="white")
        bottom = [b + v for b, v in zip(bottom, vals, strict=True)]
    ax.set_xticks(range(len(layers)), [la["name"] for la in layers])
    ax.set_ylabel("J per inference")
    caveat = "" if est["plain"] else " (" + "; ".join(
        (["partial"] if est["status"] == "partial" else [])
        + (["unverified"] if est["unverified"] else [])) + ")"
    ax.set_title(f"{est['target']}, pruned{caveat}; static power is chip-wide, not shown",
                 fontsize=9)
    ax.legend(frameon=False, fontsize=8)
    _style(ax)
    return _png(fig)


def _plot_energy_45nm(report: Mapping[str, Any]) -> bytes | None:
    en = report.get("energy")
    ref = en.get("reference_45nm") if isinstance(en, dict) else None
    if not isinstance(ref, dict) or "pruned" not in ref:
        return None
    lp = ref["pruned"]["layers"]
    ld = {la["name"]: la for la in ref.get("dense", {}).get("layers", [])}
    names = [la["name"] for la in lp]
    fig = _figure(max(6, 1.1 * len(names) + 2), 3.4)
    ax = fig.add_subplot()
    xs = range(len(names))
    ax.bar([x - 0.27 for x in xs], [la["ann_j"] for la in lp], 0.27, color="#bbbbbb",
           label="ANN (MAC 4.6 pJ)")
    ax.bar(list(xs), [ld[n]["snn_j"] if n in ld else 0.0 for n in names], 0.27,
           color=_DENSE_C, label="SNN dense")
    ax.bar([x + 0.27 for x in xs], [la["snn_j"] for la in lp], 0.27, color=_PRUNED_C,
           label="SNN pruned (AC 0.9 pJ)")
    ax.set_xticks(list(xs), names)
    ax.set_ylabel("J per inference")
    ax.legend(frameon=False, fontsize=8)
    _style(ax)
    return _png(fig)


_PLOTTERS: dict[str, Callable[[Mapping[str, Any]], bytes | None]] = {
    "accuracy": _plot_accuracy,
    "accuracy_vs_sparsity": _plot_sweep,
    "sparsity": _plot_sparsity,
    "fit_map": _plot_fit,
    "firing_rate": _plot_firing,
    "synops": _plot_synops,
    "energy_targets": _plot_energy_targets,
    "energy_layers": _plot_energy_layers,
    "energy_45nm": _plot_energy_45nm,
}


def render_plots(report: Mapping[str, Any]) -> dict[str, bytes]:
    """Plot stem -> PNG bytes, for every plot the report has data for (page order)."""
    out = {}
    for name in PLOT_TITLES:
        png = _PLOTTERS[name](report)
        if png is not None:
            out[name] = png
    return out


# --------------------------------------------------------------------------------------------
# HTML


def _inline(text: str) -> str:
    s = html.escape(text, quote=False)
    s = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", s)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", s)


def _cells(line: str) -> list[str]:
    body = line.strip()[1:-1] if line.strip().endswith("|") else line.strip()[1:]
    return [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", body)]


def markdown_to_html(md: str) -> str:
    """The small markdown subset report.md uses: headings, pipe tables, bullets, paragraphs,
    ``**bold**`` and backtick code. Everything is escaped."""
    out: list[str] = []
    lines = md.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("#"):
            level = min(len(line) - len(line.lstrip("#")), 4)
            out.append(f"<h{level}>{_inline(line.lstrip('#').strip())}</h{level}>")
            i += 1
        elif line.startswith("|"):
            rows = []
            while i < len(lines) and lines[i].startswith("|"):
                rows.append(lines[i])
                i += 1
            head = _cells(rows[0])
            body = [r for r in rows[1:] if not re.fullmatch(r"\|[\s\-:|]*", r)]
            t = ["<div class='tw'><table><thead><tr>"
                 + "".join(f"<th>{_inline(c)}</th>" for c in head) + "</tr></thead><tbody>"]
            for r in body:
                t.append("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in _cells(r))
                         + "</tr>")
            out.append("".join(t) + "</tbody></table></div>")
        elif line.startswith("- "):
            items = []
            while i < len(lines) and lines[i].startswith("- "):
                items.append(f"<li>{_inline(lines[i][2:])}</li>")
                i += 1
            out.append("<ul>" + "".join(items) + "</ul>")
        elif not line.strip():
            i += 1
        else:
            para = []
            while i < len(lines) and lines[i].strip() and not lines[i].startswith(("#", "|",
                                                                                    "- ")):
                para.append(lines[i])
                i += 1
            out.append(f"<p>{_inline(' '.join(para))}</p>")
    return "\n".join(out)


_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;
margin:0;background:#f5f6f8;color:#1d2330;line-height:1.45}
main{max-width:1120px;margin:0 auto;padding:24px 28px 60px}
header{background:#1d2b45;color:#fff;padding:22px 28px}
header h1{margin:0 0 6px;font-size:22px;font-weight:600}
header p{margin:2px 0;color:#c9d3e6;font-size:14px}
.cards{display:flex;flex-wrap:wrap;gap:12px;margin:18px 0}
.card{background:#fff;border-radius:8px;padding:12px 16px;min-width:150px;flex:1;
box-shadow:0 1px 2px rgba(0,0,0,.08)}
.card .k{font-size:12px;color:#667;text-transform:uppercase;letter-spacing:.04em}
.card .v{font-size:20px;font-weight:600;margin-top:2px}
.card .s{font-size:12px;color:#667}
.caveat{background:#fff6db;border-left:4px solid #e0a800;padding:10px 14px;border-radius:4px;
margin:14px 0;font-size:14px}
section{background:#fff;border-radius:8px;padding:4px 22px 18px;margin:18px 0;
box-shadow:0 1px 2px rgba(0,0,0,.08)}
h1,h2{font-weight:600} h2{font-size:19px;border-bottom:1px solid #e4e7ec;padding-bottom:6px}
figure{margin:14px 0;text-align:center} figure img{max-width:100%;height:auto}
figcaption{font-size:13px;color:#556;margin-top:4px}
.tw{overflow-x:auto;margin:10px 0}
table{border-collapse:collapse;font-size:13px;min-width:50%}
th,td{padding:5px 9px;border-bottom:1px solid #e8eaee;text-align:right;vertical-align:top}
th:first-child,td:first-child{text-align:left}
th{background:#f0f2f6;font-weight:600} tr:nth-child(even) td{background:#fafbfc}
code{background:#f0f2f6;padding:1px 4px;border-radius:3px;font-size:12.5px}
footer{font-size:12px;color:#778;margin-top:30px}
"""


def _figure_html(name: str, png: bytes) -> str:
    data = base64.b64encode(png).decode("ascii")
    return (f"<figure id='plot-{name}'><img alt='{html.escape(PLOT_TITLES[name])}' "
            f"src='data:image/png;base64,{data}'><figcaption>{html.escape(PLOT_TITLES[name])} "
            f"(plots/{name}.png)</figcaption></figure>")


def _cards(report: Mapping[str, Any]) -> str:
    from slamp_deploy.measure.energy import format_energy
    from slamp_deploy.report.sections import format_count

    acc = report.get("accuracy", {})
    sp = report.get("sparsity", {})
    cards = []
    if "dense" in acc or "retrained" in acc:
        final = acc.get("retrained", acc.get("pruned"))
        cards.append(("accuracy", f"{final:.3f}" if final is not None else "-",
                      f"dense {acc['dense']:.3f}" if "dense" in acc else ""))
    if sp:
        cards.append(("sparsity", f"{sp.get('achieved', 0):.3f}",
                      f"{sp.get('weights_kept', 0):,} of {sp.get('weights_total', 0):,} kept"))
    act = report.get("activity")
    if isinstance(act, dict) and "pruned" in act:
        d, p = act["dense"]["totals"]["synops"], act["pruned"]["totals"]["synops"]
        cards.append(("SynOps / sample", format_count(p),
                      f"dense {format_count(d)} ({_change(d, p)})"))
    en = report.get("energy")
    if isinstance(en, dict) and en.get("target") in en.get("targets", {}):
        est = en["targets"][en["target"]]["pruned"]
        cards.append((f"energy on {en['target']}",
                      "unknown" if est["total_j"] is None else
                      ((">= " if est["status"] == "partial" else "")
                       + format_energy(est["total_j"]) + ("" if est["plain"] else " *")),
                      "per inference" + ("" if est["plain"] else "; * see caveats")))
    fit = report.get("fit")
    if isinstance(fit, dict) and "fits" in fit:
        rep = fit.get("report", {})
        cards.append(("fit", "fits" if fit["fits"] else "does not fit",
                      f"{rep.get('cores_used')} of {rep.get('cores_available')} cores"
                      if rep.get("cores_used") is not None else ""))
    return "<div class='cards'>" + "".join(
        f"<div class='card'><div class='k'>{html.escape(k)}</div><div class='v'>"
        f"{html.escape(v)}</div><div class='s'>{html.escape(s)}</div></div>"
        for k, v, s in cards) + "</div>"


def render_html(report: Mapping[str, Any], plots: Mapping[str, bytes]) -> str:
    """The page: header, key figures, energy caveats, then report.md's sections as HTML with
    each plot under its section (plots with no section at the end)."""
    from slamp_deploy.pipeline.run import render_markdown

    md = render_markdown(dict(report))
    chunks = re.split(r"(?m)^(?=## )", md)
    placed: set[str] = set()
    body = []
    for chunk in chunks[1:]:
        heading = chunk.split("\n", 1)[0][3:]
        figs = []
        for prefix, names in _PLACEMENT.items():
            if heading.startswith(prefix):
                for n in names:
                    if n in plots and n not in placed:
                        figs.append(_figure_html(n, plots[n]))
                        placed.add(n)
        body.append("<section>" + markdown_to_html(chunk.split("\n", 1)[0]) + "".join(figs)
                    + markdown_to_html(chunk.split("\n", 1)[1] if "\n" in chunk else "")
                    + "</section>")
    rest = [n for n in plots if n not in placed]
    if rest:
        body.append("<section><h2>More plots</h2>" + "".join(_figure_html(n, plots[n])
                                                          for n in rest) + "</section>")
    caveats = ""
    en = report.get("energy")
    if isinstance(en, dict) and en.get("flags"):
        caveats = ("<div class='caveat'><strong>Energy on " + html.escape(str(en["target"]))
                   + " is not plain fact:</strong><ul>" + "".join(
                       f"<li>{html.escape(f)}</li>" for f in en["flags"]) + "</ul></div>")
    title = f"slamp-deploy report: {report.get('method', '')} -> {report.get('target', '')}"
    head_lines = markdown_to_html("\n".join(line for line in chunks[0].splitlines()
                                            if line.startswith("- ")))
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>"
        f"<header><h1>{html.escape(title)}</h1>"
        f"<p>slamp-deploy {html.escape(str(report.get('slamp_deploy_version', '')))}, "
        f"report schema {html.escape(str(report.get('schema_version', '')))}</p></header>"
        f"<main>{_cards(report)}{caveats}<section>{head_lines}</section>{''.join(body)}"
        "<footer>Self-contained: every plot is embedded; PNG copies are in plots/. Numbers "
        "come from report.json.</footer></main></body></html>\n")


def render_files(report: Mapping[str, Any]) -> dict[str, bytes]:
    """``report.html`` and ``plots/<name>.png`` for the run's outputs."""
    plots = render_plots(report)
    files = {f"plots/{name}.png": png for name, png in plots.items()}
    files["report.html"] = render_html(report, plots).encode("utf-8")
    return files
