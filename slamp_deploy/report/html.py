"""report.html: one self-contained file (plots embedded as base64 PNG, inline CSS, no script, no
external reference), plus PNG copies of the plots for ``plots/``.

Everything is drawn from the typed report alone, which report.json holds, so the page can be
rebuilt from a saved report.json:
``render_files(RunReport.from_dict(json.load(open("report.json"))))``. The plots are
:mod:`slamp_deploy.report.plots`; the text is report.md (:mod:`slamp_deploy.report.markdown`)
turned into HTML, with each plot under its section.
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Mapping

from slamp_deploy.measure.energy import format_energy
from slamp_deploy.measure.latency import format_time
from slamp_deploy.report.format import format_count, pct_change
from slamp_deploy.report.markdown import render_markdown
from slamp_deploy.report.model import SCHEMA_VERSION, RunReport
from slamp_deploy.report.plots import PLOT_TITLES, render_plots

__all__ = ["markdown_to_html", "render_files", "render_html"]

#: report.md heading prefix -> plots shown under it
_PLACEMENT = {
    "Accuracy": ("accuracy",),
    "Layers": ("sparsity",),
    "Fit": ("fit_map",),
    "Activity": ("firing_rate", "synops"),
    "Energy": ("energy_targets", "energy_layers", "energy_45nm"),
}


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


def _cards(report: RunReport) -> str:
    acc, sp = report.accuracy, report.sparsity
    cards = []
    if "dense" in acc or "retrained" in acc:
        final = acc.get("retrained", acc.get("pruned"))
        cards.append(("accuracy", f"{final:.3f}" if final is not None else "-",
                      f"dense {acc['dense']:.3f}" if "dense" in acc else ""))
    cards.append(("sparsity", f"{sp.achieved:.3f}",
                  f"{sp.weights_kept:,} of {sp.weights_total:,} kept"))
    if report.activity is not None:
        d, p = report.activity.dense.synops, report.activity.pruned.synops
        cards.append(("SynOps / sample", format_count(p),
                      f"dense {format_count(d)} ({pct_change(d, p, none='')})"))
    primary = None if report.energy is None else report.energy.primary
    if primary is not None:
        est = primary.pruned
        rng = est.range().strip()
        cards.append((f"energy on {primary.name} (pruned)",
                      "unknown" if est.total_j is None else
                      ((">= " if est.status == "partial" else "")
                       + format_energy(est.total_j) + ("" if est.plain else " *")),
                      (f"range {rng[1:-1]} " if rng else "") + "per inference"
                      + ("" if est.plain else "; * see caveats")))
        if est.latency is not None:
            lat = est.latency
            cards.append((f"latency on {primary.name}",
                          "unknown" if lat.total_s is None else format_time(lat.total_s),
                          f"per inference ({lat.basis})" + (
                              f", range {format_time(lat.low_s)}-{format_time(lat.high_s)}"
                              if lat.low_s is not None and lat.high_s is not None
                              and lat.low_s != lat.high_s else "")))
    if report.fit is not None:
        rep = report.fit.report
        cards.append(("fit", "fits" if rep.fits else "does not fit",
                      f"{rep.cores_used} of {rep.cores_available} cores"
                      if rep.cores_used is not None else ""))
    return "<div class='cards'>" + "".join(
        f"<div class='card'><div class='k'>{html.escape(k)}</div><div class='v'>"
        f"{html.escape(v)}</div><div class='s'>{html.escape(s)}</div></div>"
        for k, v, s in cards) + "</div>"


def _sections(chunks: list[str], plots: Mapping[str, bytes]) -> list[str]:
    """report.md's ``## `` chunks as <section>s, each plot under the first heading it belongs
    to, then the plots no heading took."""
    placed: set[str] = set()
    body = []
    for chunk in chunks:
        heading, _, rest = chunk.partition("\n")
        figs = []
        for prefix, names in _PLACEMENT.items():
            if heading[3:].startswith(prefix):
                for n in names:
                    if n in plots and n not in placed:
                        figs.append(_figure_html(n, plots[n]))
                        placed.add(n)
        body.append("<section>" + markdown_to_html(heading) + "".join(figs)
                    + markdown_to_html(rest) + "</section>")
    left = [n for n in plots if n not in placed]
    if left:
        body.append("<section><h2>More plots</h2>" + "".join(_figure_html(n, plots[n])
                                                          for n in left) + "</section>")
    return body


def _caveats(report: RunReport) -> str:
    en = report.energy
    if en is None or not en.flags:
        return ""
    return ("<div class='caveat'><strong>Energy on " + html.escape(str(en.target))
            + " is not plain fact:</strong><ul>" + "".join(
                f"<li>{html.escape(f)}</li>" for f in en.flags) + "</ul></div>")


def render_html(report: RunReport, plots: Mapping[str, bytes]) -> str:
    """The page: header, key figures, energy caveats, then report.md's sections as HTML with
    each plot under its section (plots with no section at the end)."""
    chunks = re.split(r"(?m)^(?=## )", render_markdown(report))
    body = _sections(chunks[1:], plots)
    title = f"slamp-deploy report: {report.method} -> {report.target}"
    head_lines = markdown_to_html("\n".join(line for line in chunks[0].splitlines()
                                            if line.startswith("- ")))
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>"
        f"<header><h1>{html.escape(title)}</h1>"
        f"<p>slamp-deploy {html.escape(str(report.slamp_deploy_version))}, "
        f"report schema {SCHEMA_VERSION}</p></header>"
        f"<main>{_cards(report)}{_caveats(report)}<section>{head_lines}</section>{''.join(body)}"
        "<footer>Self-contained: every plot is embedded; PNG copies are in plots/. Numbers "
        "come from report.json.</footer></main></body></html>\n")


def render_files(report: RunReport) -> dict[str, bytes]:
    """``report.html`` and ``plots/<name>.png`` for the run's outputs."""
    plots = render_plots(report)
    files = {f"plots/{name}.png": png for name, png in plots.items()}
    files["report.html"] = render_html(report, plots).encode("utf-8")
    return files
