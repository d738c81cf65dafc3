"""``--structure`` from the command line: the compact model as the run's output (pruned.pt, the
factory compact_model.py, model.nir), the report's before/after table and the fit section's
relieved limits, and the refusals (one error line, the exit code, no outputs)."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest
import torch

from slamp_deploy.cli import main
from slamp_deploy.model.loader import load_model, load_weights
from slamp_deploy.report.model import RunReport, report_json

RESNET = "slamp_deploy.examples.cifar_resnet:resnet_tiny_digits"
FAST = ["--epochs", "0", "--no-lava", "--verify-samples", "8", "--calib-samples", "64"]


@pytest.mark.parametrize(("args", "needle"), [
    (["--structure", "neurons"], "--structure neurons: give the fraction to remove"),
    (["--structure", "cells:0.2"], "--structure 'cells:0.2': use 'neurons'"),
    (["--structure", "neurons:1.5"], "the fraction must be a number in [0, 1)"),
    (["--structure", "neurons:0.2", "--method", "erk"],
     "supports --method slamp, lamp, uniform"),
])
def test_bad_structure_options_are_refused_before_any_work(args, needle, tmp_path, capsys):
    out = tmp_path / "o"
    assert main([*args, *FAST, "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and needle in err[0], err
    assert not out.exists()


@pytest.mark.slow
def test_a_core_count_one_channel_per_layer_cannot_meet_exits_3_with_the_numbers(tmp_path,
                                                                                 capsys):
    out = tmp_path / "o"
    rc = main(["--target", "loihi2", "--cores", "3", "--fit", "--structure", "neurons",
               "--model", RESNET, *FAST, "--out", str(out)])
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("error")]
    assert rc == 3, err
    assert len(err) == 1 and "even with one neuron or channel per layer" in err[0], err
    assert "cores" in err[0] and "> 3" in err[0]
    assert not out.exists()


@pytest.mark.slow
def test_structure_fraction_writes_a_compact_model_that_loads_and_matches(tmp_path, capsys):
    out = tmp_path / "o"
    assert main(["--target", "loihi2", "--structure", "neurons:0.3", "--model", RESNET,
                 *FAST, "--out", str(out)]) == 0
    rep = json.loads((out / "report.json").read_text())
    st = rep["structure"]
    assert st["method"] == "slamp-group" and not st["searched"]
    assert st["channels_removed"] == round(0.3 * st["channels_prunable"])
    rows = {r["name"]: r for r in st["layers"]}
    assert rows["head.1"]["outputs_after"] == 10 and rows["head.1"]["fixed"]
    # joined branches lose the same channels
    assert rows["layers.1.conv2"]["outputs_after"] == rows["layers.1.shortcut.0"]["outputs_after"]
    assert st["neurons_after"] < st["neurons_before"]
    assert "structured" in rep["accuracy"]
    md = (out / "report.md").read_text()
    assert "## Structure: neurons and channels removed" in md
    # the factory rebuilds the compact model; pruned.pt loads into it; the run's layer shapes
    model = load_model(f"{out}/compact_model.py:build", None).model
    load_weights(model, str(out / "pruned.pt"))
    shapes = {n: tuple(p.shape) for n, p in model.named_parameters() if n.endswith("weight")}
    for r in rep["layers"]:
        assert shapes[f"{r['name']}.weight"] == tuple(r["weight_shape"]), r["name"]
        assert shapes[f"{r['name']}.weight"][0] == rows[r["name"]]["outputs_after"]
    capsys.readouterr()
    assert main(["check", "--target", "loihi2", "--model", f"{out}/compact_model.py:build",
                 "--weights", str(out / "pruned.pt")]) == 0
    assert main(["check", "--target", "loihi2", "--model", str(out / "model.nir")]) == 0
    # a keep set for the readout, written into the record by hand, is refused by layer name
    rec = json.loads((out / "structure.json").read_text())
    rec["keep"]["head.1"] = [0, 1, 2]
    (out / "structure.json").write_text(json.dumps(rec))
    capsys.readouterr()
    assert main(["check", "--target", "loihi2", "--model", f"{out}/compact_model.py:build",
                 "--weights", str(out / "pruned.pt")]) == 1
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("error")]
    assert len(err) == 1 and "layer 'head.1' cannot lose outputs" in err[0], err


_XYLO_NET = textwrap.dedent("""
    import snntorch as snn, torch
    from torch import nn

    def lif(**kw):
        return snn.Leaky(beta=0.9, threshold=1.0, init_hidden=True,
                         reset_mechanism="subtract", **kw)

    def build():
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(16, 600), lif(), nn.Linear(600, 600), lif(),
                             nn.Linear(600, 8), lif(output=True))
    """)


@pytest.mark.slow
def test_fit_structure_on_xylo_relieves_the_hidden_neuron_count(tmp_path, capsys):
    (tmp_path / "net.py").write_text(_XYLO_NET)
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x=(rng.random((240, 16)) < 0.3).astype("float32"),
             y=rng.integers(0, 8, 240))
    out = tmp_path / "o"
    assert main(["--target", "xylo-audio2", "--fit", "--structure", "neurons", "--model",
                 f"{tmp_path}/net.py:build", "--data", str(tmp_path / "d.npz"), "--timesteps",
                 "4", *FAST, "--out", str(out)]) == 0
    rep = json.loads((out / "report.json").read_text())
    assert rep["fit"]["fits"] is True and rep["structure"]["searched"] is True
    hidden = sum(r["outputs_after"] for r in rep["structure"]["layers"][:-1])
    assert hidden <= 1000 < sum(r["outputs_before"] for r in rep["structure"]["layers"][:-1])
    relieved = rep["fit"]["structure_relieved"]
    assert relieved == [{"rule": "xylo.hidden_neurons_max", "layer": None, "before": 1200,
                         "after": hidden, "limit": 1000}]
    assert "relieved by the structure step" in rep["fit"]["markdown"]
    # report.json reads back into the typed report and writes the same text again
    text = (out / "report.json").read_text()
    assert report_json(RunReport.from_dict(json.loads(text))) == text
    # --fit dropped the biases (Xylo has none); the factory drops them again
    assert all(not k.endswith("bias") for k in torch.load(out / "pruned.pt"))
    capsys.readouterr()
    assert main(["check", "--target", "xylo-audio2", "--model",
                 f"{out}/compact_model.py:build", "--weights", str(out / "pruned.pt"),
                 "--data", str(tmp_path / "d.npz")]) == 0


_SPECK_NET = textwrap.dedent("""
    import snntorch as snn, torch
    from torch import nn

    def lif(**kw):
        return snn.Leaky(beta=1.0, threshold=1.0, init_hidden=True,
                         reset_mechanism="subtract", **kw)

    def build():  # conv2's kernel memory: 64 * 2**(4 + 7) = 131,072 words > 65,536
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(2, 64, 3, padding=1), lif(),
                             nn.Conv2d(64, 128, 3, stride=2, padding=1), lif(),
                             nn.AvgPool2d(4), nn.Flatten(), nn.Linear(2048, 10),
                             lif(output=True))
    """)


@pytest.mark.slow
def test_speck_memory_fit_says_to_add_structure_and_then_fits(tmp_path, capsys):
    (tmp_path / "net.py").write_text(_SPECK_NET)
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x=(rng.random((120, 2, 32, 32)) < 0.2).astype("float32"),
             y=rng.integers(0, 10, 120))
    common = ["--target", "speck", "--fit", "--model", f"{tmp_path}/net.py:build", "--data",
              str(tmp_path / "d.npz"), "--timesteps", "2", *FAST]
    assert main([*common, "--out", str(tmp_path / "a")]) == 3
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("error")]
    assert len(err) == 1 and "pruning cannot relieve this rule" in err[0], err
    assert err[0].endswith("removing whole neurons and channels relieves it: add --structure "
                           "neurons"), err
    out = tmp_path / "b"
    assert main([*common, "--structure", "neurons", "--out", str(out)]) == 0
    rep = json.loads((out / "report.json").read_text())
    assert rep["fit"]["fits"] is True
    relieved = {r["rule"]: r for r in rep["fit"]["structure_relieved"]}
    assert relieved["speck.kernel_memory"]["before"] == 131072
    assert relieved["speck.kernel_memory"]["after"] <= 65536
