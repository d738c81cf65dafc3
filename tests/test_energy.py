"""Energy per inference: hand arithmetic, flags for unknown and unverified figures in every output,
the 45 nm reference, and the ``energy`` subcommand."""

from __future__ import annotations

import dataclasses

import pytest

from slamp_deploy.chips import load_profile
from slamp_deploy.chips.figure import Figure
from slamp_deploy.chips.profile import HardwareProfile
from slamp_deploy.cli import main
from slamp_deploy.cli.energy import parse_targets, run_energy
from slamp_deploy.errors import UnknownTargetError
from slamp_deploy.measure.activity import ActivityReport, LayerActivity, NeuronActivity
from slamp_deploy.measure.energy import ann_estimate, estimate, format_energy
from slamp_deploy.report.model import energy_section


def _fig(value: float | None, unit: str, conf: str) -> Figure:
    return Figure(value=value, unit=unit, source=f"test {conf}", confidence=conf)


def _profile(synop: Figure, spike: Figure, update: Figure, static: Figure,
             step: Figure, name: str = "testchip") -> HardwareProfile:
    p = load_profile("loihi")
    return dataclasses.replace(
        p, name=name,
        energy=dataclasses.replace(p.energy, synop_pj=synop, spike_pj=spike,
                                   neuron_update_pj=update, static_w=static),
        timing=dataclasses.replace(p.timing, timestep_s=step,
                                   step_floor_s=_fig(None, "s", "unknown"),
                                   synop_time_s=_fig(None, "s", "unknown")))


def _activity() -> ActivityReport:
    """2 samples, 2 steps. Layer fc1: 10 -> 4 neurons; layer fc2: 4 -> 3 neurons.

    fc1: ACs 60 + 40 = 100 total, MACs 20 + 20 = 40 total -> per sample 50 ACs + 20 MACs
    fc2: ACs 10 + 10 = 20 total -> per sample 10 ACs
    spikes: n1 6 + 4 = 10 total -> 5 per sample; n2 2 + 0 -> 1 per sample
    neuron updates per sample: (4 + 3) neurons x 2 steps = 14
    """
    def layer(name: str, n_in: int, n_out: int, neuron: str, ac: tuple, mac: tuple
              ) -> LayerActivity:
        return LayerActivity(
            name=name, kind="linear", neuron=neuron, weight_shape=(n_out, n_in),
            weights_total=n_in * n_out, weights_kept=n_in * n_out // 2, inputs=n_in,
            outputs=n_out, neurons=n_out, synapses_total=n_in * n_out,
            synapses_kept=n_in * n_out // 2, fan_in_max=n_in, fan_out_max=n_out, samples=2,
            input_events=(5, 5), synops_ac=ac, synops_mac=mac)

    return ActivityReport(
        label="pruned", samples=2, timesteps=2,
        layers=(layer("fc1", 10, 4, "n1", (60, 40), (20, 20)),
                layer("fc2", 4, 3, "n2", (10, 10), (0, 0))),
        neuron_layers=(NeuronActivity(name="n1", kind="leaky", neurons=4, samples=2,
                                      spikes=(6, 4)),
                       NeuronActivity(name="n2", kind="leaky", neurons=3, samples=2,
                                      spikes=(2, 0))),
        parameter_count=59, parameters_nonzero=26, footprint_bytes=236)


def test_energy_arithmetic_by_hand() -> None:
    a = _activity()
    assert (a.synops, a.spikes, a.neuron_updates) == (80.0, 6.0, 14)
    p = _profile(_fig(10.0, "pJ", "V"), _fig(2.0, "pJ", "S"), _fig(5.0, "pJ", "D"),
                 _fig(0.1, "W", "V"), _fig(1e-3, "s", "V-code"))
    e = estimate(a, p)
    # SynOps 80 x 10 pJ = 800 pJ; spikes 6 x 2 pJ = 12 pJ; updates 14 x 5 pJ = 70 pJ
    # static 0.1 W x (2 steps x 1 ms) = 2e-4 J
    terms = {t.name: t for t in e.terms}
    assert terms["synops"].energy_j == pytest.approx(800e-12)
    assert terms["spikes"].energy_j == pytest.approx(12e-12)
    assert terms["neuron_updates"].energy_j == pytest.approx(70e-12)
    assert terms["static"].energy_j == pytest.approx(2e-4)
    assert terms["static"].count == pytest.approx(2e-3)
    assert e.total_j == pytest.approx(2e-4 + 882e-12)
    assert e.status == "complete" and e.plain and e.flags == ()
    assert e.confidence == "S"  # the weakest figure used
    # per layer: fc1 50+20 = 70 SynOps -> 700 pJ, 5 spikes -> 10 pJ, 8 updates -> 40 pJ
    fc1, fc2 = e.layers
    assert (fc1.synops_j, fc1.spikes_j, fc1.neuron_updates_j) == pytest.approx(
        (700e-12, 10e-12, 40e-12))
    assert fc2.energy_j == pytest.approx(100e-12 + 2e-12 + 30e-12)
    assert sum(la.energy_j for la in e.layers) == pytest.approx(882e-12)  # type: ignore[misc]
    assert e.display() == "200 uJ"


