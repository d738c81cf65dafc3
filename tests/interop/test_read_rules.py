"""The NIR reader's rules on hand-built foreign graphs (main env, no other framework): dt given,
recorded or assumed; what has no discrete-time form is refused by node; v_leak, w_in, CubaLIF's
reset, LI, Threshold, Scale and SumPool2d follow NIR's equations (checked against nir_sim, the
reference that runs the same equations); bad files give one line naming the file and node."""

from __future__ import annotations

import warnings

import h5py
import nir
import numpy as np
import pytest
import torch
from slamp_deploy.exporters import nir_sim

from slamp_deploy.cli import main
from slamp_deploy.errors import ModelError, SlampWarning
from slamp_deploy.model.graph import trace
from slamp_deploy.model.nir_import import read_nir
from slamp_deploy.model.runner import run

RNG = np.random.default_rng(0)


def _w(o: int, i: int, scale: float = 1.0) -> np.ndarray:
    return (RNG.uniform(-0.2, 1.0, (o, i)) * scale).astype(np.float32)


def _lif(n: int, tau: float = 5e-3, **kw) -> nir.LIF:
    args = {"tau": np.full(n, tau), "r": np.ones(n), "v_leak": np.zeros(n),
            "v_threshold": np.ones(n), "v_reset": np.zeros(n)} | kw
    return nir.LIF(**args)


def _chain(tmp_path, *nodes, shape=(4,), out=(3,), meta=None, name="g.nir"):
    names = [f"n{i}" for i in range(len(nodes))]
    graph = {"input": nir.Input(np.array(shape)), **dict(zip(names, nodes, strict=True)),
             "output": nir.Output(np.array(out))}
    edges = list(zip(["input", *names], [*names, "output"], strict=True))
    p = tmp_path / name
    nir.write(str(p), nir.NIRGraph(nodes=graph, edges=edges, metadata=meta or {},
                                   type_check=False))
    return p


def _both(p, dt, x, node):
    """(our model's output spikes or membrane, nir_sim's output of ``node`` at dt)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SlampWarning)
        model = read_nir(p, dt=dt).model
    g = trace(model, tuple(x.shape[2:]))
    with torch.no_grad():
        out = run(g, torch.from_numpy(x))
    graph = nir.read(str(p), type_check=False)
    graph.metadata = {"slamp.dt": dt}
    return out, nir_sim.simulate(graph, x)[node]


def _x(shape=(4,), t=16, n=3, p=0.5):
    return (RNG.random((t, n, *shape)) < p).astype(np.float32)


# ---------------------------------------------------------------------------- dt


def test_dt_assumed_is_warned_with_the_producers_conventions(tmp_path):
    p = _chain(tmp_path, nir.Affine(_w(3, 4), np.zeros(3)), _lif(3))
    with pytest.warns(SlampWarning, match=r"assumed dt = 0.0001 s.*--nir-dt.*norse 1.1.0 and "
                                          r"rockpool 3.1.0 1e-3 s.*sinabs 3.1.3 and spyx"):
        r = read_nir(p)
    assert [(a.name, a.source) for a in r.assumptions] == [("dt", "assumed"),
                                                           ("reset", "assumed")]
    given = read_nir(p, dt=1e-3)
    assert given.assumptions[0].source == "given" and given.warnings == ()


def test_a_recorded_dt_wins_and_a_conflicting_option_is_warned(tmp_path):
    p = _chain(tmp_path, nir.Affine(_w(3, 4), np.zeros(3)), _lif(3), meta={"slamp.dt": 1e-3})
    with pytest.warns(SlampWarning, match=r"--nir-dt 0.5 ignored: the file records slamp.dt"):
        r = read_nir(p, dt=0.5)
    assert r.assumptions[0].source == "file" and r.assumptions[0].value == "0.001 s"


def test_the_step_changes_the_neuron_read(tmp_path):
    """beta = 1 - dt/tau: the same file at dt = 1e-3 and 1e-4 gives different dynamics,
    each equal to nir_sim's at that dt."""
    p = _chain(tmp_path, nir.Affine(_w(3, 4, 3.0), np.zeros(3)), _lif(3, tau=5e-3))
    x = _x()
    spikes = {}
    for dt in (1e-3, 1e-4):
        ours, ref = _both(p, dt, x, "n1")
        np.testing.assert_array_equal(ours.spikes.numpy(), ref)
        spikes[dt] = ref.sum()
    assert spikes[1e-3] > spikes[1e-4] > 0


