"""report.md and every Markdown or terminal text of a section: the whole page from a
:class:`~slamp_deploy.report.model.RunReport`, and each section's ``markdown`` and ``summary``
from the measured values it is made of. It reads attributes only, never report.json keys; the
model calls the section renderers when it serializes, so nothing here imports the model."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from slamp_deploy.chips.verdict import NOT_CHECKED_HELP
from slamp_deploy.measure.activity import ActivityReport
from slamp_deploy.measure.energy import (
    ANN_45NM,
    AnnEstimate,
    EnergyEstimate,
    format_energy,
    format_range,
)
from slamp_deploy.measure.latency import LatencyEstimate, format_time
from slamp_deploy.report.format import format_count, pct_change

if TYPE_CHECKING:
    from slamp_deploy.chips.verdict import NOT_CHECKED_HELP, FitReport
    from slamp_deploy.report.model import RunReport

__all__ = ["DEFINITIONS", "TargetEstimates", "activity_markdown", "activity_summary",
           "energy_markdown", "energy_summary", "fit_markdown", "render_markdown"]

DEFINITIONS = ("NeuroBench 2.3 definitions: per sample (one inference of all timesteps), summed "
               "over timesteps; a synaptic operation is one non-zero input times one kept "
               "(non-zero) synapse; inputs outside {-1, 0, 1} count as MACs, spikes as ACs")
#: (target name, dense estimate, pruned estimate), the run's target first
TargetEstimates = tuple[str, EnergyEstimate, EnergyEstimate]
#: accuracy key -> its row label in report.md, in stage order
ACCURACY_LABELS = (("dense", "dense"), ("structured", "after the structure step (compact)"),
                   ("pruned", "right after pruning"),
                   ("current_matched", "after current matching"),
                   ("retrained", "after retraining"))


# --------------------------------------------------------------------------------------------
# The whole page


def render_markdown(report: RunReport) -> str:
    """A human-readable report.md from the typed report."""
    lines = _head(report)
    lines += ["", "## Accuracy on the evaluation data", "", "| stage | accuracy |", "|---|---|"]
    acc = report.accuracy
    lines += [f"| {label} | {acc[key]:.4f} |" for key, label in ACCURACY_LABELS if key in acc]
    lines += ["", "## Layers", "",
              "| layer | kind | weights | kept | sparsity | layer score | decided by | "
              "mean firing rate |",
              "|---|---|---|---|---|---|---|---|"]
    for row in report.layers:
        fr = row.firing_rate_per_step
        rate = f"{sum(fr) / len(fr):.4f}" if fr else "-"
        lines.append(f"| {row.name} | {row.kind} | {row.weights_total:,} | "
                     f"{row.weights_kept:,} | {row.sparsity:.4f} | "
                     f"{row.layer_score:.4f} | {row.binding} | {rate} |")
    if report.structure is not None:
        lines += structure_markdown(report.structure)
    if report.warnings:
        lines += ["", "## Warnings", ""] + [f"- {w}" for w in report.warnings]
    lines += ["", "## Time per stage (s)", "", "| stage | seconds |", "|---|---|"]
    lines += [f"| {k} | {v:.2f} |" for k, v in report.timings_s.items()]
    for md in report.section_markdown():
        if md:
            lines += ["", md]
    return "\n".join(lines) + "\n"


def _head(report: RunReport) -> list[str]:
    sp, data = report.sparsity, report.data
    return [
        "# slamp-deploy report",
        "",
        f"- target: **{report.target}**, method: **{report.method}**, "
        f"timesteps: {report.timesteps}, encoding: {report.encoding}, "
        f"readout: {report.readout}, seed: {report.seed}",
        f"- model: `{report.model.spec}` (weights: `{report.model.weights}`)",
        *(f"  - read from NIR, {a.name}: {a.value} ({a.source}: {a.note})"
          for a in report.model.nir_assumptions or ()),
        *(["  - \"exact\" below compares slamp-deploy's reading of this graph with its own "
           "exports and runtimes, not with the producer's simulator (docs/nir-interop.md)"]
          if report.model.nir_assumptions else []),
        f"- data: retrain {data.retrain.count} samples, calibration "
        f"{data.calibration.count}, evaluation "
        f"{data.evaluation.count} ({data.evaluation.source})",
        f"- sparsity: target {sp.target:.4f}, achieved {sp.achieved:.4f} "
        f"({sp.weights_kept:,} of {sp.weights_total:,} weights kept)",
    ]


# --------------------------------------------------------------------------------------------
# Activity


def activity_summary(dense: ActivityReport, pruned: ActivityReport, *, samples: int,
                     timesteps: int) -> str:
    """The two terminal lines of the activity section."""
    return "\n".join([
        f"SynOps per sample: dense {format_count(dense.synops)} -> pruned "
        f"{format_count(pruned.synops)} ({pct_change(dense.synops, pruned.synops)}); "
        f"ANN of the same shape: {format_count(pruned.ann_macs)} MACs",
        f"connection sparsity {pruned.connection_sparsity:.3f}, activation sparsity "
        f"{dense.activation_sparsity:.3f} -> {pruned.activation_sparsity:.3f}, spikes per sample "
        f"{format_count(dense.spikes)} -> {format_count(pruned.spikes)} (NeuroBench definitions, "
        f"{samples} evaluation samples x {timesteps} steps)",
    ])


def activity_markdown(dense: ActivityReport, pruned: ActivityReport, *, samples: int,
                      timesteps: int, encoding: str) -> str:
    """The activity section of report.md: NeuroBench totals, per layer, spikes per step."""
    lines = [
        f"## Activity and synaptic operations ({samples} evaluation samples x "
        f"{timesteps} steps, {encoding} encoding)",
        "",
        f"{DEFINITIONS}. Dense = the same model with the weights from before pruning.",
        "",
        *_activity_totals(dense, pruned),
        "",
        "| layer | kind | weights | kept | connection sparsity | fan-in max / mean | "
        "fan-out max / mean | neurons | firing rate dense -> pruned | SynOps dense | "
        "SynOps pruned | change |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for ld, lp in zip(dense.layers, pruned.layers, strict=True):
        rate = "-"
        if lp.neuron is not None:
            rate = (f"{dense.neuron_layer(lp.neuron).firing_rate:.4f} -> "
                    f"{pruned.neuron_layer(lp.neuron).firing_rate:.4f}")
        lines.append(
            f"| {lp.name} | {lp.kind} | {lp.weights_total:,} | {lp.weights_kept:,} | "
            f"{lp.connection_sparsity:.4f} | {lp.fan_in_max} / {lp.fan_in_mean:.1f} | "
            f"{lp.fan_out_max} / {lp.fan_out_mean:.1f} | {lp.neurons:,} | {rate} | "
            f"{ld.synops:,.1f} | {lp.synops:,.1f} | {pct_change(ld.synops, lp.synops)} |")
    T = pruned.timesteps
    lines += ["", "Spikes per sample at each step (pruned model):", "",
              "| neuron layer | neurons | " + " | ".join(f"t={t}" for t in range(T))
              + " | firing rate |", "|---|---|" + "---|" * T + "---|"]
    for n in pruned.neuron_layers:
        lines.append(f"| {n.name} | {n.neurons:,} | "
                     + " | ".join(f"{v:.1f}" for v in n.spikes_per_step)
                     + f" | {n.firing_rate:.4f} |")
    return "\n".join(lines)


def _activity_totals(dense: ActivityReport, pruned: ActivityReport) -> list[str]:
    lines = ["| metric (NeuroBench) | dense | pruned | change |", "|---|---|---|---|"]
    nd, npr = dense.neurobench(), pruned.neurobench()
    for key in ("ConnectionSparsity", "ActivationSparsity"):
        lines.append(f"| {key} | {nd[key]:.4f} | {npr[key]:.4f} | |")
    for key in ("Effective_ACs", "Effective_MACs", "Dense"):
        a, b = nd["SynapticOperations"][key], npr["SynapticOperations"][key]
        lines.append(f"| SynapticOperations.{key} | {a:,.1f} | {b:,.1f} | {pct_change(a, b)} |")
    lines += [
        f"| SynOps (ACs + MACs) | {dense.synops:,.1f} | {pruned.synops:,.1f} | "
        f"{pct_change(dense.synops, pruned.synops)} |",
        f"| spikes per sample | {dense.spikes:,.1f} | {pruned.spikes:,.1f} | "
        f"{pct_change(dense.spikes, pruned.spikes)} |",
        f"| neuron updates per sample | {dense.neuron_updates:,} | {pruned.neuron_updates:,} | |",
        f"| ANN of the same shape (MACs, one pass) | {dense.ann_macs:,} | {pruned.ann_macs:,} | |",
        f"| Footprint (bytes) | {nd['Footprint']:,} | {npr['Footprint']:,} | |",
        f"| ParameterCount | {nd['ParameterCount']:,} | {npr['ParameterCount']:,} | |",
        f"| non-zero parameters | {dense.parameters_nonzero:,} | {pruned.parameters_nonzero:,} "
        f"| {pct_change(dense.parameters_nonzero, pruned.parameters_nonzero)} |",
    ]
    return lines


# --------------------------------------------------------------------------------------------
# Energy


def energy_summary(ests: Sequence[TargetEstimates], ref_d: AnnEstimate,
                   ref_p: AnnEstimate) -> str:
    """The terminal lines of the energy section: the target, the 45 nm reference, the others."""
    lines: list[str] = []
    if ests:
        name, ed, ep = ests[0]
        why = f"; {'; '.join(ep.flags)}" if ep.flags else ""
        if ep.total_j is None:
            lines.append(f"energy on {name}: unknown per inference{why}")
        else:
            lines.append(f"energy on {name}: {ep.short()} per inference (dense "
                         f"{ed.short()}){why}")
        lines.append(f"latency on {name}: {_latency(ep.latency)} per inference"
                     + _static_phrase(ep))
    lines.append(f"45 nm reference per inference: ANN of the same shape "
                 f"{format_energy(ref_p.ann_j)}, SNN dense {format_energy(ref_d.snn_j)} -> "
                 f"pruned {format_energy(ref_p.snn_j)}")
    known = [f"{name} {ep.short()}" for name, _, ep in ests[1:] if ep.total_j is not None]
    unknown = [name for name, _, ep in ests[1:] if ep.total_j is None]
    if known or unknown:
        lines.append("other targets (pruned): " + ", ".join(known)
                     + (("; " if known else "") + f"unknown on {', '.join(unknown)}"
                        if unknown else ""))
    return "\n".join(lines)


def _j(v: float | None) -> str:
    return "unknown" if v is None else format_energy(v)


def _latency(lat: LatencyEstimate | None) -> str:
    return "unknown" if lat is None else lat.display()


def _static_phrase(est: EnergyEstimate) -> str:
    st = next((t for t in est.terms if t.name == "static"), None)
    if st is None or st.energy_j is None:
        return "; static energy unknown"
    rng = ("" if st.low_j is None or st.high_j is None or st.low_j == st.high_j
           else f" [{format_range(st.low_j, st.high_j)}]")
    return f"; static energy {format_energy(st.energy_j)}{rng}"


def _term_range(t: Any) -> str:
    if t.energy_j is None or t.low_j is None or t.high_j is None:
        return ""
    return "" if t.low_j == t.high_j else format_range(t.low_j, t.high_j)


def energy_markdown(ests: Sequence[TargetEstimates], ref_d: AnnEstimate, ref_p: AnnEstimate,
                    not_modelled: Sequence[str], connection: str = "") -> str:
    """The energy section of report.md: the target's terms and layers, every target, 45 nm."""
    lines = ["## Energy per inference", ""]
    if connection:
        lines += [f"Connection type assumed: {_md(connection)}.", ""]
    if ests:
        lines += _target_energy(*ests[0])
        lines += ["", "All targets, central value [low-high] (a total is shown as plain fact "
                  "only when every term is known and none rests on an unverified figure):", "",
                  "| target | dense | pruned | latency (pruned) | weakest figure used | "
                  "caveats |", "|---|---|---|---|---|---|"]
        for name, ed, ep in ests:
            conf = ep.confidence if ep.total_j is not None else "-"
            lines.append(f"| {name} | {ed.display()} | {ep.display()} | "
                         f"{_latency(ep.latency)} | {conf} | "
                         f"{_md('; '.join(ep.flags)) or '-'} |")
        needs = [f"{name}: {'; '.join(ep.needs)}" for name, _, ep in ests if ep.needs]
        if needs:
            lines += ["", "What an omitted term would take:", ""]
            lines += [f"- {_md(n)}" for n in needs]
    mac, ac = ANN_45NM["mac_pj"], ANN_45NM["ac_pj"]
    lines += ["", f"45 nm reference ({_md(mac.source)}; MAC {mac.value} pJ, AC "
              f"{ac.value} pJ, confidence {mac.confidence}):", "",
              "| | dense | pruned |", "|---|---|---|",
              f"| ANN of the same shape (MACs x {mac.value} pJ) | {_j(ref_d.ann_j)} | "
              f"{_j(ref_p.ann_j)} |",
              f"| SNN (Effective_MACs x {mac.value} pJ + Effective_ACs x {ac.value} pJ) | "
              f"{_j(ref_d.snn_j)} | {_j(ref_p.snn_j)} |",
              "", "Not modelled: " + "; ".join(not_modelled) + "."]
    return "\n".join(lines)