def test_45nm_reference_by_hand() -> None:
    a = _activity()
    r = ann_estimate(a)
    # ANN: (10x4 + 4x3) = 52 MACs x 4.6 pJ = 239.2 pJ
    assert r.ann_macs == 52
    assert r.ann_j == pytest.approx(239.2e-12)
    # SNN: 20 MACs x 4.6 pJ + 60 ACs x 0.9 pJ = 92 + 54 = 146 pJ
    assert r.snn_j == pytest.approx(146e-12)
    d = r.to_dict()
    assert "Horowitz" in d["constants"]["mac_pj"]["source"]
    assert "ISSCC 2014" in d["constants"]["ac_pj"]["source"]


def test_unknown_figure_is_omitted_and_flagged() -> None:
    p = _profile(_fig(10.0, "pJ", "V"), _fig(None, "pJ", "unknown"), _fig(5.0, "pJ", "D"),
                 _fig(0.1, "W", "V"), _fig(None, "s", "unknown"))
    e = estimate(_activity(), p)
    assert e.omitted == ("spikes", "static")
    # static_w itself is known: the step time is not (no tick, no step-time model)
    assert e.missing == ("energy.spike_pj", "timing.synop_time_s", "timing.timestep_s")
    assert any(n.startswith("static: a step time") for n in e.needs)
    assert e.status == "partial" and not e.plain
    assert e.total_j == pytest.approx(800e-12 + 70e-12)
    assert e.display().startswith(">= ") and "partial" in e.display()
    assert any("lower bound" in f for f in e.flags)
    d = e.to_dict()
    assert d["status"] == "partial" and d["plain"] is False and d["flags"]
    static = next(t for t in d["terms"] if t["name"] == "static")
    assert static["omitted"] and static["energy_j"] is None and static["count"] is None


def test_all_unknown_gives_no_total() -> None:
    unk = _fig(None, "pJ", "unknown")
    e = estimate(_activity(), _profile(unk, unk, unk, _fig(None, "W", "unknown"),
                                       _fig(None, "s", "unknown")))
    assert e.total_j is None and e.status == "unknown" and e.display() == "unknown"
    assert e.flags and e.flags[0].startswith("unknown")


def test_unverified_figure_is_flagged_in_every_output() -> None:
    p = _profile(_fig(26.0, "pJ", "U"), _fig(2.0, "pJ", "V"), _fig(5.0, "pJ", "V"),
                 _fig(0.1, "W", "V"), _fig(1e-3, "s", "V"), name="uchip")
    a = _activity()
    e = estimate(a, p)
    assert e.status == "complete" and e.unverified == ("synops",) and not e.plain
    assert e.confidence == "U"
    assert "unverified" in e.display()
    sec = energy_section(a, a, [p]).to_dict()
    assert sec["flags"] and "unverified" in sec["flags"][0]
    assert "unverified" in sec["summary"].splitlines()[0]  # terminal
    assert sec["targets"]["uchip"]["pruned"]["unverified"] == ["synops"]  # JSON
    assert sec["targets"]["uchip"]["pruned"]["plain"] is False
    md = sec["markdown"]
    assert "**caveat**: unverified" in md and "(unverified)" in md  # report.md
    # report.html: tested with a whole report in test_report_html.py


def test_plain_fact_only_when_complete_and_verified() -> None:
    p = _profile(_fig(10.0, "pJ", "V"), _fig(2.0, "pJ", "V"), _fig(5.0, "pJ", "V"),
                 _fig(0.1, "W", "V"), _fig(1e-3, "s", "V"))
    sec = energy_section(_activity(), _activity(), [p]).to_dict()
    assert sec["flags"] == []
    assert "partial" not in sec["summary"] and "unverified" not in sec["summary"]


def test_shipped_profiles_never_show_a_bare_number_on_weak_figures() -> None:
    a = _activity()
    for name in ("loihi2", "truenorth", "speck", "loihi", "spinnaker"):
        e = estimate(a, load_profile(name))
        for t in e.terms:
            known = [f for _, f in t.figures if f.as_float() is not None]
            if not known:
                assert t.omitted, (name, t.name)
            if any(f.confidence == "U" for f in known):
                assert t.omitted or t.unverified, (name, t.name)
        if not e.plain:
            assert e.display() == "unknown" or "(" in e.display(), name