@pytest.mark.parametrize("meta, match", [
    ({"slamp.dt": 0.0}, r"slamp.dt = 0.0: the step must be a positive"),
    ({"slamp.dt": "fast"}, r"slamp.dt = 'fast' is not a number"),
])
def test_bad_recorded_dt_is_refused(tmp_path, meta, match):
    p = _chain(tmp_path, nir.Affine(_w(3, 4), np.zeros(3)), _lif(3), meta=meta)
    with pytest.raises(ModelError, match=rf"g\.nir: graph metadata {match}"):
        read_nir(p)


# ---------------------------------------------------------------------------- refusals


@pytest.mark.parametrize("node, match", [
    (_lif(3, tau=1e-5), r"node 'n1': tau min 1e-05 s is below dt = 0.0001 s"),
    (_lif(3, r=-np.ones(3)), r"node 'n1': r has values <= 0"),
    (_lif(3, v_reset=np.full(3, 0.2)), r"node 'n1': v_reset != 0"),
    (_lif(3, tau=np.array([5e-3, np.nan, 5e-3])), r"node 'n1': tau has 1 NaN/inf"),
    (nir.CubaLIF(tau_syn=np.full(3, 2e-3), tau_mem=np.full(3, 5e-3), r=np.ones(3),
                 v_leak=np.full(3, 0.1), v_threshold=np.ones(3), v_reset=np.zeros(3),
                 w_in=np.ones(3)), r"node 'n1': CubaLIF with v_leak != 0"),
    (nir.Delay(np.ones(3)), r"node 'n1' has type Delay, which slamp-deploy does not read"),
])
def test_what_has_no_discrete_form_is_refused_by_node(tmp_path, node, match):
    p = _chain(tmp_path, nir.Affine(_w(3, 4), np.zeros(3)), node)
    with pytest.raises(ModelError, match=rf"g\.nir: (NIR )?{match}"):
        read_nir(p, dt=1e-4)


def test_tau_equal_to_dt_is_read_with_a_warning(tmp_path):
    p = _chain(tmp_path, nir.Affine(_w(3, 4), np.zeros(3)), _lif(3, tau=1e-3))
    with pytest.warns(SlampWarning, match=r"node 'n1': tau equals dt = 0.001 s for 3 neuron"):
        read_nir(p, dt=1e-3)


@pytest.mark.parametrize("nodes, match", [
    ((nir.Affine(_w(3, 4), np.zeros(5)), _lif(3)), r"node 'n0': bias has shape \(5,\)"),
    ((nir.Affine(_w(3, 4), np.zeros(3)), _lif(5)),
     r"node 'n1': has \(5,\) neurons but receives \(3,\)"),
    ((nir.Affine(_w(3, 4), np.zeros(3)), nir.Affine(_w(2, 5), np.zeros(2)), _lif(2)),
     r"node 'n1': shapes do not fit"),
    ((nir.Affine(_w(3, 4), np.zeros(3)), nir.LIF(
        tau=np.full(3, 5e-3), r=np.ones(3), v_leak=np.zeros(3), v_threshold=np.ones(3),
        v_reset=np.zeros(3), metadata={"slamp.reset_mechanism": "clamp"})),
     r"node 'n1': metadata slamp.reset_mechanism='clamp'"),
    ((nir.Affine(_w(3, 4), np.zeros(3)), nir.LIF(
        tau=np.full(3, 5e-3), r=np.ones(3), v_leak=np.zeros(3), v_threshold=np.ones(3),
        v_reset=np.zeros(3), metadata={"slamp.reset_delay": "sometimes"})),
     r"node 'n1': metadata slamp.reset_delay='sometimes'"),
    ((nir.Affine(np.full((3, 4), np.inf, np.float32), np.zeros(3)), _lif(3)),
     r"node 'n0': weight has 12 NaN/inf"),
])
def test_bad_nodes_are_named(tmp_path, nodes, match):
    p = _chain(tmp_path, *nodes)
    with pytest.raises(ModelError, match=rf"g\.nir: (NIR )?{match}"):
        read_nir(p, dt=1e-4)


