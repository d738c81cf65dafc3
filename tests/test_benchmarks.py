"""The benchmarks: the quality benchmark end to end (tiny), measured lambdas, the temporal task."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import torch
from slamp_deploy.examples.temporal_task import CLASSES, PIXELS, TIMESTEPS, make_events

from slamp_deploy.data import Dataset
from slamp_deploy.model.graph import trace
from slamp_deploy.prune.temporal import measured_lambdas

from .conftest import tiny_mlp


def _tiny_graph(seed: int = 0):
    torch.manual_seed(seed)
    model = tiny_mlp()
    with torch.no_grad():  # large enough weights that the hidden layer spikes
        for m in model:
            if isinstance(m, torch.nn.Linear):
                m.weight.mul_(3.0)
    return trace(model, (64,))


def _tiny_data(n: int = 48, seed: int = 0) -> Dataset:
    g = torch.Generator().manual_seed(seed)
    return Dataset(x=torch.rand(n, 64, generator=g), y=torch.randint(0, 10, (n,), generator=g),
                   source="random")


# ----------------------------------------------------------------------------- measured lambdas


def test_measured_lambdas_are_one_at_t1_and_restore_weights_exactly() -> None:
    g = _tiny_graph()
    data = _tiny_data()
    before = {k: v.clone() for k, v in g.model.state_dict().items()}
    lam1 = measured_lambdas(g, data, timesteps=1, encoding="rate", seed=3)
    assert lam1 == dict.fromkeys((la.name for la in g.layers), 1.0)
    lam = measured_lambdas(g, data, timesteps=6, encoding="rate", seed=3)
    assert set(lam) == {la.name for la in g.layers}
    assert all(v >= 1.0 and math.isfinite(v) for v in lam.values())
    assert any(v > 1.0 for v in lam.values())  # leaky neurons accumulate the error
    after = g.model.state_dict()
    for k, v in before.items():
        if k.rsplit(".", 1)[-1] in ("mem", "syn"):
            continue
        assert torch.equal(v, after[k]), k  # bit for bit
    # deterministic for a seed
    assert measured_lambdas(g, data, timesteps=6, encoding="rate", seed=3) == lam


def test_measured_lambdas_on_sequences_at_t1() -> None:
    x, y = make_events(16, 0)
    from slamp_deploy.examples.temporal_task import build_model

    torch.manual_seed(0)
    g = trace(build_model(), (PIXELS,))
    ds = Dataset(x=torch.from_numpy(x), y=torch.from_numpy(y), source="t", sequence=True)
    lam = measured_lambdas(g, ds, timesteps=1, encoding="direct")
    assert all(v == 1.0 for v in lam.values())


# ----------------------------------------------------------------------------- temporal task


def test_temporal_task_is_deterministic_and_balanced() -> None:
    x1, y1 = make_events(80, 11)
    x2, y2 = make_events(80, 11)
    assert x1.shape == (TIMESTEPS, 80, PIXELS) and x1.dtype == np.float32
    assert np.array_equal(x1, x2) and np.array_equal(y1, y2)
    assert set(np.unique(x1)) <= {0.0, 1.0}
    assert np.bincount(y1, minlength=CLASSES).tolist() == [10] * CLASSES
    x3, _ = make_events(80, 12)
    assert not np.array_equal(x1, x3)


def test_temporal_task_directions_share_their_pixels() -> None:
    """Mirror classes: summed over time, left and right look alike (the task needs memory)."""
    x, y = make_events(800, 0)
    counts = x.sum(0)  # [N, PIXELS], what a memoryless sum sees
    for k in range(0, CLASSES, 2):
        a, b = counts[y == k].sum(1).mean(), counts[y == k + 1].sum(1).mean()
        assert abs(a - b) / max(a, b) < 0.1


# ----------------------------------------------------------------------------- synops, proposal


def test_benchmark_synops_matches_activity_measure() -> None:
    from benchmarks.quality import synops
    from slamp_deploy.measure.activity import measure

    g = _tiny_graph()
    with torch.no_grad():
        g.layers[0].weight.mul_(torch.rand_like(g.layers[0].weight) > 0.5)
    data = _tiny_data()
    ours = synops(g, data, timesteps=5, encoding="rate", seed=2)
    theirs = measure(g, data, timesteps=5, encoding="rate", seed=2)
    assert sum(ours.values()) == pytest.approx(theirs.synops, rel=1e-12)


# ----------------------------------------------------------------------------- end to end


@pytest.mark.slow
def test_quality_benchmark_tiny_end_to_end(tmp_path) -> None:
    from benchmarks.quality import ABLATIONS, main

    res = main(["--mode", "quick", "--tasks", "digits", "--methods", "slamp", "lamp",
                "--sparsities", "0.8", "--seeds", "0", "--epochs", "1", "--train-limit", "96",
                "--eval-limit", "48", "--jobs", "1", "--out", str(tmp_path), "--name", "tiny",
                "--no-plot", "--ablations", *ABLATIONS])
    data = json.loads((tmp_path / "tiny.json").read_text())
    # 2 methods + 7 ablations (the default variant's ablation is the main slamp run)
    assert len(data["runs"]) == 9 == len(res["runs"])
    default = data["meta"]["default_lambda_variant"]
    assert f"slamp.{default}" not in {r["variant"] for r in data["runs"]}
    assert {r["variant"] for r in data["runs"]} >= {"slamp", "lamp", "slamp.measured",
                                                     "slamp.downstream", "slamp.no_cm",
                                                     "slamp.gradient"}
    assert {r["lambda_variant"] for r in data["runs"] if r["variant"] == "slamp"} == {default}
    for r in data["runs"]:
        for k in ("acc_dense", "acc_pruned", "acc_retrained"):
            assert 0.0 <= r[k] <= 1.0
        assert abs(r["sparsity_achieved"] - 0.8) < 0.01
        assert r["synops_reduction"] > 1.0
        assert sum(la["kept"] for la in r["layers"].values()) > 0
        if r["current_matching"]:
            assert 0.0 <= r["acc_current_matched"] <= 1.0
        else:
            assert r["acc_current_matched"] is None
    assert data["lambdas"][0]["measured"].keys() == data["runs"][0]["layers"].keys()
    rows = list(csv.DictReader((tmp_path / "tiny.csv").open()))
    assert len(rows) == len(data["summary"]) == 10  # + the default variant's aliased row
    assert {v["verdict"] for v in data["verdicts"]} <= {"win", "tie", "loss"}
    # every lambda variant against LAMP, per stage, and rendered with the goal table
    vv = data["variant_verdicts"]
    assert {v["variant"] for v in vv} == {"max", "l2", "sqrt", "measured", "downstream"}
    assert len(vv) == 5 * 3
    md = res_md = __import__("benchmarks.quality", fromlist=["render_markdown"]).render_markdown(
        data)
    assert "Each lambda variant against LAMP" in md and "| digits | downstream |" in res_md
    assert data["meta"]["environment"]["torch"] == torch.__version__


def test_the_docs_quality_section_is_rendered_from_the_committed_results() -> None:
    """docs/benchmarks.md's generated quality section is what the script renders from the
    results files its first line names (never typed in)."""
    from benchmarks import quality

    root = quality.DOCS.resolve().parents[1]
    names, body = quality.docs_section()
    assert names, "the section names no results file"
    data = quality.merge([json.loads((root / n).read_text()) for n in names])
    assert body == quality.render_markdown(data).strip()


def test_carry_over_renames_an_earlier_default_and_merges(tmp_path) -> None:
    """Runs of a file made under another default lambda variant are renamed so that its
    ``slamp`` becomes ``slamp.<its default>`` and today's default's ablation the main run;
    ``--methods`` with no name runs only the ablations."""
    from benchmarks.quality import DEFAULT_LAMBDA, _parser, carry_over, merge

    def run(variant: str, acc: float) -> dict:
        return {"task": "t", "variant": variant, "sparsity": 0.9, "seed": 0, "acc_pruned": acc,
                "acc_current_matched": acc, "acc_retrained": acc, "synops_reduction": 2.0,
                "acc_dense": 0.9, "sparsity_achieved": 0.9}

    old = {"meta": {}, "runs": [run("slamp", 0.5), run(f"slamp.{DEFAULT_LAMBDA}", 0.6),
                                run("slamp.sqrt", 0.7), run("lamp", 0.4)]}
    carry_over([old], ["slamp", "slamp.max", "slamp.sqrt"], ["old.json"], tmp_path, "c")
    data = json.loads((tmp_path / "c.json").read_text())
    got = {r["variant"]: r["acc_retrained"] for r in data["runs"]}
    assert got == {"slamp.max": 0.5, "slamp": 0.6, "slamp.sqrt": 0.7}  # lamp not asked for
    assert data["meta"]["default_lambda_variant"] == DEFAULT_LAMBDA
    new = {"meta": {"default_lambda_variant": DEFAULT_LAMBDA}, "runs": [run("lamp", 0.4)]}
    vv = merge([new, data])["variant_verdicts"]
    assert {(v["variant"], v["stage"]) for v in vv if v["stage"] == "acc_retrained"} == {
        ("max", "acc_retrained"), (DEFAULT_LAMBDA, "acc_retrained"), ("sqrt", "acc_retrained")}
    assert _parser().parse_args(["--methods"]).methods == []