def test_loihi2_has_every_term_with_a_range_from_the_research_figures() -> None:
    a = _activity()
    e = estimate(a, load_profile("loihi2"))
    assert e.status == "complete" and e.plain and e.confidence == "S"
    terms = {t.name: t for t in e.terms}
    # SynOps per sample 80 at 24 [7-38] pJ; 6 spikes at 1.7 [1.7-10]; 14 updates at 80 [50-110]
    assert (terms["synops"].energy_j, terms["synops"].low_j, terms["synops"].high_j) == (
        pytest.approx(80 * 24e-12), pytest.approx(80 * 7e-12), pytest.approx(80 * 38e-12))
    assert terms["spikes"].high_j == pytest.approx(6 * 10e-12)
    assert terms["neuron_updates"].low_j == pytest.approx(14 * 50e-12)
    # latency: busiest core = fc1, 70 SynOps per sample / 2 steps on one core (4 neurons <= 8192
    # per core): 1.0 ns x 35 = 35 ns < the 1.8 us floor -> 2 steps x 1.8 us = 3.6 us [3.5-3.6 us]
    lat = e.latency
    assert lat is not None and lat.basis == "step-time model"
    assert lat.busiest is not None and lat.busiest.layer == "fc1"
    assert lat.busiest.synops_per_step == pytest.approx(35)
    assert lat.total_s == pytest.approx(3.6e-6) and lat.low_s == pytest.approx(3.5e-6)
    # static 0.30 [0.17-0.38] W x 3.6 [3.5-3.6] us
    assert terms["static"].energy_j == pytest.approx(0.30 * 3.6e-6)
    assert terms["static"].low_j == pytest.approx(0.17 * 3.5e-6)
    assert terms["static"].high_j == pytest.approx(0.38 * 3.6e-6)
    assert e.low_j == pytest.approx(sum(t.low_j for t in e.terms))
    for t in e.terms:
        assert t.low_j <= t.energy_j <= t.high_j, t.name
        assert t.confidence in ("V", "D", "S"), t.name
        assert all(f.source for _, f in t.figures)
    assert "[" in e.display() and "[" in e.short()


def test_step_time_model_uses_the_fit_checks_cores_and_grows_with_synops() -> None:
    p = load_profile("loihi2")
    big = dataclasses.replace(_activity(), layers=tuple(
        dataclasses.replace(la, synops_ac=tuple(x * 100_000 for x in la.synops_ac))
        for la in _activity().layers))
    e1 = estimate(big, p)
    # fc1: 5e6 SynOps per sample over 2 steps = 2.5e6 per step on one core -> 2.5 ms per step
    # (plus 10 MACs per step)
    assert e1.latency is not None and e1.latency.step_s == pytest.approx(2.5e6 * 1e-9, rel=1e-4)
    assert e1.latency.high_s == pytest.approx(2 * 2.5e6 * 1.21e-9, rel=1e-4)
    e4 = estimate(big, p, layer_cores={"fc1": 4, "fc2": 1})
    assert e4.latency is not None and e4.latency.busiest is not None
    assert e4.latency.busiest.cores_from == "fit check"
    assert e4.latency.step_s == pytest.approx(2.5e6 / 4 * 1e-9, rel=1e-4)


def test_fixed_tick_latency_and_unknown_latency() -> None:
    e = estimate(_activity(), load_profile("truenorth"))
    assert e.latency is not None and e.latency.basis == "fixed tick"
    assert e.latency.total_s == pytest.approx(2e-3)
    static = next(t for t in e.terms if t.name == "static")
    assert static.energy_j == pytest.approx(0.065 * 2e-3)
    assert static.low_j == pytest.approx(0.042 * 2e-3)
    e = estimate(_activity(), load_profile("speck"))
    assert e.latency is not None and e.latency.total_s is None
    assert e.latency.display() == "unknown" and e.latency.caveats


def test_format_energy() -> None:
    assert format_energy(12.34e-6) == "12.3 uJ"
    assert format_energy(2.8e-3) == "2.8 mJ"
    assert format_energy(5e-13) == "500 fJ"
    assert format_energy(0) == "0 J"


def test_parse_targets() -> None:
    assert parse_targets("loihi2, truenorth,loihi2") == ["loihi2", "truenorth"]
    assert "speck" in parse_targets("all")
    with pytest.raises(UnknownTargetError, match=r"known targets: .*loihi2"):
        parse_targets("loihi2,loihi9")


def test_energy_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_energy(["--targets", "loihi2,truenorth,loihi"]) == 0
    out = capsys.readouterr().out
    for word in ("loihi2", "truenorth", "loihi", "ANN 45 nm", "SNN 45 nm", "unknown",
                 "partial", "Effective_ACs"):
        assert word in out, word


