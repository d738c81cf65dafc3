"""benchmarks/structured.py: a tiny run end to end, and the docs section is the rendering of
the committed results (so no number in it is typed in)."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks import structured

ROOT = Path(__file__).resolve().parent.parent


def test_committed_results_render_to_the_docs_section():
    data = json.loads((structured.RESULTS / "structured.json").read_text())
    text = (ROOT / "docs" / "benchmarks.md").read_text()
    assert structured.render(data) in text
    # 3 tasks x 3 methods x 3 fractions x 3 seeds, as the issue asks (3 seeds)
    assert len(data["meta"]["seeds"]) == 3
    assert {r["method"] for r in data["runs"]} == {"slamp", "lamp", "uniform"}
    assert {r["task"] for r in data["runs"]} == {"digits", "digits-resnet", "temporal"}


def test_a_tiny_run_measures_compact_models_and_writes_its_section(tmp_path):
    doc = tmp_path / "b.md"
    doc.write_text("# bench\n")
    data = structured.main(["--tasks", "temporal", "--seeds", "0", "--fractions", "0.5",
                            "--methods", "slamp,uniform", "--train-limit", "16",
                            "--eval-limit", "32", "--out", str(tmp_path / "r"),
                            "--docs", str(doc)])
    runs = data["runs"]
    assert [r["method"] for r in runs] == ["slamp", "uniform"]
    for r in runs:
        assert r["removed"] == 128 and r["prunable"] == 256  # half of the two hidden layers
        assert r["neurons_after"] == r["neurons_before"] - 128
        assert r["kept"]["4"] == 8  # the readout keeps its classes
        assert all(0.0 <= r[f"accuracy_{s}"] <= 1.0
                   for s in ("structured", "current_matched", "retrained"))
    assert structured.render(data) in doc.read_text()
    assert json.loads((tmp_path / "r" / "structured.json").read_text())["runs"] == runs
    # rendering again replaces the section instead of appending a second one
    structured.write_docs(data, doc)
    assert doc.read_text().count(structured.BEGIN) == 1