def _target_energy(name: str, ed: EnergyEstimate, ep: EnergyEstimate) -> list[str]:
    lines = [f"Target **{name}**, pruned model: **{ep.display()}** "
             f"(dense: {ed.display()}).", ""]
    lines += [f"- **caveat**: {f}" for f in ep.flags]
    if ep.flags:
        lines.append("")
    lines += _latency_lines(ep.latency)
    lines += ["| term | count per inference | figure | value [low-high] | confidence | source "
              "| energy | range |", "|---|---|---|---|---|---|---|---|"]
    for t in ep.terms:
        for i, (key, fig) in enumerate(t.figures):
            count = ("" if i else "unknown" if t.count is None
                     else f"{t.count:,.6g} {t.count_unit}")
            energy = "" if i else ("omitted (figure unknown)" if t.omitted else
                                   _j(t.energy_j) + (" (unverified)" if t.unverified else ""))
            lines.append(f"| {t.name if not i else ''} | {count} | {key} | "
                         f"{fig.describe()} | {fig.confidence} | {_md(_source(fig))} | "
                         f"{energy} | {'' if i else _term_range(t)} |")
    lines += ["", f"Per layer on {name} (pruned; static power is chip-wide):", "",
              "| layer | SynOps | spikes | neuron updates | E SynOps | E spikes | "
              "E updates | total |", "|---|---|---|---|---|---|---|---|"]
    for la in ep.layers:
        lines.append(f"| {la.name} | {la.synops:,.1f} | {la.spikes:,.1f} | "
                     f"{la.neuron_updates:,} | {_j(la.synops_j)} | {_j(la.spikes_j)} | "
                     f"{_j(la.neuron_updates_j)} | {_j(la.energy_j)} |")
    return lines


