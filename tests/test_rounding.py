"""The export check tells rounding from error: on a deep network a correct export is
"identical" or "identical up to N rounding flips (explained)" in float32 and float64, in the
numpy simulator and in onnxruntime, while a wrong bias or a transposed kernel in a deep layer is
"DIFFER" with that layer named; a flip made by float32 rounding is explained and its cascade is
not counted. The shared classification (one unforced run, forced runs on the differing samples
only) gives exactly the per-export forced run's verdicts and state checks."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import snntorch as snn
import torch
from slamp_deploy.exporters import nir_sim, onnx_export
from slamp_deploy.exporters.nir_export import to_nir
from torch import nn

from slamp_deploy.model.graph import trace
from slamp_deploy.rounding import Request, RoundingVerdict, classify, forced_reference


def _lif(**kw):
    return snn.Leaky(beta=0.9, threshold=0.5, init_hidden=True, reset_mechanism="zero", **kw)


def _deep(width: int = 8, depth: int = 10) -> nn.Module:
    layers: list[nn.Module] = [nn.Conv2d(1, width, 3, padding=1, bias=False),
                               nn.BatchNorm2d(width), _lif()]
    for _ in range(depth - 1):
        layers += [nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width),
                   _lif()]
    layers += [nn.AvgPool2d(2), nn.Flatten(), nn.Linear(width * 16, 10), _lif(output=True)]
    model = nn.Sequential(*layers)
    torch.manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):  # keep every layer spiking at depth
            m.running_var.fill_(0.05)
            m.weight.data.uniform_(0.8, 1.2)
            m.bias.data.uniform_(-0.1, 0.3)
    return model.eval()


@pytest.fixture(scope="module")
def deep():
    torch.manual_seed(0)
    g = trace(_deep(), (1, 8, 8))
    x = torch.bernoulli(torch.full((4, 16, 1, 8, 8), 0.4)).numpy().astype(np.float32)
    return g, x, to_nir(g, timesteps=4, encoding="rate", readout="spikes")


def _sim_verdict(g, x, graph, dtype) -> RoundingVerdict:
    sim = nir_sim.simulate(graph, x, dtype=dtype)
    ex = {op.name: sim[op.name] for op in g.neuron_ops}
    return forced_reference(g, x, ex, np.dtype(dtype).name).verdict


def _onnx(g, x, graph, tmp_path):
    path = tmp_path / "m.onnx"
    onnx_export.export_onnx(graph, path, timesteps=x.shape[0])
    out = onnx_export.run_onnx(path, x)
    names = [op.name for op in g.neuron_ops]
    return forced_reference(g, x, {n: out[n] for n in names}, "float32",
                            mems={f"{n}.mem": out[f"{n}.mem"] for n in names})


def _deep_layer(g):
    """A conv deep in the network, and the neuron op its current reaches."""
    la = g.layers[7]
    assert la.neuron is not None
    return la.name, la.neuron.name


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_correct_export_of_a_deep_network_is_not_an_error(deep, dtype):
    g, x, graph = deep
    v = _sim_verdict(g, x, graph, dtype)
    assert v.verdict in ("identical", "explained") and v.unexplained == 0
    if dtype == np.float64:  # float64 against float64: no flip at all
        assert v.verdict == "identical"
    assert v.text().startswith("identical in")


def test_a_correct_onnx_export_is_not_an_error_and_its_states_are_within_bounds(deep, tmp_path):
    g, x, graph = deep
    fr = _onnx(g, x, graph, tmp_path)
    assert fr.verdict.unexplained == 0
    assert fr.states is not None and fr.states.within and fr.states.max_abs_error > 0


def _broken(graph, node: str, how: str):
    b = copy.deepcopy(graph)
    n = b.nodes[node]
    if how == "bias":
        n.bias = n.bias + 0.02
    else:
        n.weight = np.ascontiguousarray(np.swapaxes(n.weight, 2, 3))
    return b


@pytest.mark.parametrize("how", ["bias", "transposed"])
def test_a_broken_deep_layer_is_caught_by_name_in_both_runtimes(deep, tmp_path, how):
    g, x, graph = deep
    conv, neuron = _deep_layer(g)
    broken = _broken(graph, conv, how)
    for v in (_sim_verdict(g, x, broken, np.float32), _sim_verdict(g, x, broken, np.float64),
              _onnx(g, x, broken, tmp_path).verdict):
        assert v.verdict == "differ" and v.first_unexplained is not None
        assert v.first_unexplained.layer == neuron  # not an earlier layer: forcing works
        assert v.first_unexplained.margin > v.first_unexplained.bound
        assert v.text().startswith("DIFFER in")
    back = RoundingVerdict.from_dict(v.to_dict())
    assert back == v


def test_a_float32_rounding_flip_is_explained_and_its_cascade_is_not_counted():
    # 1 + 2^-25 + 2^-25 is 1 + 2^-24 > threshold 1 in float64, exactly 1 (no spike) in float32
    first = nn.Linear(3, 1, bias=False)
    second = nn.Linear(1, 4, bias=False)
    with torch.no_grad():
        first.weight.copy_(torch.tensor([[1.0, 2.0 ** -25, 2.0 ** -25]]))
        second.weight.fill_(3.0)
    model = nn.Sequential(first, snn.Leaky(beta=0.5, threshold=1.0, init_hidden=True,
                                           reset_mechanism="zero"),
                          second, snn.Leaky(beta=0.5, threshold=1.0, init_hidden=True,
                                            reset_mechanism="zero", output=True)).eval()
    g = trace(model, (3,))
    x = np.ones((2, 1, 3), dtype=np.float32)
    graph = to_nir(g, timesteps=2, encoding="direct", readout="spikes")
    sim = nir_sim.simulate(graph, x)
    names = [op.name for op in g.neuron_ops]
    assert sim[names[0]][0, 0, 0] == 0  # float32 does not spike at step 0 ...
    assert sim[names[1]][0].sum() == 0  # ... nor does the layer after it
    v = forced_reference(g, x, {n: sim[n] for n in names}, "float32").verdict
    assert (v.explained, v.unexplained) == (1, 0)
    assert v.text() == "identical in float32 up to 1 rounding flips (explained)"
    exact = nir_sim.simulate(graph, x, dtype=np.float64)
    assert forced_reference(g, x, {n: exact[n] for n in names}, "float64").verdict.text() == \
        "identical in float64"


def _exports(g, x, graph, tmp_path):
    """The requests the export check makes: NIR in float64 and float32, ONNX with membranes."""
    names = [op.name for op in g.neuron_ops]
    reqs = []
    for dtype in (np.float64, np.float32):
        sim = nir_sim.simulate(graph, x, dtype=dtype)
        reqs.append(Request(exported={n: sim[n] for n in names},
                            precision=np.dtype(dtype).name))
    path = tmp_path / "m.onnx"
    onnx_export.export_onnx(graph, path, timesteps=x.shape[0])
    out = onnx_export.run_onnx(path, x)
    reqs.append(Request(exported={n: out[n] for n in names}, precision="float32",
                        mems={f"{n}.mem": out[f"{n}.mem"] for n in names}))
    return reqs


@pytest.mark.parametrize("how", [None, "bias", "transposed"])
def test_the_shared_classification_gives_each_exports_forced_verdict(deep, tmp_path, how):
    g, x, graph = deep
    if how is not None:
        graph = _broken(graph, _deep_layer(g)[0], how)
    reqs = _exports(g, x, graph, tmp_path)
    shared = classify(g, x, reqs)
    for req, got in zip(reqs, shared, strict=True):
        want = forced_reference(g, x, req.exported, req.precision, mems=req.mems)
        assert got.verdict == want.verdict
        if want.states is not None:
            assert got.states is not None
            assert got.states.max_abs_error == pytest.approx(want.states.max_abs_error,
                                                             rel=1e-9, abs=1e-300)
            assert got.states.within == want.states.within
    if how is not None:  # every runtime names the broken layer, whatever the path taken
        assert all(fr.verdict.verdict == "differ" for fr in shared)
        assert {fr.verdict.first_unexplained.layer for fr in shared} == {_deep_layer(g)[1]}


def test_a_flip_in_one_sample_is_found_by_that_samples_forced_run(deep):
    """One sample differs (a spike of a deep layer removed where the membrane is far above
    threshold): the shared run forces that sample alone, and reports it by its batch number."""
    g, x, graph = deep
    names = [op.name for op in g.neuron_ops]
    sim = nir_sim.simulate(graph, x, dtype=np.float64)
    exported = {n: sim[n].copy() for n in names}
    s = 5  # not the first sample: its number in the batch must come back
    mem = sim[f"{names[6]}.mem"][:, s]
    spk = exported[names[6]][:, s]
    where = tuple(np.argwhere(spk > 0)[np.argmax(mem[spk > 0])])  # its strongest spike
    spk[where] = 0.0
    got = classify(g, x, [Request(exported=exported, precision="float64")])[0].verdict
    want = forced_reference(g, x, exported, "float64").verdict
    assert got == want and got.verdict == "differ"
    assert got.first_unexplained is not None
    assert (got.first_unexplained.layer, got.first_unexplained.sample) == (names[6], s)
