"""report.html and plots/: every plot embedded, nothing external, deterministic, and the run's
activity/energy sections measured on the pruned weights (dense ones put back only temporarily)."""

from __future__ import annotations

import base64
import copy
import json
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from slamp_deploy.config import PipelineConfig
from slamp_deploy.pipeline.run import run
from slamp_deploy.report.html import markdown_to_html, render_files, render_html
from slamp_deploy.report.model import RunReport, energy_section
from slamp_deploy.report.plots import PLOT_TITLES

EXTERNAL = ("http://", "https://", 'src="//', "src='//", "<link", "<script", "@import", "url(")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("html")
    (d / "tiny.py").write_text(textwrap.dedent('''
        import snntorch as snn
        from torch import nn

        def build():
            return nn.Sequential(
                nn.Linear(64, 32), snn.Leaky(beta=0.8, init_hidden=True, reset_mechanism="zero"),
                nn.Linear(32, 10), snn.Leaky(beta=0.9, init_hidden=True,
                                              reset_mechanism="zero", output=True))
    '''))
    from sklearn.datasets import load_digits

    digits = load_digits()
    np.savez(d / "digits.npz", x=(digits.data / 16.0).astype(np.float32)[:300],
             y=digits.target[:300])
    torch.manual_seed(0)
    run(PipelineConfig(target="loihi", model=str(d / "tiny.py") + ":build",
                       data=str(d / "digits.npz"), epochs=0, out=str(d / "out")))
    return d / "out"


@pytest.fixture
def report(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "report.json").read_text())


def test_run_writes_html_and_every_plot(run_dir: Path) -> None:
    page = (run_dir / "report.html").read_text()
    pngs = sorted((run_dir / "plots").glob("*.png"))
    names = {p.stem for p in pngs}
    assert {"accuracy", "sparsity", "firing_rate", "synops", "energy_targets",
            "energy_layers", "energy_45nm", "fit_map"} <= names
    for p in pngs:
        assert base64.b64encode(p.read_bytes()).decode() in page, p.name
        assert p.read_bytes().startswith(b"\x89PNG")
    for bad in EXTERNAL:
        assert bad not in page, bad


def test_sections_measure_the_pruned_weights(run_dir: Path, report: dict[str, Any]) -> None:
    act = report["activity"]
    assert act["pruned"]["totals"]["weights_kept"] == report["sparsity"]["weights_kept"]
    assert act["dense"]["totals"]["weights_kept"] == report["sparsity"]["weights_total"]
    state = torch.load(run_dir / "pruned.pt", weights_only=True)
    kept = sum(int((v != 0).sum()) for k, v in state.items() if k.endswith(".weight"))
    assert kept == report["sparsity"]["weights_kept"]  # dense weights were not left behind
    assert act["data"]["samples"] == report["data"]["evaluation"]["count"]
    assert act["summary"].startswith("SynOps per sample: dense")
    assert report["energy"]["target"] == "loihi"
    assert "loihi2" in report["energy"]["targets"]
    md = (run_dir / "report.md").read_text()
    assert "## Activity and synaptic operations" in md and "## Energy per inference" in md


def test_render_is_deterministic_and_self_contained(report: dict[str, Any]) -> None:
    a = render_files(RunReport.from_dict(report))
    b = render_files(RunReport.from_dict(copy.deepcopy(report)))
    assert a == b
    page = a["report.html"].decode()
    for name in PLOT_TITLES:
        if f"plots/{name}.png" in a:
            assert base64.b64encode(a[f"plots/{name}.png"]).decode() in page
            assert f"id='plot-{name}'" in page
    for bad in EXTERNAL:
        assert bad not in page, bad
    for name, data in a.items():
        if name.endswith(".png"):
            assert b"tIME" not in data and b"matplotlib" not in data.lower(), name
    # every table of report.md is in the page
    assert page.count("<table>") >= (report["activity"]["markdown"].count("\n|---")
                                     + report["energy"]["markdown"].count("\n|---"))


def test_no_fit_section_no_fit_map(report: dict[str, Any]) -> None:
    r = copy.deepcopy(report)
    del r["fit"]
    files = render_files(RunReport.from_dict(r))
    assert "plots/fit_map.png" not in files


def test_unverified_energy_is_flagged_in_the_page(report: dict[str, Any]) -> None:
    import dataclasses

    from slamp_deploy.chips import load_profile
    from slamp_deploy.chips.figure import Figure
    from slamp_deploy.measure.activity import ActivityReport, LayerActivity, NeuronActivity

    p = load_profile("truenorth")
    p = dataclasses.replace(p, energy=dataclasses.replace(
        p.energy, synop_pj=Figure(value=26.0, unit="pJ", source="brief", confidence="U")))
    la = LayerActivity(name="fc", kind="linear", neuron="n", weight_shape=(2, 2),
                       weights_total=4, weights_kept=4, inputs=2, outputs=2, neurons=2,
                       synapses_total=4, synapses_kept=4, fan_in_max=2, fan_out_max=2,
                       samples=1, input_events=(1,), synops_ac=(2,), synops_mac=(0,))
    a = ActivityReport(label="x", samples=1, timesteps=1, layers=(la,),
                       neuron_layers=(NeuronActivity(name="n", kind="leaky", neurons=2,
                                                     samples=1, spikes=(1,)),),
                       parameter_count=6, parameters_nonzero=6, footprint_bytes=24)
    r = dataclasses.replace(RunReport.from_dict(report), energy=energy_section(a, a, [p]))
    page = render_files(r)["report.html"].decode()
    assert "class='caveat'" in page and "is not plain fact" in page
    assert "unverified" in page
    plain = RunReport.from_dict(report)
    assert plain.energy is not None
    plain = dataclasses.replace(plain, energy=dataclasses.replace(plain.energy, flags=()))
    assert "class='caveat'" not in render_html(plain, {})


def test_markdown_to_html_escapes() -> None:
    out = markdown_to_html("## T <b>\n\n| a | b |\n|---|---|\n| <script>x</script> | a \\| b |\n"
                           "- **bold** `code`\n")
    assert "<script>" not in out and "&lt;script&gt;" in out
    assert "<td>a | b</td>" in out
    assert "<strong>bold</strong>" in out and "<code>code</code>" in out
    assert out.startswith("<h2>T &lt;b&gt;</h2>")
