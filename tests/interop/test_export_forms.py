"""The forms our NIR export takes for other readers (main env, no other framework): an
AvgPool2d written as a SumPool2d with 1/area folded into the weights after it, only where that
is bitwise exact; ``for_consumer(graph, "norse")`` (r = 1, the gain in the weights) runs the
same NIR equations; both read back by our reader as the model they came from. Whether the
frameworks then read them is ``test_frameworks.py``'s measurement."""

from __future__ import annotations

import json

import nir
import numpy as np
import pytest
import snntorch as snn
import torch
from slamp_deploy.exporters import nir_sim
from slamp_deploy.exporters.nir_export import for_consumer, to_nir, write_nir
from torch import nn

from slamp_deploy.errors import ExportError
from slamp_deploy.model.graph import trace
from slamp_deploy.model.nir_import import read_nir
from slamp_deploy.model.runner import run


def _leaky(beta) -> nn.Module:
    return snn.Leaky(beta=beta, reset_mechanism="zero", reset_delay=False, init_hidden=True)


def _conv(pool: nn.Module, fc_in: int, beta1=0.8) -> nn.Sequential:
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), _leaky(beta1), pool, nn.Flatten(),
                      nn.Linear(fc_in, 4), _leaky(0.7))
    with torch.no_grad():
        for layer in (m[0], m[4]):
            layer.weight.uniform_(-0.3, 1.5)
    return m


def _x(shape, seed=1) -> np.ndarray:
    return (np.random.default_rng(seed).random((10, 5, *shape)) < 0.4).astype(np.float32)


def _export(m: nn.Module, shape) -> nir.NIRGraph:
    return to_nir(trace(m, shape), timesteps=10, encoding="direct", readout="spikes")


def _avg_twin(g: nir.NIRGraph) -> nir.NIRGraph:
    """The same graph with each SumPool2d back as the AvgPool2d it was (weights times area)."""
    nodes = dict(g.nodes)
    for name, node in g.nodes.items():
        if isinstance(node, nir.SumPool2d):
            reader = node.metadata["slamp.avgpool_area_folded_into"]
            area = int(np.prod(node.kernel_size))
            nodes[name] = nir.AvgPool2d(node.kernel_size, node.stride, node.padding)
            syn = nodes[reader]
            nodes[reader] = type(syn)(weight=np.asarray(syn.weight) * area, bias=syn.bias)
    return nir.NIRGraph(nodes=nodes, edges=g.edges, type_check=False)


def test_a_2x2_average_pool_is_written_as_a_sum_pool_bitwise_exact():
    g = _export(_conv(nn.AvgPool2d(2), 27), (1, 6, 6))
    assert isinstance(g.nodes["2"], nir.SumPool2d)
    assert g.nodes["2"].metadata == {"slamp.avgpool_area_folded_into": "4"}
    assert g.nodes["4"].metadata["slamp.weight_scale"] == 0.25
    assert g.metadata["slamp.avgpool_as_sumpool"] == "2"
    x = _x((1, 6, 6))
    ours, avg = nir_sim.simulate(g, x), nir_sim.simulate(_avg_twin(g), x)
    for name in ("1", "5"):
        np.testing.assert_array_equal(ours[name], avg[name])
        np.testing.assert_array_equal(ours[f"{name}.mem"], avg[f"{name}.mem"])  # bitwise
    assert ours["5"].sum() > 0


@pytest.mark.parametrize("pool, fc_in, why", [
    (nn.AvgPool2d(3), 12, "area 9 is not a power of two"),
    (nn.AvgPool2d(2, padding=1), 48, "padding (norse and nirtorch ignore it)"),
])
def test_an_average_pool_stays_one_where_the_fold_is_not_exact(pool, fc_in, why):
    g = _export(_conv(pool, fc_in), (1, 6, 6))
    assert isinstance(g.nodes["2"], nir.AvgPool2d), why
    assert "slamp.avgpool_as_sumpool" not in g.metadata


def test_a_pool_feeding_a_neuron_stays_an_average_pool():
    m = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.AvgPool2d(2), _leaky(0.8), nn.Flatten(),
                      nn.Linear(18, 3), _leaky(0.7))
    g = _export(m, (1, 6, 6))
    assert isinstance(g.nodes["1"], nir.AvgPool2d)


