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
