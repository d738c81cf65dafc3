"""bench-scale: the generated CIFAR-10 folder loads as CIFAR-10, and the section of
docs/benchmarks.md is what the script renders from the committed results (never typed in)."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks import scale
from slamp_deploy.datasets import load_data_spec

RESULTS = Path(scale.__file__).parent / "results"


def test_the_generated_folder_is_a_cifar10_folder(tmp_path):
    root = scale.write_cifar10(tmp_path, 10)
    train, test = load_data_spec(f"cifar10:{root}")
    assert train.sample_shape == (3, 32, 32) and len(train) == 10
    assert test is not None and len(test) == 2


def test_the_docs_section_is_rendered_from_the_committed_results():
    text = scale.DOCS.read_text()
    body = text.split(scale.BEGIN, 1)[1].split(scale.END, 1)[0].strip()
    name = "scale_quick.json" if "benchmarks.scale --quick`" in body else "scale.json"
    result = json.loads((RESULTS / name).read_text())
    assert body == scale.render_markdown(result).strip()
    assert {r["model"] for r in result["rows"]} == set(scale.MODELS)


def test_write_docs_replaces_only_the_marked_section(tmp_path):
    doc = tmp_path / "b.md"
    doc.write_text(f"head\n{scale.BEGIN}\nold\n{scale.END}\ntail\n")
    scale.write_docs("new table", doc)
    assert doc.read_text() == f"head\n{scale.BEGIN}\nnew table\n{scale.END}\ntail\n"


def test_the_lava_section_is_rendered_from_the_committed_results():
    from benchmarks import scale_lava

    text = scale.DOCS.read_text()
    body = text.split(scale_lava.BEGIN, 1)[1].split(scale_lava.END, 1)[0].strip()
    result = json.loads(scale_lava.RESULTS.read_text())
    assert body == scale_lava.render_markdown(result).strip()
    assert {r["model"] for r in result["rows"]} == set(scale.MODELS)


def test_the_pruned_fit_table_shows_wall_and_cpu_seconds_and_cuts():
    fr = {"sparsity": 0.9, "date": "d", "load_average_before": [1.0], "load_average_after": [2.0],
          "timeout_s": 60.0}
    result = {"targets": ["loihi", "truenorth"], "fit_run_pruned": fr, "rows": [
        {"model": "vgg16", "fit_check_lamp_s": {
            "loihi": {"seconds": 3.25, "cpu_s": 2.5, "fits": False},
            "truenorth": {"seconds": None, "timed_out_after_s": 60.0}}}]}
    lines = scale._lamp_table(result)
    assert lines[-1] == "| vgg16 | 3.2 (2.5) | > 60 (cut) |"
    assert "sparsity 0.9" in lines[1] and "--pruned 0.9" in lines[1]
    assert scale._lamp_table({"targets": [], "rows": []}) == []
