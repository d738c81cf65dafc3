"""Fit checking and --fit from the command line, end to end."""

from __future__ import annotations

import json

import pytest
import torch

from slamp_deploy.cli import main


def test_targets_lists_every_profile(capsys):
    from slamp_deploy.chips import available_targets

    assert main(["targets"]) == 0
    out = capsys.readouterr().out
    for name in available_targets():
        assert out.count(f"\n{name} ") + out.startswith(f"{name} ") == 1


def test_dense_example_does_not_fit_truenorth(capsys):
    assert main(["check", "--target", "truenorth"]) == 3
    cap = capsys.readouterr()
    assert "layer 5: fan-in 512 > 256 (truenorth per-neuron limit)" in cap.out
    assert cap.err.startswith("error: truenorth: does not fit")


@pytest.mark.slow
def test_fit_makes_it_fit_and_check_then_passes(tmp_path, capsys):
    out = tmp_path / "o"
    assert main(["--target", "truenorth", "--fit", "--epochs", "0", "--out", str(out)]) == 0
    rep = json.loads((out / "report.json").read_text())
    assert rep["fit"]["fits"] is True
    # the smallest sparsity that fits: fan-in 256 of 512 in layer 5, nothing else pruned
    assert rep["fit"]["fit_search_sparsity"] == pytest.approx(32768 / 71568, abs=1e-6)
    layer5 = next(r for r in rep["layers"] if r["name"] == "5")
    assert layer5["weights_kept"] == 128 * 256
    assert layer5["binding"] == "cap.fan_in"
    capsys.readouterr()
    assert main(["check", "--target", "truenorth", "--weights", str(out / "pruned.pt")]) == 0
    assert "truenorth: fits" in capsys.readouterr().out


def test_fit_with_a_too_small_sparsity_is_refused(tmp_path, capsys):
    rc = main(["--target", "truenorth", "--fit", "--sparsity", "0.1", "--epochs", "0",
               "--out", str(tmp_path / "o")])
    assert rc == 1
    err = capsys.readouterr().err
    assert "--fit with --sparsity 0.1: the model needs at least 0.4579 sparsity to fit " \
           "truenorth" in err
    assert not (tmp_path / "o").exists()


def test_a_rule_pruning_cannot_relieve_is_infeasible(tmp_path, capsys):
    rc = main(["--target", "xylo-imu", "--fit", "--epochs", "0", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 3, err
    assert "pruning cannot relieve this rule" in err


def test_unknown_target_suggests_the_nearest(capsys):
    assert main(["--target", "loihi3", "--epochs", "0"]) == 1
    err = capsys.readouterr().err
    assert "loihi3" in err and "loihi2" in err


@pytest.mark.slow
def test_a_rule_based_method_keeps_its_density_under_the_chips_caps(tmp_path):
    out = tmp_path / "u"
    assert main(["--method", "uniform", "--target", "truenorth", "--sparsity", "0.3",
                 "--epochs", "0", "--no-lava", "--verify-samples", "8", "--out", str(out)]) == 0
    rep = json.loads((out / "report.json").read_text())
    binding = {r["name"]: r["binding"] for r in rep["layers"]}
    # layer 5 (512 inputs per neuron) is held at TrueNorth's 256; the others keep 70% each
    assert binding == {"0": "uniform.density", "2": "uniform.density", "5": "cap.fan_in",
                       "7": "uniform.density"}
    state = torch.load(out / "pruned.pt", weights_only=True)
    assert int((state["5.weight"] != 0).sum(1).max()) <= 256
    assert rep["fit"]["fits"] is True


@pytest.mark.parametrize("option", [["--timesteps", "4"], ["--encoding", "rate"],
                                    ["--device", "cpu"], ["--seed", "1"], ["--readout", "membrane"],
                                    ["--eval-data", "x.npz"], ["--split-seed", "1"]])
def test_check_refuses_options_the_fit_does_not_depend_on(option, capsys):
    # the verdict depends only on the weights and the input shape; an option that cannot change
    # it is refused rather than silently ignored
    with pytest.raises(SystemExit) as e:
        main(["check", "--target", "truenorth", *option])
    assert e.value.code == 2
    assert f"unrecognized arguments: {' '.join(option)}" in capsys.readouterr().err


def test_check_reads_model_weights_and_data(tmp_path, tiny_model_file, tiny_weights, digits_npz,
                                            capsys):
    assert main(["check", "--target", "loihi2", "--model", f"{tiny_model_file}:build",
                 "--weights", str(tiny_weights), "--data", str(digits_npz), "--cores", "4"]) == 0
    assert "loihi2: fits" in capsys.readouterr().out