def test_energy_subcommand_unknown_target(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["energy", "--targets", "loihi2,nochip"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: --targets: unknown target 'nochip'") and "speck" in err
    assert err.count("\n") == 1


def test_energy_subcommand_refuses_a_folder_as_weights(
        tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "w.pt"
    folder.mkdir()
    assert main(["energy", "--targets", "loihi2", "--weights", str(folder)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: --weights") and "folder" in err and err.count("\n") == 1


def _bad_profile(tmp_path, old: str, new: str):  # type: ignore[no-untyped-def]
    from pathlib import Path

    text = Path(load_profile("loihi2").path).read_text()
    assert old in text
    f = tmp_path / "bad.toml"
    f.write_text(text.replace(old, new, 1))
    return f


# A non-finite figure is refused by the loader's general magnitude check (chips.toml) before the
# energy checks see it; both name the field.
@pytest.mark.parametrize(("new", "field", "why"), [
    ("value = -24, low = 7, high = 38", "energy.synop_pj.value", "non-negative"),
    ("value = nan, low = 7, high = 38", "energy.synop_pj.value", "finite"),
    ("value = 24, low = -inf, high = 38", "energy.synop_pj.low", "finite"),
    ("value = 24, low = 7, high = inf", "energy.synop_pj.high", "finite"),
    ("value = 24, low = 40, high = 38", "energy.synop_pj.low", "must not exceed"),
    ("value = 50, low = 7, high = 38", "energy.synop_pj.value", "must lie within"),
])
def test_bad_energy_figures_are_refused_at_load_naming_the_field(tmp_path, new: str, field: str,
                                                                  why: str) -> None:
    from slamp_deploy.errors import ProfileError

    f = _bad_profile(tmp_path, "value = 24, low = 7, high = 38", new)
    with pytest.raises(ProfileError, match=rf"bad.toml: {field} = .*{why}"):
        load_profile(f)


def test_bounds_are_refused_off_energy_and_timing_figures(tmp_path) -> None:
    from slamp_deploy.errors import ProfileError

    f = _bad_profile(tmp_path, "weight_bits = { value = 8,", "weight_bits = { value = 8, low = 7,")
    with pytest.raises(ProfileError, match=r"precision.weight_bits.low = 7: bounds are only"):
        load_profile(f)
    f = _bad_profile(tmp_path, 'timestep_s = { confidence = "unknown"',
                     'timestep_s = { low = 1e-3, confidence = "unknown"')
    with pytest.raises(ProfileError, match=r"timing.timestep_s.low = 0.001: bounds need a value"):
        load_profile(f)


def test_bounds_round_trip_through_dump_profile() -> None:
    from slamp_deploy.chips.toml import _parse, dump_profile

    p = load_profile("loihi2")
    back = _parse(dump_profile(p).encode(), "x.toml", "x.toml")
    assert back.energy == p.energy and back.timing == p.timing
    assert back.energy.synop_pj.bounds() == (7.0, 38.0)


def test_report_card_terminal_and_json_show_the_pruned_loihi2_range_and_latency() -> None:
    import json
    from pathlib import Path

    from slamp_deploy.measure.latency import format_time
    from slamp_deploy.report.html import render_html
    from slamp_deploy.report.model import RunReport

    golden = Path(__file__).resolve().parent / "golden" / "run" / "report.json"
    d = json.loads(golden.read_text())
    d["timings_s"] = {"total": 1.0}  # the golden leaves out what differs between runs
    d["environment"] = {"python": "3.11", "torch": "2", "device": "cpu", "threads": 2}
    rep = RunReport.from_dict(d)
    assert rep.energy is not None and rep.energy.primary is not None
    est = rep.energy.primary.pruned
    assert rep.energy.primary.name == "loihi2" and est.status == "complete"
    assert est.low_j is not None and est.high_j is not None
    assert est.low_j < (est.total_j or 0) < est.high_j
    page = render_html(rep, {})
    card = page.split("<div class='cards'>", 1)[1].split("</div></div></div>", 3)
    cards = "".join(card)
    assert "energy on loihi2 (pruned)" in cards
    assert format_energy(est.total_j or 0) in cards
    assert f"range {est.range().strip()[1:-1]}" in cards
    lat = est.latency
    assert lat is not None and lat.total_s is not None
    assert "latency on loihi2" in cards and format_time(lat.total_s) in cards
    summary = d["energy"]["summary"].splitlines()
    assert summary[0].startswith("energy on loihi2: ") and est.range() in summary[0]
    assert summary[1].startswith(f"latency on loihi2: {lat.display()}")
    assert "static energy" in summary[1]
    j = d["energy"]["targets"]["loihi2"]["pruned"]
    assert j["low_j"] == est.low_j and j["latency"]["basis"] == "step-time model"
    assert "Sparse" in d["energy"]["connection"]
