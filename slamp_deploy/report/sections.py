"""Activity, SynOps and energy sections of the report, and report.html with its plots.

:func:`add_activity_and_energy` runs after retraining, when the masks are permanent (pruned
weights are exact zeros in the modules). It measures the evaluation data twice, with the pruned
weights and with the dense weights put back for the duration of the measurement, and adds the
``activity`` and ``energy`` sections, ``report.html`` and ``plots/*.png`` to the run's outputs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch

from slamp_deploy.chips import available_targets, load_profile
from slamp_deploy.chips.profile import HardwareProfile
from slamp_deploy.measure.activity import ActivityReport, dense_weights, measure
from slamp_deploy.measure.energy import EnergyEstimate, ann_estimate, estimate, format_energy

if TYPE_CHECKING:
    from slamp_deploy.pipeline.run import PipelineContext

__all__ = ["activity_section", "add_activity_and_energy", "energy_section", "format_count",
           "target_profiles"]

DEFINITIONS = ("NeuroBench 2.3 definitions: per sample (one inference of all timesteps), summed "
               "over timesteps; a synaptic operation is one non-zero input times one kept "
               "(non-zero) synapse; inputs outside {-1, 0, 1} count as MACs, spikes as ACs")


def add_activity_and_energy(ctx: PipelineContext) -> None:
    """Measure activity on the evaluation data and add the report's activity/energy sections."""
    c, g = ctx.cfg, ctx.graph
    ev = ctx.parts.eval
    kw: dict[str, Any] = {"timesteps": ctx.timesteps, "encoding": c.encoding, "seed": c.seed}
    n_batches = -(-len(ev) // 256)
    with ctx.progress("activity (pruned, dense)", 2 * n_batches) as adv:
        pruned = measure(g, ev, label="pruned", progress=adv, **kw)
        dense = pruned
        if ctx.dense_weights:
            before = {la.name: la.weight.detach().clone() for la in g.layers}
            with dense_weights(g, ctx.dense_weights):
                dense = measure(g, ev, label="dense", progress=adv, **kw)
            for la in g.layers:  # the context manager restores; this proves it
                assert torch.equal(la.weight.detach(), before[la.name]), la.name
    encoding = "sequence" if ev.sequence else c.encoding
    data = {"part": "evaluation", "source": ev.source, "samples": pruned.samples,
            "timesteps": ctx.timesteps, "encoding": encoding}
    ctx.sections["activity"] = activity_section(dense, pruned, data)
    profiles = target_profiles(ctx.profile)
    fit = ctx.sections.get("fit")
    chips = None
    if isinstance(fit, dict) and isinstance(fit.get("report"), dict):
        chips = fit["report"].get("chips_used")
    ctx.sections["energy"] = energy_section(dense, pruned, profiles, chips_used=chips)
    # report.html and plots/ are rendered by the pipeline from the final report (with the
    # export section and the final timings)


def target_profiles(primary: HardwareProfile | None,
                    names: list[str] | None = None) -> list[HardwareProfile]:
    """The run's target first, then the shipped profiles (or ``names``) in name order."""
    out = [] if primary is None else [primary]
    for name in (available_targets() if names is None else names):
        if primary is None or name != primary.name:
            out.append(load_profile(name))
    return out


# --------------------------------------------------------------------------------------------
# Sections


def format_count(x: float) -> str:
    """3 significant digits with k/M/G, e.g. ``1.23M`` (display only)."""
    a = abs(x)
    for scale, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if a >= scale:
            return f"{x / scale:.3g}{unit}"
    return f"{x:.3g}" if x != int(x) else f"{int(x)}"


def _pct_change(a: float, b: float) -> str:
    if a == 0:
        return "-"
    return f"{(b - a) / a * 100:+.0f}%"


def activity_section(dense: ActivityReport, pruned: ActivityReport,
                     data: Mapping[str, Any]) -> dict[str, Any]:
    """The report's ``activity`` section: both measurements, NeuroBench names, summary, tables."""
    summary = "\n".join([
        f"SynOps per sample: dense {format_count(dense.synops)} -> pruned "
        f"{format_count(pruned.synops)} ({_pct_change(dense.synops, pruned.synops)}); "
        f"ANN of the same shape: {format_count(pruned.ann_macs)} MACs",
        f"connection sparsity {pruned.connection_sparsity:.3f}, activation sparsity "
        f"{dense.activation_sparsity:.3f} -> {pruned.activation_sparsity:.3f}, spikes per sample "
        f"{format_count(dense.spikes)} -> {format_count(pruned.spikes)} (NeuroBench definitions, "
        f"{data['samples']} evaluation samples x {data['timesteps']} steps)",
    ])
    return {
        "summary": summary,
        "markdown": activity_markdown(dense, pruned, data),
        "definitions": DEFINITIONS,
        "data": dict(data),
        "dense": dense.to_dict(),
        "pruned": pruned.to_dict(),
        "reduction": {
            "synops": _ratio(pruned.synops, dense.synops),
            "spikes": _ratio(pruned.spikes, dense.spikes),
            "synapses_kept": _ratio(sum(la.synapses_kept for la in pruned.layers),
                                    sum(la.synapses_kept for la in dense.layers)),
        },
    }


def _ratio(new: float, old: float) -> float | None:
    """Fraction removed: 1 - new/old (None when old is 0)."""
    return None if old == 0 else 1.0 - new / old


def activity_markdown(dense: ActivityReport, pruned: ActivityReport,
                      data: Mapping[str, Any]) -> str:
    lines = [
        f"## Activity and synaptic operations ({data['samples']} evaluation samples x "
        f"{data['timesteps']} steps, {data['encoding']} encoding)",
        "",
        f"{DEFINITIONS}. Dense = the same model with the weights from before pruning.",
        "",
        "| metric (NeuroBench) | dense | pruned | change |",
        "|---|---|---|---|",
    ]
    nd, npr = dense.neurobench(), pruned.neurobench()
    for key in ("ConnectionSparsity", "ActivationSparsity"):
        lines.append(f"| {key} | {nd[key]:.4f} | {npr[key]:.4f} | |")
    for key in ("Effective_ACs", "Effective_MACs", "Dense"):
        a, b = nd["SynapticOperations"][key], npr["SynapticOperations"][key]
        lines.append(f"| SynapticOperations.{key} | {a:,.1f} | {b:,.1f} | {_pct_change(a, b)} |")
    lines += [
        f"| SynOps (ACs + MACs) | {dense.synops:,.1f} | {pruned.synops:,.1f} | "
        f"{_pct_change(dense.synops, pruned.synops)} |",
        f"| spikes per sample | {dense.spikes:,.1f} | {pruned.spikes:,.1f} | "
        f"{_pct_change(dense.spikes, pruned.spikes)} |",
        f"| neuron updates per sample | {dense.neuron_updates:,} | {pruned.neuron_updates:,} | |",
        f"| ANN of the same shape (MACs, one pass) | {dense.ann_macs:,} | {pruned.ann_macs:,} | |",
        f"| Footprint (bytes) | {nd['Footprint']:,} | {npr['Footprint']:,} | |",
        f"| ParameterCount | {nd['ParameterCount']:,} | {npr['ParameterCount']:,} | |",
        f"| non-zero parameters | {dense.parameters_nonzero:,} | {pruned.parameters_nonzero:,} "
        f"| {_pct_change(dense.parameters_nonzero, pruned.parameters_nonzero)} |",
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
            f"{ld.synops:,.1f} | {lp.synops:,.1f} | {_pct_change(ld.synops, lp.synops)} |")
    T = pruned.timesteps
    lines += ["", "Spikes per sample at each step (pruned model):", "",
              "| neuron layer | neurons | " + " | ".join(f"t={t}" for t in range(T))
              + " | firing rate |", "|---|---|" + "---|" * T + "---|"]
    for n in pruned.neuron_layers:
        lines.append(f"| {n.name} | {n.neurons:,} | "
                     + " | ".join(f"{v:.1f}" for v in n.spikes_per_step)
                     + f" | {n.firing_rate:.4f} |")
    return "\n".join(lines)


def energy_section(dense: ActivityReport, pruned: ActivityReport,
                   profiles: list[HardwareProfile], *,
                   chips_used: int | None = None) -> dict[str, Any]:
    """The report's ``energy`` section: every profile in ``profiles`` (the first is the run's
    target), dense and pruned, and the 45 nm reference."""
    targets: dict[str, Any] = {}
    ests: list[tuple[HardwareProfile, EnergyEstimate, EnergyEstimate]] = []
    for p in profiles:
        ed, ep = estimate(dense, p), estimate(pruned, p)
        ests.append((p, ed, ep))
        targets[p.name] = {"description": p.description, "profile_sha256": p.sha256,
                           "dense": ed.to_dict(), "pruned": ep.to_dict()}
    ref_d, ref_p = ann_estimate(dense), ann_estimate(pruned)
    not_modelled = [
        "routing hops: hop counts need a placement (Loihi's per-hop figures are in a note)",
        "static power is for one chip" + (f" (the fit check uses {chips_used})"
                                          if chips_used and chips_used > 1 else ""),
        "every neuron is charged one update per step (time-driven)",
        "the chips' synaptic operations are charged one energy per operation, graded "
        "(MAC) or not",
    ]
    primary = ests[0] if ests else None
    lines: list[str] = []
    flags: list[str] = []
    if primary is not None:
        p, ed, ep = primary
        flags = list(ep.flags)
        why = f"; {'; '.join(ep.flags)}" if ep.flags else ""
        if ep.total_j is None:
            lines.append(f"energy on {p.name}: unknown per inference{why}")
        else:
            lines.append(f"energy on {p.name}: {ep.short()} per inference (dense "
                         f"{ed.short()}){why}")
    lines.append(f"45 nm reference per inference: ANN of the same shape "
                 f"{format_energy(ref_p.ann_j)}, SNN dense {format_energy(ref_d.snn_j)} -> "
                 f"pruned {format_energy(ref_p.snn_j)}")
    known = [f"{p.name} {ep.short()}" for p, _, ep in ests[1:] if ep.total_j is not None]
    unknown = [p.name for p, _, ep in ests[1:] if ep.total_j is None]
    if known or unknown:
        lines.append("other targets (pruned): " + ", ".join(known)
                     + (("; " if known else "") + f"unknown on {', '.join(unknown)}"
                        if unknown else ""))
    return {
        "summary": "\n".join(lines),
        "markdown": energy_markdown(ests, ref_d.to_dict(), ref_p.to_dict(), not_modelled),
        "per": "inference: one sample, all timesteps",
        "unit": "J",
        "target": profiles[0].name if profiles else None,
        "flags": flags,
        "targets": targets,
        "reference_45nm": {"dense": ref_d.to_dict(), "pruned": ref_p.to_dict()},
        "not_modelled": not_modelled,
    }


def _j(v: float | None) -> str:
    return "unknown" if v is None else format_energy(v)


def energy_markdown(ests: list[tuple[HardwareProfile, EnergyEstimate, EnergyEstimate]],
                    ref_d: Mapping[str, Any], ref_p: Mapping[str, Any],
                    not_modelled: list[str]) -> str:
    lines = ["## Energy per inference", ""]
    if ests:
        p, ed, ep = ests[0]
        lines += [f"Target **{p.name}**, pruned model: **{ep.display()}** "
                  f"(dense: {ed.display()}).", ""]
        for f in ep.flags:
            lines.append(f"- **caveat**: {f}")
        if ep.flags:
            lines.append("")
        lines += ["| term | count per inference | figure | value | confidence | source | "
                  "energy |", "|---|---|---|---|---|---|---|"]
        for t in ep.terms:
            for i, (key, fig) in enumerate(t.figures):
                count = ("" if i else "unknown" if t.count is None
                         else f"{t.count:,.6g} {t.count_unit}")
                energy = "" if i else ("omitted (figure unknown)" if t.omitted else
                                       _j(t.energy_j) + (" (unverified)" if t.unverified
                                                         else ""))
                lines.append(f"| {t.name if not i else ''} | {count} | {key} | "
                             f"{fig.describe()} | {fig.confidence} | {_md(_source(fig))} | "
                             f"{energy} |")
        lines += ["", f"Per layer on {p.name} (pruned; static power is chip-wide):", "",
                  "| layer | SynOps | spikes | neuron updates | E SynOps | E spikes | "
                  "E updates | total |", "|---|---|---|---|---|---|---|---|"]
        for la in ep.layers:
            lines.append(f"| {la.name} | {la.synops:,.1f} | {la.spikes:,.1f} | "
                         f"{la.neuron_updates:,} | {_j(la.synops_j)} | {_j(la.spikes_j)} | "
                         f"{_j(la.neuron_updates_j)} | {_j(la.energy_j)} |")
        lines += ["", "All targets (a total is shown as plain fact only when every term is "
                  "known and none rests on an unverified figure):", "",
                  "| target | dense | pruned | weakest figure used | caveats |",
                  "|---|---|---|---|---|"]
        for p, ed, ep in ests:
            conf = ep.confidence if ep.total_j is not None else "-"
            lines.append(f"| {p.name} | {ed.display()} | {ep.display()} | {conf} | "
                         f"{_md('; '.join(ep.flags)) or '-'} |")
    mac = ref_p["constants"]["mac_pj"]
    ac = ref_p["constants"]["ac_pj"]
    lines += ["", f"45 nm reference ({_md(mac['source'])}; MAC {mac['value']} pJ, AC "
              f"{ac['value']} pJ, confidence {mac['confidence']}):", "",
              "| | dense | pruned |", "|---|---|---|",
              f"| ANN of the same shape (MACs x {mac['value']} pJ) | {_j(ref_d['ann_j'])} | "
              f"{_j(ref_p['ann_j'])} |",
              f"| SNN (Effective_MACs x {mac['value']} pJ + Effective_ACs x {ac['value']} pJ) | "
              f"{_j(ref_d['snn_j'])} | {_j(ref_p['snn_j'])} |",
              "", "Not modelled: " + "; ".join(not_modelled) + "."]
    return "\n".join(lines)


def _source(fig: Any) -> str:
    return fig.source + (f" (note: {fig.note})" if fig.note else "")


def _md(s: str) -> str:
    return s.replace("|", "\\|").replace("\n", " ")