def _latency_lines(lat: LatencyEstimate | None) -> list[str]:
    if lat is None:
        return []
    lines = [f"Latency per inference: **{lat.display()}**, {lat.timesteps} steps"
             + ("" if lat.step_s is None else f" of {format_time(lat.step_s)}") + "."]
    if lat.busiest is not None and lat.basis == "step-time model":
        b = lat.busiest
        lines.append(f"The step-time model (max(timing.step_floor_s, timing.synop_time_s x "
                     f"SynOps per step on the busiest core)) charges layer {b.layer}: "
                     f"{b.synops_per_step:,.4g} SynOps per step on each of its {b.cores} "
                     f"cores ({b.cores_from}).")
    lines += [f"- {_md(c)}" for c in lat.caveats]
    return [*lines, ""]


def _source(fig: Any) -> str:
    return fig.source + (f" (note: {fig.note})" if fig.note else "")


def _md(s: str) -> str:
    return s.replace("|", "\\|").replace("\n", " ")


def fit_markdown(rep: FitReport) -> str:
    """The fit section of report.md: the verdict, the per-layer table, violations, unknowns."""
    lines = [f"## Fit on {rep.target}", "", f"**{rep.summary()}**", "",
             "| layer | neurons | kept synapses | max fan-in | max fan-out | cores | binding rule "
             "| margin |", "|---|---|---|---|---|---|---|---|"]
    for lf in rep.layers:
        lines.append(f"| {lf.name} | {lf.neurons:,} | {lf.kept_synapses:,} | {lf.max_fan_in} | "
                     f"{lf.max_fan_out} | {'-' if lf.cores is None else lf.cores} | "
                     f"{lf.binding_rule or '-'} | "
                     f"{'-' if lf.binding_margin is None else lf.binding_margin} |")
    for v in rep.violations:
        how = "pruning relieves it" if v.relievable else "pruning cannot relieve it"
        remedy = "" if v.remedy in v.message else f"; {v.remedy}"  # yes/no rules carry it
        lines.append(f"- violation: {v.message} ({how}{remedy})")
    for w in rep.warnings:
        lines.append(f"- warning: {'layer ' + w.layer if w.layer else 'network'}: {w.rule}: "
                     f"{w.reason}")
    tight = [c for c in rep.tightest() if c.value is not None and c.limit is not None]
    if tight:
        lines.append("- tightest rules: " + "; ".join(
            f"{c.rule} on {c.layer or 'network'}: {c.value:,} of {c.limit:,} (margin "
            f"{c.margin:,})" for c in tight if c.margin is not None))
    if rep.not_checked:
        lines.append(f"- not checked ({len(rep.not_checked)} rules): "
                     + "; ".join(rep.not_checked_lines()))
        lines.append(f"- {NOT_CHECKED_HELP}")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Structure (--structure)


