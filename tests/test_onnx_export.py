"""ONNX step model: checker, metadata, and a T-step onnxruntime run against nir_sim."""

from __future__ import annotations

import json
from pathlib import Path

import nir
import numpy as np
import onnx
import pytest
import snntorch as snn
import torch
from slamp_deploy.exporters import nir_sim, onnx_export
from torch import nn

from slamp_deploy.errors import ExportError

from ._nir_builders import chain_to_nir, example_net, prune_, run_torch

T = 8


def _roundtrip(mods: list[nn.Module], shape: tuple[int, ...], x: np.ndarray, tmp_path: Path):
    graph = chain_to_nir(mods, shape, T)
    res = onnx_export.export_onnx(graph, tmp_path / "model.onnx", T)
    onnx.checker.check_model(onnx.load(res.path), full_check=True)
    got = onnx_export.run_onnx(res.path, x)
    ref = nir_sim.simulate(graph, x)
    neurons = [str(i) for i, m in enumerate(mods) if isinstance(m, snn.SpikingNeuron)]
    assert set(got) == set(neurons) | set(res.state_pairs)
    spiked = 0
    for n in neurons:
        np.testing.assert_array_equal(got[n], ref[n], err_msg=f"spikes of {n}")
        np.testing.assert_allclose(got[f"{n}.mem"], ref[f"{n}.mem"], atol=1e-5, rtol=0)
        if f"{n}.syn" in got:
            np.testing.assert_allclose(got[f"{n}.syn"], ref[f"{n}.syn"], atol=1e-5, rtol=0)
        spiked += ref[n].sum()
    assert spiked > 0
    return res, got


def test_example_network_roundtrip_and_metadata(tmp_path: Path) -> None:
    torch.manual_seed(0)
    mods = example_net(beta=0.9)
    prune_(mods, 0.3)
    x = np.random.default_rng(0).uniform(0, 2.5, (T, 4, 1, 8, 8)).astype(np.float32)
    res, got = _roundtrip(mods, (1, 8, 8), x, tmp_path)
    model = onnx.load(res.path)
    props = {p.key: p.value for p in model.metadata_props}
    assert json.loads(props["slamp.state_pairs"]) == {
        f"{n}.mem": f"{n}.mem.next" for n in ("1", "3", "6", "8")}
    assert props["slamp.timesteps"] == str(T) and props["slamp.readout"] == "spikes"
    assert model.opset_import[0].version >= 17
    assert [i.name for i in model.graph.input] == ["x_t", "1.mem", "3.mem", "6.mem", "8.mem"]
    assert res.spike_outputs[-1] == "8.spikes"
    assert not list(tmp_path.glob("*.tmp"))
    # the torch model itself agrees too (states within 1e-5)
    ref = run_torch(mods, x)
    for n in ("1", "3", "6", "8"):
        np.testing.assert_array_equal(got[n], ref[n])
        np.testing.assert_allclose(got[f"{n}.mem"], ref[f"{n}.mem"], atol=1e-5)
    # dynamic batch: another N works with the same file
    assert onnx_export.run_onnx(res.path, x[:, :1])["8"].shape == (T, 1, 10)


@pytest.mark.parametrize("reset", ["zero", "subtract", "none"])
@pytest.mark.parametrize("delay", [True, False])
def test_leaky_and_synaptic_resets(reset: str, delay: bool, tmp_path: Path) -> None:
    torch.manual_seed(1)
    mods = [nn.Linear(10, 16), snn.Synaptic(alpha=0.6, beta=0.8, reset_mechanism=reset,
                                            reset_delay=delay),
            nn.Linear(16, 8, bias=False), snn.Leaky(beta=0.85, threshold=0.6,
                                                    reset_mechanism=reset, reset_delay=delay),
            nn.Linear(8, 4), snn.Leaky(beta=1.0, reset_mechanism=reset, reset_delay=delay)]
    prune_(mods, 0.6)
    with torch.no_grad():
        for m in mods:
            if isinstance(m, nn.Linear):
                m.weight.mul_(2.5)
    x = np.random.default_rng(1).uniform(0, 1.5, (T, 3, 10)).astype(np.float32)
    res, _ = _roundtrip(mods, (10,), x, tmp_path)
    assert res.state_pairs["1.syn"] == "1.syn.next"


def test_conv_pool_conv1d(tmp_path: Path) -> None:
    torch.manual_seed(2)
    mods = [nn.Conv2d(2, 4, 3, stride=2, padding=1), snn.Leaky(beta=0.9),
            nn.AvgPool2d(2), nn.Flatten(), nn.Linear(16, 6), snn.Leaky(beta=0.7)]
    x = np.random.default_rng(2).normal(1.0, 1.0, (T, 3, 2, 8, 8)).astype(np.float32)
    _roundtrip(mods, (2, 8, 8), x, tmp_path)
    mods = [nn.Conv1d(3, 5, 3, padding=1, dilation=1), snn.Leaky(beta=0.8, threshold=0.3)]
    x = np.random.default_rng(3).normal(0.5, 1.0, (T, 2, 3, 12)).astype(np.float32)
    _roundtrip(mods, (3, 12), x, tmp_path)


def test_unsupported_node_is_named_and_nothing_written(tmp_path: Path) -> None:
    graph = nir.NIRGraph(
        nodes={"input": nir.Input(np.array([3])), "d": nir.Delay(np.ones(3)),
               "output": nir.Output(np.array([3]))},
        edges=[("input", "d"), ("d", "output")], type_check=False)
    with pytest.raises(ExportError, match="'d' has type Delay"):
        onnx_export.export_onnx(graph, tmp_path / "m.onnx", T)
    assert not list(tmp_path.iterdir())
