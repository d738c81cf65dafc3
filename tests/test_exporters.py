"""The exporter registry, the verify section's round trip, and the Lava-side modules' import
contract (standard library, numpy, scipy and nir only)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import nir
import numpy as np
import pytest
from slamp_deploy.exporters import (
    Exporter,
    available_exporters,
    get_exporter,
    nir_graph,
    nir_nodes,
    nir_sim,
    onnx_export,
)

from slamp_deploy.errors import ExportError
from slamp_deploy.verify import ExportSection

from ._nir_builders import chain_to_nir, example_net

EXPORTERS = Path(__file__).resolve().parent.parent / "exporters"
LAVA_SIDE = ("nir_graph", "nir_nodes", "neuron_step", "nir_sim", "lava_stages", "lava_runner",
             "_atomic")


def test_registry_lists_the_built_in_exporters_and_names_the_known_ones() -> None:
    assert available_exporters()[:4] == ("nir", "nir-norse", "onnx", "lava")
    for name in ("nir", "nir-norse", "onnx", "lava"):
        ex = get_exporter(name)
        assert isinstance(ex, Exporter) and ex.name == name
    assert get_exporter("lava", mode="fixed_pt").mode == "fixed_pt"  # type: ignore[attr-defined]
    with pytest.raises(ExportError, match="exporter 'speck' is unknown; known exporters: nir, "
                                          "nir-norse, onnx, lava"):
        get_exporter("speck")


def test_every_table_entry_is_consistent_and_the_constants_keep_their_literals() -> None:
    for name, kind in nir_nodes.NODES.items():
        assert kind.role in ("neuron", "synaptic", "shape", "io"), name
        assert (kind.params is not None) == (kind.role == "neuron"), name
        assert (kind.onnx is not None) == (kind.role in ("synaptic", "shape")), name
    assert nir_sim.RUNTIME == "slamp_deploy.exporters.nir_sim (numpy, float32)"
    assert onnx_export.EXPORTER == "slamp_deploy.exporters.onnx_export"


def test_nir_and_onnx_exporters_run_what_they_wrote(tmp_path: Path) -> None:
    graph = chain_to_nir(example_net(), (1, 8, 8), 4)
    x = np.random.default_rng(0).normal(size=(4, 2, 1, 8, 8)).astype(np.float32)
    ref = nir_sim.simulate(graph, x)
    for name in ("nir", "onnx"):
        ex = get_exporter(name)
        assert ex.unavailable() is None
        path = ex.export(graph, tmp_path, timesteps=4)
        assert path.name == ex.filename and path.is_file()
        out = ex.run(path, x)
        for n in nir_sim.neuron_nodes(graph):
            np.testing.assert_array_equal(out[n], ref[n])


def test_check_nir_graph_orders_and_refuses_by_name() -> None:
    w = np.ones((2, 2))
    graph = nir.NIRGraph(nodes={"input": nir.Input(np.array([2])), "a": nir.Linear(w),
                                "b": nir.Linear(w), "output": nir.Output(np.array([2]))},
                         edges=[("input", "a"), ("input", "b"), ("a", "output"),
                                ("b", "output")], type_check=False)
    order, preds = nir_graph.check_nir_graph(graph, nir_nodes.NODES)
    assert order == ["input", "a", "b", "output"] and preds["output"] == ["a", "b"]
    graph.edges.append(("a", "nowhere"))
    with pytest.raises(ExportError, match="names 'nowhere', which is no node"):
        nir_graph.check_nir_graph(graph)


SECTION = {
    "verified_samples": 2,
    "nir": {"file": "model.nir", "nir_version": "1.0.8", "dt": 0.0001, "nodes": 4,
            "runtime": nir_sim.RUNTIME, "exact": True,
            "layers": {"1": {"agreement": 1.0, "spikes_torch": 3, "spikes_exported": 3}}},
    "onnx": {"file": "model.onnx", "opset": 17, "state_pairs": {"1.mem": "1.mem.next"},
             "runtime": "onnxruntime", "exact": False,
             "layers": {"1": {"agreement": 0.5, "spikes_torch": 3, "spikes_exported": 2}},
             "max_abs_state_error": 2e-6, "states_within_tolerance": True},
    "lava": {"available": False, "how_to_enable": "Lava check skipped: install it",
             "summary": "Lava  Lava check skipped: install it"},
}


def test_export_section_round_trips_through_its_dict() -> None:
    section = ExportSection.from_dict(SECTION)
    d = section.to_dict()
    assert {k: v for k, v in d.items() if k not in ("summary", "markdown")} == SECTION
    assert d["summary"].splitlines() == [
        "NIR   model.nir: spikes identical to the pruned model on 2 samples",
        "ONNX  model.onnx: spikes DIFFER from the pruned model (worst layer agreement 0.5000), "
        "states within 2.0e-06 (onnxruntime)",
        "Lava  Lava check skipped: install it"]
    assert d["markdown"].splitlines()[-1] == (
        "| Lava | not run | - | Lava check skipped: install it |")
    assert ExportSection.from_dict(d).to_dict() == d


def test_lava_side_modules_import_without_slamp_deploy_or_torch() -> None:
    code = textwrap.dedent(f"""
        import importlib.abc, sys
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("slamp_deploy", "torch", "snntorch", "onnx"):
                    raise ImportError(f"blocked: {{name}}")
                return None
        sys.meta_path.insert(0, Block())
        sys.path.insert(0, {str(EXPORTERS)!r})
        for m in {LAVA_SIDE!r}:
            importlib.import_module(m)
        import nir_sim
        assert nir_sim.ExportError.__module__ == "nir_graph", nir_sim.ExportError
        print("ok")
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=False)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_lava_layer_stats_round_trip_their_json() -> None:
    from slamp_deploy.exporters.lava_stages import LayerStats

    layer = {"name": "1", "kind": "LIF", "delay": 1, "n_neurons": 4, "linear_nodes": ["0"],
             "nnz_per_sample": 7, "reset_mechanism": "zero", "reset_substituted": False,
             "threshold_normalized": False,
             "quant": {"weights": {"n_nonzero": 7, "weight_exp": 4, "sign_mode": "MIXED"},
                       "vth": 6304, "dv": 2048, "du": 4095, "a_in_max_abs_possible": 9.0,
                       "a_in_overflow_possible": False,
                       "bias": {"n_nonzero": 4, "weight_exp": 2, "sign_mode": "MIXED"},
                       "a_in_max_abs_observed": 40000.0, "a_in_overflow_observed": True},
             "du": 4095, "dv": 2048, "vth": 6304, "lava_process": "LIF",
             "branches": [{"source": "input", "wait": 0, "nnz_per_sample": 7}]}
    stats = LayerStats.from_json(layer)
    assert stats.quant is not None and stats.quant.a_in_overflow_observed
    assert json.dumps(stats.to_json()) == json.dumps(layer)
