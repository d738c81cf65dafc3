"""exporters/nir_sim.py against snnTorch 1.0.0 stepped per timestep, for every reset mode."""

from __future__ import annotations

from pathlib import Path

import nir
import numpy as np
import pytest
import snntorch as snn
import torch
from slamp_deploy.exporters import nir_nodes, nir_sim
from torch import nn

from slamp_deploy.errors import ExportError

from ._nir_builders import chain_to_nir, example_net, prune_, run_torch

T = 12


def _check(mods: list[nn.Module], in_shape: tuple[int, ...], x: np.ndarray, tmp_path: Path):
    graph = chain_to_nir(mods, in_shape, T)
    nir.write(tmp_path / "g.nir", graph)
    graph = nir.read(tmp_path / "g.nir")  # what consumers see: alphabetical nodes, metadata
    ref = run_torch(mods, x)
    sim = nir_sim.simulate(graph, x)
    neurons = [str(i) for i, m in enumerate(mods) if isinstance(m, snn.SpikingNeuron)]
    total = 0
    for n in neurons:
        assert sim[n].shape == ref[n].shape
        np.testing.assert_array_equal(sim[n], ref[n], err_msg=f"spikes of layer {n}")
        np.testing.assert_allclose(sim[f"{n}.mem"], ref[f"{n}.mem"], atol=1e-5, rtol=1e-5)
        if f"{n}.syn" in ref:
            np.testing.assert_allclose(sim[f"{n}.syn"], ref[f"{n}.syn"], atol=1e-5, rtol=1e-5)
        total += ref[n].sum()
    assert total > 0, "test network never spiked: the comparison would be vacuous"
    return sim


@pytest.mark.parametrize("reset", ["zero", "subtract", "none"])
@pytest.mark.parametrize("delay", [True, False])
def test_linear_leaky_chain(reset: str, delay: bool, tmp_path: Path) -> None:
    torch.manual_seed(1)
    mods = [
        nn.Linear(20, 32), snn.Leaky(beta=0.8, threshold=0.7, reset_mechanism=reset,
                                     reset_delay=delay),
        nn.Linear(32, 10, bias=False), snn.Leaky(beta=0.93, reset_mechanism=reset,
                                                 reset_delay=delay),
    ]
    prune_(mods, 0.5)
    x = np.random.default_rng(0).uniform(0, 1.5, (T, 5, 20)).astype(np.float32)
    _check(mods, (20,), x, tmp_path)


@pytest.mark.parametrize("reset", ["zero", "subtract", "none"])
@pytest.mark.parametrize("delay", [True, False])
def test_synaptic_chain(reset: str, delay: bool, tmp_path: Path) -> None:
    torch.manual_seed(2)
    mods = [
        nn.Linear(12, 24), snn.Synaptic(alpha=0.6, beta=0.85, reset_mechanism=reset,
                                        reset_delay=delay),
        nn.Linear(24, 6), snn.Synaptic(alpha=0.3, beta=0.7, threshold=0.5,
                                       reset_mechanism=reset, reset_delay=delay),
    ]
    x = (np.random.default_rng(1).random((T, 4, 12)) < 0.4).astype(np.float32)  # rate input
    _check(mods, (12,), x, tmp_path)


@pytest.mark.parametrize("reset", ["zero", "subtract"])
def test_conv_net_with_pool_and_if(reset: str, tmp_path: Path) -> None:
    torch.manual_seed(3)
    mods = [
        nn.Conv2d(2, 4, 3, padding=1), snn.Leaky(beta=0.9, reset_mechanism=reset),
        nn.AvgPool2d(2),
        nn.Conv2d(4, 6, 3, stride=2, padding=1, dilation=1), snn.Leaky(beta=1.0,
                                                                       reset_mechanism=reset),
        nn.Flatten(), nn.Linear(6 * 2 * 2, 5), snn.Leaky(beta=0.75, reset_mechanism=reset),
    ]
    prune_(mods, 0.6)
    x = np.random.default_rng(2).normal(0.5, 1.0, (T, 3, 2, 8, 8)).astype(np.float32)
    sim = _check(mods, (2, 8, 8), x, tmp_path)
    assert sim["1"].shape == (T, 3, 4, 8, 8)


