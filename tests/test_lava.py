"""Lava backend: runner helpers (main env) and real Lava runs (marked lava, ~10 s in all)."""

from __future__ import annotations

from pathlib import Path

import nir
import numpy as np
import pytest
import scipy.sparse as sp
import snntorch as snn
import torch
from slamp_deploy.exporters import lava_export, lava_stages, nir_nodes
from torch import nn

from slamp_deploy.errors import ExportError

from ._nir_builders import chain_to_nir, prune_

LAVA = lava_export.find_lava_python()
needs_lava = pytest.mark.skipif(
    LAVA is None, reason="Lava interpreter not found: run `make lava-env` or set SLAMP_LAVA_PYTHON"
)
T = 8


def _scaled(mods: list[nn.Module], gain: float) -> list[nn.Module]:
    with torch.no_grad():
        for m in mods:
            if isinstance(m, (nn.Linear, nn.Conv2d)):
                m.weight.mul_(gain)
    return mods


def _linear_net(neuron: str = "leaky", reset: str = "zero") -> list[nn.Module]:
    torch.manual_seed(11)

    def neu(beta: float) -> nn.Module:
        if neuron == "synaptic":
            return snn.Synaptic(alpha=0.5, beta=beta, reset_mechanism=reset)
        return snn.Leaky(beta=beta, reset_mechanism=reset)

    mods = [nn.Linear(20, 32), neu(0.8), nn.Linear(32, 16, bias=False), neu(0.9),
            nn.Linear(16, 5), neu(1.0 if neuron == "leaky" else 0.7)]
    prune_(mods, 0.5)
    return _scaled(mods, 3.0)


def _conv_net() -> list[nn.Module]:
    torch.manual_seed(12)
    mods = [nn.Conv2d(1, 4, 3, padding=1), snn.Leaky(beta=0.9, reset_mechanism="zero"),
            nn.Conv2d(4, 6, 3, stride=2, padding=1), snn.Leaky(beta=0.85, reset_mechanism="zero"),
            nn.AvgPool2d(2), nn.Flatten(), nn.Linear(24, 10),
            snn.Leaky(beta=0.8, reset_mechanism="zero")]
    prune_(mods, 0.6)
    _scaled(mods, 2.5)
    _scaled(mods[6:7], 4.0)  # the pooled spikes are sparse: drive the readout harder
    return mods


def _write(mods: list[nn.Module], shape: tuple[int, ...], tmp_path: Path) -> Path:
    path = tmp_path / "model.nir"
    nir.write(path, chain_to_nir(mods, shape, T))
    return path


def _active(ref: dict[str, np.ndarray]) -> None:
    for name, s in ref.items():
        assert 0 < s.mean() < 1, f"layer {name} is silent or saturated: test would be vacuous"


# --------------------------------------------------------------------------- no Lava needed