def test_our_reader_reads_the_sum_pool_export_back_as_the_model(tmp_path):
    m = _conv(nn.AvgPool2d(2), 27)
    g = trace(m, (1, 6, 6))
    path = write_nir(to_nir(g, timesteps=10, encoding="direct", readout="spikes"),
                     tmp_path / "m.nir")
    back = read_nir(path).model
    pools = [mod for mod in back.modules() if isinstance(mod, nn.AvgPool2d)]
    assert len(pools) == 1
    fc = next(mod for mod in back.modules() if isinstance(mod, nn.Linear))
    torch.testing.assert_close(fc.weight, m[4].weight, rtol=0, atol=0)  # 1/4 folded back
    x = torch.from_numpy(_x((1, 6, 6)))
    with torch.no_grad():
        a, b = run(g, x).spikes, run(trace(back, (1, 6, 6)), x).spikes
    torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("make, shape", [
    (lambda: nn.Sequential(nn.Linear(6, 8), _leaky(torch.linspace(0.5, 0.9, 8)),
                           nn.Linear(8, 3), _leaky(0.7)), (6,)),
    (lambda: _conv(nn.AvgPool2d(2), 27), (1, 6, 6)),
])
def test_the_norse_form_has_unit_r_and_the_same_equations(make, shape):
    torch.manual_seed(0)
    m = make()
    with torch.no_grad():
        for layer in m:
            if isinstance(layer, (nn.Linear, nn.Conv2d)):
                layer.weight.uniform_(-0.3, 1.5)
    g = _export(m, shape)
    n = for_consumer(g, "norse")
    lifs = [k for k, v in n.nodes.items() if isinstance(v, nir.LIF)]
    assert lifs and all(np.all(n.nodes[k].r == 1) for k in lifs)
    assert n.metadata["slamp.r_convention"] == "r = 1 (norse)"
    assert n.metadata["slamp.form"].startswith("norse: r = 1")
    assert not np.all(g.nodes[lifs[0]].r == 1)  # the default graph is left as it was
    x = _x(shape)
    a, b = nir_sim.simulate(g, x), nir_sim.simulate(n, x)
    out = lifs[-1]
    assert a[out].sum() > 0
    np.testing.assert_array_equal(a[out], b[out])
    np.testing.assert_allclose(a[f"{out}.mem"], b[f"{out}.mem"], rtol=1e-5, atol=1e-5)


def test_the_norse_form_refuses_time_constants_that_vary_within_a_conv_channel():
    m = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1),
                      _leaky(torch.linspace(0.5, 0.9, 72).reshape(2, 6, 6)), nn.Flatten(),
                      nn.Linear(72, 3), _leaky(0.7))
    g = _export(m, (1, 6, 6))
    with pytest.raises(ExportError, match=r"NIR node '1': .*vary within a channel"):
        for_consumer(g, "norse")


def test_an_unknown_consumer_form_is_refused_naming_the_known_ones():
    g = _export(nn.Sequential(nn.Linear(6, 3), _leaky(0.7)), (6,))
    with pytest.raises(ExportError, match=r"no NIR form for 'lava'; known: norse"):
        for_consumer(g, "lava")


def test_nir_for_norse_writes_the_norse_form_beside_model_nir_and_checks_it(tmp_path, capsys):
    """``--nir-for norse``: the run writes model.norse.nir (the for_consumer form of the
    model.nir it wrote), checks it in the simulator with the rounding classification, lists it,
    and its report section reads back."""
    from slamp_deploy.cli import main
    from slamp_deploy.report.model import RunReport

    out = tmp_path / "o"
    assert main(["--nir-for", "norse", "--no-lava", "--epochs", "0", "--verify-samples", "8",
                 "--out", str(out)]) == 0
    assert "model.norse.nir" in capsys.readouterr().out.splitlines()[-1]
    g = nir.read(str(out / "model.norse.nir"))
    assert str(g.metadata["slamp.form"]).startswith("norse:")
    want = for_consumer(nir.read(str(out / "model.nir")), "norse")
    for name, node in want.nodes.items():
        if isinstance(node, nir.LIF):
            assert np.array_equal(g.nodes[name].r, node.r) and np.all(g.nodes[name].r == 1)
        if isinstance(node, nir.Affine):
            assert np.array_equal(g.nodes[name].weight, node.weight), name
    d = json.loads((out / "report.json").read_text())
    sec = d["export"]["nir-norse"]
    assert sec["file"] == "model.norse.nir" and sec["rounding"][0]["precision"] == "float32"
    assert sec["verdict"] in ("identical", "explained"), sec
    assert d["config"]["nir_for"] == "norse"
    assert RunReport.from_dict(d).to_dict() == d


def test_without_nir_for_the_config_in_report_json_has_no_nir_for(tmp_path):
    from slamp_deploy.cli import main

    out = tmp_path / "o"
    assert main(["--no-lava", "--epochs", "0", "--verify-samples", "4", "--out", str(out)]) == 0
    d = json.loads((out / "report.json").read_text())
    assert "nir_for" not in d["config"] and "nir-norse" not in d["export"]
    assert not (out / "model.norse.nir").exists()