def structure_markdown(st: Any) -> list[str]:
    """The structure section of report.md: neurons/channels before and after, per layer."""
    how = (f"chosen by the --fit search ({st.attempts} compact models checked)" if st.searched
           else "as given by --structure")
    lines = ["", "## Structure: neurons and channels removed", "",
             f"{st.method}: {st.channels_removed:,} of {st.channels_prunable:,} prunable "
             f"neurons/channels removed ({st.fraction_removed:.4f}, {how}); spiking neurons "
             f"{st.neurons_before:,} -> {st.neurons_after:,}, weights {st.weights_before:,} -> "
             f"{st.weights_after:,}. The compact model is `pruned.pt` (load it with "
             f"`--model compact_model.py:build --weights pruned.pt`) and `model.nir`.", "",
             "| layer | kind | outputs before | outputs after | inputs before | inputs after | "
             "group |", "|---|---|---|---|---|---|---|"]
    for r in st.layers:
        group = r.group if r.fixed is None else f"{r.group} (fixed: {r.fixed})"
        lines.append(f"| {r.name} | {r.kind} | {r.outputs_before:,} | {r.outputs_after:,} | "
                     f"{r.inputs_before:,} | {r.inputs_after:,} | {_md(group)} |")
    return lines


def structure_summary(st: Any) -> str:
    """The terminal line of the structure step."""
    how = "the --fit search" if st.searched else "--structure"
    return (f"structure ({st.method}, {how}): {st.channels_removed:,} of "
            f"{st.channels_prunable:,} prunable neurons/channels removed; spiking neurons "
            f"{st.neurons_before:,} -> {st.neurons_after:,}, weights {st.weights_before:,} -> "
            f"{st.weights_after:,}")


def relieved_markdown(relieved: Sequence[Any]) -> str:
    """The fit section's lines naming the limits the structure step relieved."""
    if not relieved:
        return ""
    parts = [f"{r.rule} on {r.layer or 'network'}: {r.before:,} -> "
             f"{'-' if r.after is None else format(r.after, ',')} (limit {r.limit:,})"
             for r in relieved]
    return "\n- relieved by the structure step (whole neurons/channels removed): " + \
        "; ".join(parts)