def test_missing_interpreter_gives_the_documented_error(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv(lava_export.ENV_VAR, str(tmp_path / "no-such-python"))
    assert lava_export.find_lava_python() is None
    path = _write(_linear_net(), (20,), tmp_path)
    with pytest.raises(ExportError, match=r"Lava interpreter not found: run `make lava-env`"):
        lava_export.run_lava(path, np.zeros((T, 2, 20)), "floating_pt", tmp_path)


def test_compose_affine_unrolls_conv_pool_flatten_exactly() -> None:
    graph = chain_to_nir(_conv_net(), (1, 8, 8), T)
    stages, ignored = lava_stages.build_stages(graph)
    assert [s.name for s in stages] == ["1", "3", "7"] and ignored == []
    assert stages[2].linear_nodes == ("4", "5", "6")
    x = np.random.default_rng(0).normal(size=(5, 1, 8, 8))
    ref = nir_nodes.apply_node("0", graph.nodes["0"], x).reshape(5, -1)
    st = stages[0]
    np.testing.assert_array_equal(st.matrix.nnz, np.count_nonzero(graph.nodes["0"].weight) * 64
                                  - _border_taps(graph.nodes["0"].weight))
    np.testing.assert_allclose(x.reshape(5, -1) @ st.matrix.T.toarray() + st.bias, ref,
                               rtol=1e-12, atol=1e-12)
    spikes = (np.random.default_rng(1).random((5, 6, 4, 4)) < 0.5).astype(np.float64)
    h = spikes
    for n in stages[2].linear_nodes:
        h = nir_nodes.apply_node(n, graph.nodes[n], h)
    np.testing.assert_allclose(spikes.reshape(5, -1) @ stages[2].matrix.T.toarray()
                               + stages[2].bias, h, rtol=1e-12, atol=1e-12)


_GEOMETRIES = [  # (input shape, kernel, stride, padding, dilation, groups)
    ((3, 9, 7), (3, 3), 1, 1, 1, 1), ((4, 8, 8), (3, 2), (2, 1), (0, 2), (1, 2), 2),
    ((2, 11, 6), (1, 3), 3, (2, 0), 1, 1), ((4, 7, 9), (2, 2), 2, 1, 2, 4),
    ((3, 12), (3,), 2, 1, 1, 1), ((2, 10), (2,), 1, 0, 3, 2)]


def _basis(graph, names: list[str], in_shape: tuple[int, ...]):
    nodes = [graph.nodes[n] for n in names]
    plain = [nir_nodes.NODES[nir_nodes.type_name(n)].strip_bias(n) for n in nodes]
    mat = lava_stages._basis_matrix(names, plain, in_shape)
    mat.eliminate_zeros()
    return mat


@pytest.mark.parametrize("geometry", _GEOMETRIES, ids=lambda g: f"{g[0]}-k{g[1]}")
@pytest.mark.parametrize("pool", [None, "AvgPool2d", "SumPool2d"])
def test_node_matrices_equal_the_chain_run_on_basis_vectors(geometry, pool) -> None:
    """compose_affine builds each node's matrix from its parameters (a VGG conv has 65,536
    inputs: one forward pass per input was the cost); the entries are the same floats as
    the chain run on unit vectors, bit for bit, pool-into-conv chains included."""
    shape, k, stride, pad, dil, groups = geometry
    nd = len(k)
    if pool is not None and nd == 1:
        pytest.skip("2-D pools only")
    rng = np.random.default_rng(len(shape) * 7 + k[0])
    cout = 2 * groups
    w = rng.normal(size=(cout, shape[0] // groups, *k))
    w[rng.random(w.shape) < 0.4] = 0.0
    conv_cls = nir.Conv2d if nd == 2 else nir.Conv1d
    names = ["c"]
    in_shape = shape
    nodes = {"c": conv_cls(input_shape=shape[1:] if nd == 2 else shape[1], weight=w,
                           stride=stride, padding=pad, dilation=dil, groups=groups,
                           bias=rng.normal(size=cout))}
    if pool is not None:  # a pool into the conv: one path per entry, so still exact
        nodes["p"] = getattr(nir, pool)(kernel_size=np.array([2, 2]), stride=np.array([2, 2]),
                                        padding=np.array([0, 0]))
        names = ["p", "c"]
        in_shape = (shape[0], 2 * shape[1], 2 * shape[2])
    nodes["f"] = nir.Flatten(start_dim=0, end_dim=-1, input_type={"input": np.array(shape)})
    nodes["s"] = nir.Scale(scale=np.float64(0.5))
    graph = type("G", (), {"nodes": nodes})()
    for chain in (names, [*names, "f", "s"]):
        # the builders, not the basis-vector fallback the result is compared with
        assert lava_stages._chain_product([nodes[n] for n in chain], in_shape) is not None
        mat, bias, out_shape = lava_stages.compose_affine(graph, chain, in_shape)
        ref = _basis(graph, chain, in_shape)
        assert mat.shape == ref.shape and (mat != ref).nnz == 0, chain
        x = rng.normal(size=(3, *in_shape))
        y = x
        for n in chain:
            y = nir_nodes.apply_node(n, nodes[n], y)
        assert y.shape[1:] == out_shape
        np.testing.assert_allclose(x.reshape(3, -1) @ mat.T.toarray() + bias,
                                   y.reshape(3, -1), rtol=1e-12, atol=1e-12)


def test_a_node_type_without_a_builder_falls_back_to_basis_vectors(monkeypatch) -> None:
    assert lava_stages.node_matrix(nir.Threshold(threshold=np.zeros(4)), (4,)) is None
    w = np.arange(12.0).reshape(3, 4) - 5.0
    graph = type("G", (), {"nodes": {"l": nir.Linear(weight=w)}})()
    built, _, _ = lava_stages.compose_affine(graph, ["l"], (4,))
    # the same chain with Linear's builder removed: the basis-vector path gives the same matrix
    monkeypatch.delitem(lava_stages._MATRICES, "Linear")
    assert lava_stages.node_matrix(graph.nodes["l"], (4,)) is None
    mat, _, shape = lava_stages.compose_affine(graph, ["l"], (4,))
    assert shape == (3,) and (mat != built).nnz == 0
    assert (mat != sp.csr_matrix(w)).nnz == 0


def _border_taps(w: np.ndarray) -> int:
    """Kernel taps of a 3x3/pad-1 conv on 8x8 that fall on padding (not stored)."""
    mask = np.zeros((10, 10))
    mask[1:9, 1:9] = 1
    lost = 0
    for co in range(w.shape[0]):
        for ci in range(w.shape[1]):
            for i in range(3):
                for j in range(3):
                    if w[co, ci, i, j] != 0:
                        lost += int(64 - mask[i : i + 8, j : j + 8].sum())
    return lost


def test_unsupported_layers_are_named() -> None:
    graph = chain_to_nir(_linear_net(), (20,), T)
    node = graph.nodes["3"]
    tau = node.tau.copy()
    tau[0] *= 2
    graph.nodes["3"] = nir.LIF(tau=tau, r=node.r, v_leak=node.v_leak,
                               v_threshold=node.v_threshold, v_reset=node.v_reset)
    with pytest.raises(ExportError, match=r"'3'.*one voltage decay \(beta\) per layer"):
        lava_stages.build_stages(graph)


def test_quantization_records_clipping_and_error() -> None:
    graph = chain_to_nir(_linear_net(), (20,), T)
    st = lava_stages.build_stages(graph)[0][0]
    wq, bq, neu = lava_stages.quantize_stage(st, clip_percentile=90.0)
    assert 0.05 < wq.stats["clipped_fraction"] < 0.15
    assert wq.sign_mode == "MIXED" and np.all(wq.matrix.data % 2 == 0)
    assert wq.matrix.data.max() <= 254 and wq.matrix.data.min() >= -256
    wq, bq, neu = lava_stages.quantize_stage(st)
    assert wq.stats["clipped_fraction"] == 0.0 and wq.stats["rel_rms_error"] < 0.01
    assert bq is not None and bq.stats["n_nonzero"] == 32
    assert neu["dv"] == round(0.2 * 4096) and neu["du"] == 4095
    assert neu["vth"] == pytest.approx(st.threshold * wq.scale * 2.0 ** wq.weight_exp, abs=0.5)


# --------------------------------------------------------------------------- real Lava runs


@pytest.mark.lava
@needs_lava
def test_floating_pt_linear_net_is_spike_exact(tmp_path: Path) -> None:
    path = _write(_linear_net(), (20,), tmp_path)
    x = np.random.default_rng(3).uniform(0, 1.5, (T, 6, 20)).astype(np.float32)
    res = lava_export.run_lava(path, x, "floating_pt", tmp_path, timeout_s=120)
    ref = lava_export.reference_spikes(path, x)
    _active(ref)
    assert res.order == ("1", "3", "5") and res.spikes["1"].shape == (T, 6, 32)
    labels = np.arange(6) % 5
    cmp = lava_export.compare_with_reference(res.spikes, ref, labels, stats=res.stats)
    assert cmp["exact_match"], cmp["layers"]
    assert cmp["accuracy_lava"] == cmp["accuracy_reference"]
    assert not cmp["reset_substituted"] and not res.reset_substituted
    assert [la["delay"] for la in res.stats["layers"]] == [1, 2, 3]
    assert res.stats["layers"][2]["dv"] == 0.0  # beta = 1: IF node


@pytest.mark.lava
@needs_lava
def test_pruned_weights_are_not_stored_on_the_connection(tmp_path: Path) -> None:
    """The energy estimate charges only kept synapses: the export's connections must be Lava's
    Sparse (CSR, zeros absent), not Dense, which keeps pruned weights on the chip."""
    mods = _linear_net()
    path = _write(mods, (20,), tmp_path)
    n = 3
    x = np.random.default_rng(3).uniform(0, 1.5, (T, n, 20)).astype(np.float32)
    res = lava_export.run_lava(path, x, "floating_pt", tmp_path, timeout_s=120)
    kept = [int((m.weight != 0).sum()) for m in mods if isinstance(m, nn.Linear)]
    total = [m.weight.numel() for m in mods if isinstance(m, nn.Linear)]
    assert all(k < t for k, t in zip(kept, total, strict=True))  # the net is pruned
    for layer, k in zip(res.stats["layers"], kept, strict=True):
        (branch,) = layer["branches"]
        assert branch["process"] == "Sparse"
        assert branch["nnz_per_sample"] == k
        assert branch["stored_weights"] == n * k  # N copies, each holding only the kept ones


@pytest.mark.lava
@needs_lava
def test_floating_pt_conv_net_block_diagonal_is_spike_exact(tmp_path: Path) -> None:
    path = _write(_conv_net(), (1, 8, 8), tmp_path)
    x = np.random.default_rng(4).uniform(0, 2.5, (T, 5, 1, 8, 8)).astype(np.float32)
    res = lava_export.run_lava(path, x, "floating_pt", tmp_path, timeout_s=120)
    ref = lava_export.reference_spikes(path, x)
    _active(ref)
    cmp = lava_export.compare_with_reference(res.spikes, ref)
    assert cmp["exact_match"], cmp["layers"]
    assert res.spikes["3"].shape == (T, 5, 6, 4, 4)


@pytest.mark.lava
@needs_lava
def test_floating_pt_synaptic_zero_reset_uses_refractory_and_is_exact(tmp_path: Path) -> None:
    path = _write(_linear_net("synaptic"), (20,), tmp_path)
    x = (np.random.default_rng(5).random((T, 4, 20)) < 0.5).astype(np.float32)  # rate input
    res = lava_export.run_lava(path, x, "floating_pt", tmp_path, timeout_s=120)
    assert res.stats["layers"][0]["lava_process"].startswith("LIFRefractory")
    ref = lava_export.reference_spikes(path, x)
    _active(ref)
    assert lava_export.compare_with_reference(res.spikes, ref)["exact_match"]


@pytest.mark.lava
@needs_lava
def test_fixed_pt_runs_and_reports_quantization(tmp_path: Path) -> None:
    path = _write(_linear_net(), (20,), tmp_path)
    x = np.random.default_rng(3).uniform(0, 1.5, (T, 6, 20)).astype(np.float32)
    res = lava_export.run_lava(path, x, "fixed_pt", tmp_path, timeout_s=120)
    ref = lava_export.reference_spikes(path, x)
    cmp = lava_export.compare_with_reference(res.spikes, ref, np.arange(6) % 5)
    assert cmp["spike_agreement"] > 0.9
    for layer in res.stats["layers"]:
        q = layer["quant"]
        assert {"clipped_fraction", "zeroed_fraction", "rel_rms_error", "weight_exp"} <= set(
            q["weights"])
        assert isinstance(layer["vth"], int) and 0 <= layer["dv"] < 4096
        assert 0 < q["a_in_max_abs_observed"] <= q["a_in_max_abs_possible"]
    assert res.stats["input_quant"]["shift"] >= 0
    assert (tmp_path / "lava_out_fixed_pt.json").is_file()


@pytest.mark.lava
@needs_lava
def test_subtract_reset_runs_as_zero_reset_with_a_flag(tmp_path: Path) -> None:
    mods = _linear_net(reset="subtract")
    path = _write(mods, (20,), tmp_path)
    x = np.random.default_rng(6).uniform(0, 1.5, (T, 3, 20)).astype(np.float32)
    res = lava_export.run_lava(path, x, "floating_pt", tmp_path, timeout_s=120)
    assert res.reset_substituted and any("zero reset" in w for w in res.warnings)
    cmp = lava_export.compare_with_reference(
        res.spikes, lava_export.reference_spikes(path, x), stats=res.stats)
    assert cmp["reset_substituted"] and "Loihi resets to zero" in cmp["warning"]
    zero = chain_to_nir(mods, (20,), T)
    for node in zero.nodes.values():
        if nir_nodes.is_neuron(node):
            node.metadata["slamp.reset_mechanism"] = "zero"
    zero_ref = lava_export.reference_spikes(zero, x)
    assert lava_export.compare_with_reference(res.spikes, zero_ref)["exact_match"]


@pytest.mark.lava
@needs_lava
def test_runner_failure_carries_stderr(tmp_path: Path) -> None:
    path = _write(_linear_net(), (20,), tmp_path)
    with pytest.raises(ExportError, match=r"failed with exit code 2: .*expected \[T, N"):
        lava_export.run_lava(path, np.zeros((T, 2, 7)), "floating_pt", tmp_path)


@pytest.mark.lava
@needs_lava
def test_layer_by_layer_run_equals_the_whole_network_run(tmp_path: Path) -> None:
    """Over max_nnz synapses, with the reference spikes given, the runner runs each layer on
    its own fed by its sources' reference spikes: where the whole network is exact, the same
    spikes; a residual join's shortcut needs no delay then. fixed_pt runs and says so too."""
    from slamp_deploy.exporters.nir_export import to_nir

    from .test_residual import pruned_resnet

    rng = np.random.default_rng(8)
    (tmp_path / "c").mkdir()
    nets = [("conv", _write(_conv_net(), (1, 8, 8), tmp_path / "c"),
             rng.uniform(0, 2.5, (T, 2, 1, 8, 8))),
            ("residual", tmp_path / "r" / "model.nir", None)]
    g = pruned_resnet()
    (tmp_path / "r").mkdir()
    nir.write(nets[1][1], to_nir(g, timesteps=T, encoding="direct", readout="spikes"))
    nets[1] = ("residual", nets[1][1], rng.uniform(0, 1.0, (T, 2, 1, 8, 8)))
    for name, path, x in nets:
        x = x.astype(np.float32)
        ref = lava_export.reference_spikes(path, x)
        _active({k: v for k, v in ref.items() if v.size > 64})
        whole = lava_export.run_lava(path, x, "floating_pt", tmp_path / name, timeout_s=300)
        assert whole.method == "network"
        layers = lava_export.run_lava(path, x, "floating_pt", tmp_path / name, timeout_s=300,
                                      reference=ref, max_nnz=1)
        assert layers.method == "layers" and layers.stats["runs"] > len(layers.order), name
        assert layers.order == whole.order
        for n in whole.order:
            np.testing.assert_array_equal(layers.spikes[n], whole.spikes[n], err_msg=n)
        assert lava_export.compare_with_reference(whole.spikes, ref)["exact_match"], name
        assert [la["delay"] for la in layers.stats["layers"]] == \
            [la["delay"] for la in whole.stats["layers"]]
    x0 = nets[0][2].astype(np.float32)
    fx = lava_export.run_lava(nets[0][1], x0, "fixed_pt", tmp_path / "fx", timeout_s=300,
                              reference=lava_export.reference_spikes(nets[0][1], x0), max_nnz=1)
    assert fx.method == "layers"
    assert all(la["quant"]["a_in_max_abs_observed"] > 0 for la in fx.stats["layers"])
    # the input quantization recorded is the input layer's, as in the whole-network run
    fw = lava_export.run_lava(nets[0][1], x0, "fixed_pt", tmp_path / "fw", timeout_s=300)
    assert fx.stats["input_quant"] == fw.stats["input_quant"]


@pytest.mark.lava
@needs_lava
def test_a_probe_run_joined_with_the_rest_equals_one_run_of_every_sample(tmp_path: Path) -> None:
    """verify reuses the one-sample probe of a large network (lava_samples) instead of running
    that sample again: samples are independent copies, so the joined spikes are the same."""
    path = _write(_linear_net(), (20,), tmp_path)
    x = np.random.default_rng(9).uniform(0, 1.5, (T, 4, 20)).astype(np.float32)
    whole = lava_export.run_lava(path, x, "floating_pt", tmp_path, timeout_s=120)
    first = lava_export.run_lava(path, x[:, :1], "floating_pt", tmp_path, timeout_s=120)
    rest = lava_export.run_lava(path, x[:, 1:], "floating_pt", tmp_path, timeout_s=120)
    joined = lava_export.join_samples(first, rest)
    assert joined.n_samples == 4 and joined.order == whole.order
    for n in whole.order:
        np.testing.assert_array_equal(joined.spikes[n], whole.spikes[n], err_msg=n)
    assert joined.stats["runs"] == 2 and joined.method == "network"
    fixed = lava_export.run_lava(path, x[:, 1:], "fixed_pt", tmp_path, timeout_s=120)
    with pytest.raises(ExportError, match="cannot be joined"):
        lava_export.join_samples(first, fixed)
