"""End-to-end runs of the CLI: the built-in example, a user's model, and every bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from slamp_deploy.examples.digits import build_model

from slamp_deploy.cli import main
from slamp_deploy.model.graph import trace
from slamp_deploy.pipeline.outputs import MARKER


def _load_report(out: Path) -> dict:
    return json.loads((out / "report.json").read_text())


@pytest.mark.slow
def test_default_run_on_builtin_example_keeps_accuracy(tmp_path, capsys):
    out = tmp_path / "slamp-out"
    assert main(["--target", "loihi2", "--out", str(out)]) == 0
    rep = _load_report(out)
    assert rep["schema_version"] == 1
    assert rep["method"] == "slamp" and rep["timesteps"] == 8
    assert rep["sparsity"]["achieved"] == pytest.approx(0.9, abs=1e-4)
    acc = rep["accuracy"]
    assert acc["dense"] >= 0.90
    assert acc["retrained"] >= acc["dense"] - 0.03, acc
    assert set(acc) == {"dense", "pruned", "current_matched", "retrained"}
    for row in rep["layers"]:
        assert 0 < row["weights_kept"] <= row["weights_total"]
        assert len(row["firing_rate_per_step"]) == 8
        assert row["layer_score"] >= 1.0
    assert rep["data"]["evaluation"]["count"] == 359
    assert (out / "report.md").read_text().startswith("# slamp-deploy report")
    # pruned.pt loads into the same factory and holds exactly the reported zeros
    model = build_model()
    model.load_state_dict(torch.load(out / "pruned.pt", weights_only=True), strict=False)
    g = trace(model, (1, 8, 8))
    for la, row in zip(g.layers, rep["layers"], strict=True):
        assert int((la.weight != 0).sum()) == row["weights_kept"]
    # every exported format was run in its own runtime and behaves like the pruned model
    exp = rep["export"]
    assert exp["nir"]["exact"] and exp["onnx"]["exact"] and exp["onnx"]["states_within_tolerance"]
    assert (out / "model.nir").is_file() and (out / "model.onnx").is_file()
    from slamp_deploy.exporters.lava_export import find_lava_python

    if find_lava_python() is not None:
        assert exp["lava"]["floating_pt"]["exact_match"]
        assert exp["lava"]["fixed_pt"]["spike_agreement"] > 0.95
    else:
        assert exp["lava"]["available"] is False and "make lava-env" in exp["lava"]["how_to_enable"]
    assert rep["fit"]["fits"] is True
    printed = capsys.readouterr().out
    assert "accuracy on the evaluation data" in printed and "report.json" in printed


def _strip_timings(rep: dict) -> dict:
    rep = dict(rep)
    rep.pop("timings_s")
    rep["config"] = {k: v for k, v in rep["config"].items() if k != "out"}
    return rep


@pytest.mark.slow
def test_same_seed_same_outputs_bit_for_bit(tmp_path):
    args = ["--epochs", "1", "--sparsity", "0.8", "--seed", "3"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    assert main([*args, "--out", str(tmp_path / "b")]) == 0
    a = torch.load(tmp_path / "a" / "pruned.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "pruned.pt", weights_only=True)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert _strip_timings(_load_report(tmp_path / "a")) == _strip_timings(
        _load_report(tmp_path / "b"))


@pytest.mark.slow
@pytest.mark.parametrize("schedule", ["oneshot", "iterative"])
def test_user_model_and_pruned_weights_stay_zero(tmp_path, tiny_model_file, tiny_weights,
                                                 digits_npz, schedule):
    out = tmp_path / "o"
    rc = main(["--model", f"{tiny_model_file}:build", "--weights", str(tiny_weights),
               "--data", str(digits_npz), "--timesteps", "4", "--method", "lamp",
               "--sparsity", "0.75", "--epochs", "1", "--schedule", schedule, "--rounds", "2",
               "--calib-samples", "50", "--out", str(out)])
    assert rc == 0
    rep = _load_report(out)
    assert rep["data"]["calibration"]["count"] == 50
    assert rep["data"]["evaluation"]["count"] == 120
    assert len(rep["rounds"]) == (2 if schedule == "iterative" else 1)
    state = torch.load(out / "pruned.pt", weights_only=True)
    kept = sum(int((state[k] != 0).sum()) for k in ("0.weight", "2.weight"))
    assert kept == rep["sparsity"]["weights_kept"] == round(0.25 * (64 * 32 + 32 * 10))
    assert rep["sparsity"]["achieved"] == pytest.approx(0.75, abs=1e-3)


def _write_bad_npz(tmp_path: Path, name: str, **arrays) -> Path:
    p = tmp_path / name
    np.savez(p, **arrays)
    return p


def _bad_cases(tmp_path: Path, tiny_model_file: Path, tiny_weights: Path):
    pickled = tmp_path / "pickled.pt"
    torch.save({"model": torch.nn.Linear(2, 2)}, pickled)  # a whole module, not a state_dict
    nan_w = tmp_path / "nan.pt"
    sd = torch.load(tiny_weights, weights_only=True)
    sd["0.weight"][0, 0] = float("nan")
    torch.save(sd, nan_w)
    wrong_keys = tmp_path / "wrong.pt"
    torch.save({"fc.weight": torch.zeros(2, 2)}, wrong_keys)
    good = ["--model", f"{tiny_model_file}:build", "--weights", str(tiny_weights)]
    flat = _write_bad_npz(tmp_path, "flat.npz", x=np.random.rand(50, 64).astype("f4"),
                          y=np.arange(50) % 10)
    return [
        (["--method", "magic"], "--method 'magic': unknown; choose one of slamp, lamp"),
        (["--sparsity", "1.0"], r"--sparsity 1.0: must be in \[0, 1\)"),
        (["--model", "nowhere/x.py:build"], "--model nowhere/x.py: file not found"),
        (["--model", f"{tiny_model_file}:not_callable"], "'not_callable' is a int, not a "
                                                        "callable factory"),
        (["--model", f"{tiny_model_file}:returns_int"], "returned a int, not a torch.nn.Module"),
        (["--model", f"{tiny_model_file}:build", "--weights", str(wrong_keys)],
         r"keys do not match the model: missing 0.bias, 0.weight, 2.bias, 2.weight, 1.beta.*; "
         r"unexpected fc.weight"),
        (["--model", f"{tiny_model_file}:build", "--weights", str(pickled)],
         "needs unpickling of arbitrary Python objects, which can run code, so it is refused"),
        (["--model", f"{tiny_model_file}:build", "--weights", str(nan_w), "--data", str(flat)],
         "'0.weight' has 1 NaN/inf value"),
        ([*good, "--data", str(_write_bad_npz(tmp_path, "img.npz",
                                              x=np.zeros((20, 1, 8, 8), "f4"),
                                              y=np.zeros(20, int)))],
         r"forward failed on one time step of shape \[N, 1, 8, 8\]"),
        ([*good, "--data", str(_write_bad_npz(tmp_path, "empty.npz", x=np.zeros((0, 64), "f4"),
                                              y=np.zeros(0, int)))], "the data set is empty"),
        ([*good, "--data", str(_write_bad_npz(tmp_path, "lab.npz", x=np.zeros((20, 64), "f4"),
                                              y=np.full(20, 12)))],
         "label 12 is out of range for a model with 10 outputs"),
        ([*good, "--data", str(_write_bad_npz(tmp_path, "shape.npz",
                                              x=np.zeros((7, 64), "f4"), y=np.zeros(5, int)))],
         r"'x' has shape \(7, 64\) but there are 5 labels"),
        ([*good, "--data", str(tmp_path / "missing.npz")], "missing.npz: file not found"),
    ]


def test_bad_input_one_line_error_and_outputs_intact(tmp_path, tiny_model_file, tiny_weights,
                                                     capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "report.json").write_text('{"earlier": true}')
    (out / MARKER).write_text("")  # an earlier output, which a run may replace
    for argv, message in _bad_cases(tmp_path, tiny_model_file, tiny_weights):
        rc = main([*argv, "--out", str(out), "--epochs", "0"])
        err = capsys.readouterr().err.strip()
        assert rc == 1, (argv, err)
        assert err.startswith("error: ") and "\n" not in err, err
        import re

        assert re.search(message, err), (message, err)
        assert (out / "report.json").read_text() == '{"earlier": true}'
        assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".out")) == []


def test_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--encoding", "morse"])
    assert e.value.code == 2


def test_cuda_refused_when_absent(capsys):
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    assert main(["--device", "cuda", "--epochs", "0"]) == 1
    assert "no CUDA device" in capsys.readouterr().err