def test_example_network_and_if_node(tmp_path: Path) -> None:
    torch.manual_seed(4)
    mods = example_net(beta=0.9)
    prune_(mods, 0.3)
    x = np.random.default_rng(3).uniform(0, 2.0, (8, 6, 1, 8, 8)).astype(np.float32)
    graph = chain_to_nir(mods, (1, 8, 8), 8)
    assert type(graph.nodes["1"]).__name__ == "LIF"
    sim = nir_sim.simulate(graph, x)
    ref = run_torch(mods, x)
    for n in ("1", "3", "6", "8"):
        np.testing.assert_array_equal(sim[n], ref[n])


def test_conv1d_dilation_and_if(tmp_path: Path) -> None:
    torch.manual_seed(5)
    mods = [nn.Conv1d(4, 6, 3, padding=2, dilation=2),
            snn.Leaky(beta=1.0, reset_mechanism="zero")]
    x = np.random.default_rng(4).normal(0.3, 1.0, (T, 2, 4, 10)).astype(np.float32)
    graph = chain_to_nir(mods, (4, 10), T)
    assert type(graph.nodes["1"]).__name__ == "IF"
    _check(mods, (4, 10), x, tmp_path)


def test_float64_mode_and_outputs(tmp_path: Path) -> None:
    torch.manual_seed(6)
    mods = [nn.Linear(5, 3), snn.Leaky(beta=0.5)]
    graph = chain_to_nir(mods, (5,), T)
    x = np.ones((T, 2, 5), np.float32)
    out = nir_sim.simulate(graph, x, dtype=np.float64)
    assert out["1"].dtype == np.float64
    assert set(out) >= {"input", "0", "1", "1.mem", "output"}
    np.testing.assert_array_equal(out["output"], out["1"])


def test_bad_graphs_are_named() -> None:
    w = np.ones((2, 2))
    lif = lambda: nir.LIF(tau=np.ones(2), r=np.ones(2), v_leak=np.zeros(2),  # noqa: E731
                          v_threshold=np.ones(2))
    cyc = nir.NIRGraph(
        nodes={"input": nir.Input(np.array([2])), "a": nir.Affine(w, np.zeros(2)), "b": lif(),
               "output": nir.Output(np.array([2]))},
        edges=[("input", "a"), ("a", "b"), ("b", "a"), ("b", "output")], type_check=False)
    with pytest.raises(ExportError, match="cycle"):
        nir_sim.simulate(cyc, np.zeros((2, 1, 2)))
    odd = nir.NIRGraph(
        nodes={"input": nir.Input(np.array([2])), "d": nir.Delay(np.ones(2)),
               "output": nir.Output(np.array([2]))},
        edges=[("input", "d"), ("d", "output")], type_check=False)
    with pytest.raises(ExportError, match="'d' has type Delay"):
        nir_sim.simulate(odd, np.zeros((2, 1, 2)))
    ok = nir.NIRGraph(
        nodes={"input": nir.Input(np.array([2])), "a": nir.Affine(w, np.zeros(2)), "b": lif(),
               "output": nir.Output(np.array([2]))},
        edges=[("input", "a"), ("a", "b"), ("b", "output")])
    with pytest.raises(ExportError, match="expected"):
        nir_sim.simulate(ok, np.zeros((2, 1, 3)))


@pytest.mark.parametrize("groups", [1, 2])
def test_grouped_strided_conv2d_matches_torch(groups: int) -> None:
    # nir 1.0.8 infers a grouped conv's input type as weight.shape[1] (C_in/groups), so grouped
    # convs cannot go through infer_types(); the op itself is checked directly here.
    torch.manual_seed(7)
    conv = nn.Conv2d(4, 6, (3, 2), stride=(2, 1), padding=(1, 0), dilation=(1, 2), groups=groups)
    node = nir.Conv2d(input_shape=(7, 9), weight=conv.weight.detach().numpy(), stride=conv.stride,
                      padding=conv.padding, dilation=conv.dilation, groups=groups,
                      bias=conv.bias.detach().numpy())
    x = np.random.default_rng(5).normal(size=(3, 4, 7, 9)).astype(np.float32)
    ref = conv(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(nir_nodes.apply_node("c", node, x), ref, atol=1e-5, rtol=1e-5)
    same = nn.Conv2d(4, 6, 4, padding="same")
    node = nir.Conv2d(input_shape=(7, 9), weight=same.weight.detach().numpy(), stride=1,
                      padding="same", dilation=1, groups=1, bias=same.bias.detach().numpy())
    np.testing.assert_allclose(nir_nodes.apply_node("c", node, x),
                               same(torch.from_numpy(x)).detach().numpy(), atol=1e-5, rtol=1e-5)