def test_not_hdf5_and_not_a_graph_exit_1_with_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.nir"
    bad.write_text("not hdf5")
    assert main(["--model", str(bad), "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "bad.nir" in err[0]
    empty = tmp_path / "empty.nir"
    with h5py.File(empty, "w") as f:
        f.create_dataset("x", data=np.zeros(2))
    with pytest.raises(ModelError, match=r"empty\.nir: cannot read as NIR"):
        read_nir(empty)


def test_a_cycle_is_named(tmp_path):
    w = _w(3, 3)
    g = nir.NIRGraph(nodes={"input": nir.Input(np.array([3])), "a": nir.Linear(w),
                            "b": nir.Linear(w), "output": nir.Output(np.array([3]))},
                     edges=[("input", "a"), ("a", "b"), ("b", "a"), ("b", "output")],
                     type_check=False)
    p = tmp_path / "c.nir"
    nir.write(str(p), g)
    with pytest.raises(ModelError, match=r"c\.nir: node '[ab]' is part of a cycle"):
        read_nir(p, dt=1e-4)


# ---------------------------------------------------------------------------- exact reads


def test_v_leak_and_r_follow_nirs_equations(tmp_path):
    """A LIF with r = 2 and v_leak = 0.3: the gain r*dt/tau goes into the weights and the
    leak (dt/tau)*v_leak into the bias; the spikes are nir_sim's."""
    lif = _lif(3, tau=2e-3, r=np.full(3, 2.0), v_leak=np.full(3, 0.3))
    p = _chain(tmp_path, nir.Linear(_w(3, 4, 2.0)), lif)
    ours, ref = _both(p, 1e-3, _x(), "n1")
    np.testing.assert_array_equal(ours.spikes.numpy(), ref)
    assert ref.sum() > 0


def test_cubalif_resets_right_after_the_spike_with_w_in(tmp_path):
    """NIR's CubaLIF (no slamp metadata) resets in the step it spikes, not one step late
    (snnTorch's reset_delay=True default); w_in scales the synaptic input."""
    cuba = nir.CubaLIF(tau_syn=np.full(3, 2e-3), tau_mem=np.full(3, 4e-3), r=np.ones(3),
                       v_leak=np.zeros(3), v_threshold=np.ones(3), v_reset=np.zeros(3),
                       w_in=np.full(3, 3.0))
    p = _chain(tmp_path, nir.Affine(_w(3, 4, 2.0), np.zeros(3)), cuba)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SlampWarning)
        model = read_nir(p, dt=1e-3).model
    assert model[1].reset_delay is False
    ours, ref = _both(p, 1e-3, _x(t=24), "n1")
    np.testing.assert_array_equal(ours.spikes.numpy(), ref)
    late = nir.read(str(p), type_check=False)
    late.nodes["n1"].metadata = {"slamp.reset_delay": True}
    late.metadata = {"slamp.dt": 1e-3}
    assert not np.array_equal(nir_sim.simulate(late, _x(t=24))["n1"], ref) or ref.sum() == 0


def test_li_readout_is_the_membrane(tmp_path):
    li = nir.LI(tau=np.full(3, 4e-3), r=np.full(3, 1.5), v_leak=np.zeros(3))
    p = _chain(tmp_path, nir.Affine(_w(3, 4), np.zeros(3)), li)
    with pytest.warns(SlampWarning, match=r"node 'n1' \(LI\) is read as a non-spiking readout"):
        read_nir(p, dt=1e-3)
    ours, ref = _both(p, 1e-3, _x(), "n1")
    np.testing.assert_allclose(ours.mem.numpy().reshape(ref.shape), ref, rtol=1e-5, atol=1e-6)
    assert ours.spikes.sum() == 0 and np.abs(ref).sum() > 0


def test_li_inside_the_network_is_refused(tmp_path):
    li = nir.LI(tau=np.full(3, 4e-3), r=np.ones(3), v_leak=np.zeros(3))
    p = _chain(tmp_path, nir.Affine(_w(3, 4), np.zeros(3)), li,
               nir.Affine(_w(2, 3), np.zeros(2)), _lif(2), out=(2,))
    with pytest.raises(ModelError, match=r"node 'n1': LI feeds 'n2'; an LI is read only"):
        read_nir(p, dt=1e-3)


def test_li_then_threshold_and_scale_are_exact(tmp_path):
    """spyx's PSU_LIF form (LI then Threshold) and a Scale before a neuron."""
    li = nir.LI(tau=np.full(3, 4e-3), r=np.full(3, 4.0), v_leak=np.zeros(3))
    p = _chain(tmp_path, nir.Affine(_w(3, 4), np.zeros(3)), nir.Scale(np.full(3, 1.5)), li,
               nir.Threshold(np.full(3, 1.0)))
    ours, ref = _both(p, 1e-3, _x(), "n3")
    np.testing.assert_array_equal(ours.spikes.numpy(), ref)
    assert ref.sum() > 0


def test_sumpool_folds_into_the_next_synaptic_layer(tmp_path):
    conv = nir.Conv2d(input_shape=(4, 4), weight=RNG.uniform(0, 0.6, (2, 1, 3, 3)), stride=1,
                      padding=1, dilation=1, groups=1, bias=np.zeros(2))
    if_ = nir.IF(r=np.ones((2, 4, 4)), v_threshold=np.ones((2, 4, 4)), v_reset=np.zeros((2, 4, 4)))
    p = _chain(tmp_path, conv, if_, nir.SumPool2d(np.array([2, 2]), np.array([2, 2]),
                                                  np.array([0, 0])),
               nir.Flatten(input_type={"input": np.array([2, 2, 2])}, start_dim=0),
               nir.Affine(_w(3, 8, 0.5), np.zeros(3)), nir.IF(r=np.ones(3),
                                                             v_threshold=np.ones(3),
                                                             v_reset=np.zeros(3)),
               shape=(1, 4, 4))
    ours, ref = _both(p, 1.0, _x((1, 4, 4)), "n5")
    np.testing.assert_array_equal(ours.spikes.numpy(), ref)
    assert ref.sum() > 0


def test_a_sumpool_before_a_neuron_is_refused(tmp_path):
    pool = nir.SumPool2d(np.array([2, 2]), np.array([2, 2]), np.array([0, 0]))
    if_ = nir.IF(r=np.ones((1, 2, 2)), v_threshold=np.ones((1, 2, 2)),
                 v_reset=np.zeros((1, 2, 2)))
    p = _chain(tmp_path, pool, if_, shape=(1, 4, 4), out=(1, 2, 2))
    with pytest.raises(ModelError, match=r"node 'n1': a SumPool2d upstream feeds this IF"):
        read_nir(p, dt=1.0)


def test_threshold_runs_the_same_in_the_simulator_and_onnx(tmp_path):
    from slamp_deploy.exporters import get_exporter

    g = nir.NIRGraph(nodes={"input": nir.Input(np.array([4])),
                            "a": nir.Affine(_w(3, 4), np.zeros(3, np.float32)),
                            "thr": nir.Threshold(np.full(3, 0.5, np.float32)),
                            "b": nir.Affine(_w(2, 3, 2.0), np.zeros(2, np.float32)),
                            "if": nir.IF(r=np.ones(2), v_threshold=np.ones(2),
                                         v_reset=np.zeros(2)),
                            "output": nir.Output(np.array([2]))},
                     edges=[("input", "a"), ("a", "thr"), ("thr", "b"), ("b", "if"),
                            ("if", "output")])
    x = _x()
    ref = nir_sim.simulate(g, x)
    onnx = get_exporter("onnx")
    out = onnx.run(onnx.export(g, tmp_path, timesteps=x.shape[0]), x)
    np.testing.assert_array_equal(out["if"], ref["if"])
    assert 0 < ref["thr"].sum() < ref["thr"].size and ref["if"].sum() > 0
