"""Residual networks (examples/cifar_resnet.py): traced as a DAG, pruned, retrained and exported,
with every export run in its real runtime (Lava's simulator included); fit-checked and capped
with the joined fan-ins added up; what cannot map a join (Speck/Xylo mappers, joins after the
neurons in Lava) says so by name."""

from __future__ import annotations

import json

import nir
import numpy as np
import pytest
import snntorch as snn
import torch
from slamp_deploy.examples import cifar_resnet
from slamp_deploy.exporters import nir_sim, onnx_export
from slamp_deploy.exporters.nir_export import DT, to_nir, write_nir
from torch import nn

from slamp_deploy.cli import main
from slamp_deploy.model.graph import reset_state, trace
from slamp_deploy.model.nir_import import NIRNetwork, from_nir
from slamp_deploy.model.runner import run
from slamp_deploy.prune.masks import apply_masks, magnitude_mask

from .test_nir_export import digits_seq, snntorch_import_spikes, spikes_of

RESNET = "slamp_deploy.examples.cifar_resnet:resnet_tiny_digits"


def pruned_resnet():
    g = trace(cifar_resnet.resnet_tiny_digits().eval(), (1, 8, 8))
    apply_masks(g, {la.name: magnitude_mask(la.weight, la.n_weights // 4) for la in g.layers})
    return g


@pytest.mark.parametrize(("factory", "shape", "n_out", "n_conv"), [
    ("resnet19_cifar10", (3, 32, 32), 10, 19), ("resnet18_cifar10", (3, 32, 32), 10, 18),
    ("resnet19_cifar100", (3, 32, 32), 100, 19), ("resnet19_dvs48", (2, 48, 48), 10, 19),
])
def test_resnet_factories_trace_as_dags_and_run(factory, shape, n_out, n_conv):
    graph = trace(getattr(cifar_resnet, factory)(), shape)
    kinds = [op.kind for op in graph.ops]
    blocks = len(cifar_resnet.CONFIGS[factory.split("_")[0]][1])
    n_blocks = sum(n for _, n, _ in cifar_resnet.CONFIGS[factory.split("_")[0]][1])
    assert kinds.count("add") == n_blocks and not graph.is_chain
    # the name counts 3x3 convs and Linear layers (ResNet-19: 17 + 2); 1x1 shortcuts come on top
    shortcuts = sum(1 for op in graph.ops if ".shortcut." in op.name and op.kind == "conv2d")
    assert shortcuts == blocks - 1
    n_lin = kinds.count("linear")
    assert kinds.count("conv2d") - shortcuts + n_lin == n_conv
    assert graph.n_outputs == n_out and "maxpool" not in kinds
    out = run(graph, torch.rand(2, 2, *shape))
    assert out.spikes is not None and out.spikes.shape == (2, 2, n_out)


def test_tiny_resnet_trained_on_digits_runs_exactly_as_its_own_forward():
    model = cifar_resnet.resnet_tiny_digits().eval()
    g = trace(model, (1, 8, 8))
    x = digits_seq(40)
    ours = run(g, x)
    reset_state(model)
    with torch.no_grad():
        theirs = torch.stack([model(x[t])[0] for t in range(x.shape[0])])
    assert torch.equal(ours.spikes, theirs)
    from slamp_deploy.data import load_digits

    acc = float((ours.spikes.sum(0).argmax(1) == load_digits().y[:40]).float().mean())
    assert acc >= 0.9  # trained weights, not a random initialisation
    joined = [la.name for la in g.layers if la.neuron is not None
              and la.neuron.name == "layers.1.lif2"]
    assert joined == ["layers.1.conv2", "layers.1.shortcut.0"]


def test_nir_export_sums_both_branches_into_one_neuron_node(tmp_path):
    g = pruned_resnet()
    graph = to_nir(g, timesteps=8, encoding="direct", readout="spikes")
    into = {n: sorted(a for a, b in graph.edges if b == n) for n in graph.nodes}
    # identity shortcut: the previous block's neurons feed lif2 directly (an edge, no node)
    assert into["layers.0.lif2"] == ["layers.0.conv2", "stem.2"]
    # projection shortcut: a 1x1 conv node with its BatchNorm folded in
    assert into["layers.1.lif2"] == ["layers.1.conv2", "layers.1.shortcut.0"]
    assert isinstance(graph.nodes["layers.1.shortcut.0"], nir.Conv2d)
    assert not any(".bn" in n or "shortcut.1" in n for n in graph.nodes)
    path = write_nir(graph, tmp_path / "m.nir")
    x = digits_seq(16)
    ours = spikes_of(g, x)
    back = nir.read(str(path))
    sim = nir_sim.simulate(back, x.numpy())
    exp = onnx_export.export_onnx(back, tmp_path / "m.onnx", timesteps=8)
    ort = onnx_export.run_onnx(exp.path, x.numpy())
    for name, s in ours.items():
        np.testing.assert_array_equal(np.asarray(sim[name]).reshape(s.shape), s)
        np.testing.assert_array_equal(np.asarray(ort[name]).reshape(s.shape), s)
    assert all(s.sum() > 0 for s in ours.values())


def test_snntorch_importer_reproduces_the_residual_networks_spikes(tmp_path):
    pytest.importorskip("nirtorch")
    g = pruned_resnet()
    path = write_nir(to_nir(g, timesteps=8, encoding="direct", readout="spikes"),
                     tmp_path / "m.nir")
    x = digits_seq(4)
    ours = spikes_of(g, x)["head.2"]
    np.testing.assert_array_equal(snntorch_import_spikes(path, x), ours)
    assert ours.sum() > 0  # equal because both spike, not because both are silent


def test_a_residual_nir_file_comes_back_as_a_network_that_runs_the_same(tmp_path):
    g = pruned_resnet()
    path = write_nir(to_nir(g, timesteps=8, encoding="direct", readout="spikes"),
                     tmp_path / "m.nir")
    model, meta = from_nir(path)
    assert isinstance(model, NIRNetwork) and "layers.1.lif2" in meta["slamp.node_names"]
    g2 = trace(model, (1, 8, 8))
    assert sum(op.kind == "add" for op in g2.ops) == 2
    x = digits_seq(12)
    assert torch.equal(run(g2, x).spikes, run(g, x).spikes)


def test_a_foreign_input_gain_is_folded_into_every_branch(tmp_path):
    """Two Affine nodes into one LIF whose r = 1 (not snnTorch's tau/dt): both branches absorb
    the gain dt/tau, so the imported model spikes as NIR's equations say."""
    rng = np.random.default_rng(0)
    tau = np.full(5, 4 * DT)
    nodes = {"input": nir.Input(np.array([3])),
             "a": nir.Affine(rng.normal(size=(5, 3)).astype(np.float32) * 6, np.zeros(5)),
             "b": nir.Affine(rng.normal(size=(5, 3)).astype(np.float32) * 6, np.ones(5)),
             "lif": nir.LIF(tau=tau, r=np.ones(5), v_leak=np.zeros(5),
                            v_threshold=np.ones(5), v_reset=np.zeros(5)),
             "output": nir.Output(np.array([5]))}
    edges = [("input", "a"), ("input", "b"), ("a", "lif"), ("b", "lif"), ("lif", "output")]
    p = tmp_path / "g.nir"
    nir.write(str(p), nir.NIRGraph(nodes=nodes, edges=edges, metadata={"slamp.dt": DT}))
    model, _ = from_nir(p)
    x = torch.rand(6, 4, 3)
    with torch.no_grad():
        ours = run(trace(model, (3,)), x).spikes
    ref = nir_sim.simulate(nir.read(str(p)), x.numpy())["lif"]
    np.testing.assert_array_equal(ours.numpy(), np.asarray(ref).reshape(ours.shape))
    assert ours.sum() > 0


class SpikeSum(nn.Module):
    """A residual join on spikes *after* the neurons (SEW-ResNet style): exported and run too."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(6, 6)
        self.lif1 = snn.Leaky(beta=0.8, init_hidden=True)
        self.fc2 = nn.Linear(6, 6)
        self.lif2 = snn.Leaky(beta=0.8, init_hidden=True)
        self.fc3 = nn.Linear(6, 4)
        self.lif3 = snn.Leaky(beta=0.8, init_hidden=True)

    def forward(self, x):
        s1 = self.lif1(self.fc1(x))
        return self.lif3(self.fc3(self.lif2(self.fc2(s1)) + s1))


def test_lava_stages_give_each_join_one_branch_per_edge_with_its_depth():
    from slamp_deploy.exporters import lava_stages

    g = pruned_resnet()
    graph = to_nir(g, timesteps=8, encoding="direct", readout="spikes")
    stages, ignored = lava_stages.build_stages(graph)
    by = {st.name: st for st in stages}
    assert ignored == [] and by["stem.2"].depth == 1 and by["layers.0.lif2"].depth == 3
    assert [src for src, _ in by["layers.0.lif2"].sources] == ["layers.0.lif1", "stem.2"]
    assert by["layers.1.lif2"].depth == 5 and [src for src, _ in by["layers.1.lif2"].sources] \
        == ["layers.1.lif1", "layers.0.lif2"]
    # the identity shortcut's columns are the identity (gain and threshold 1 here)
    n = by["layers.0.lif2"].n_out
    ident = by["layers.0.lif2"].matrix[:, -n:]
    assert (ident != sp_identity(n)).nnz == 0
    # a join after the neurons (spikes summed into a synaptic layer) is refused by name
    net = SpikeSum()
    with pytest.raises(Exception, match="NIR node 'fc3' has 2 inputs; the Lava backend joins "
                                        "branches only at neuron nodes"):
        lava_stages.build_stages(to_nir(trace(net, (6,)), timesteps=4, encoding="direct",
                                        readout="spikes"))


def sp_identity(n):
    import scipy.sparse as sp

    return sp.identity(n, format="csr")


def test_join_after_the_neurons_exports_as_two_edges_into_the_next_layer(tmp_path):
    torch.manual_seed(0)
    net = SpikeSum()
    with torch.no_grad():
        for m in (net.fc1, net.fc2, net.fc3):
            m.weight.mul_(5)
    g = trace(net, (6,))
    graph = to_nir(g, timesteps=6, encoding="direct", readout="spikes")
    assert sorted(a for a, b in graph.edges if b == "fc3") == ["lif1", "lif2"]
    x = torch.rand(6, 5, 6)
    ours = spikes_of(g, x)
    sim = nir_sim.simulate(nir.read(str(write_nir(graph, tmp_path / "s.nir"))), x.numpy())
    for name, s in ours.items():
        np.testing.assert_array_equal(np.asarray(sim[name]).reshape(s.shape), s)


@pytest.mark.slow
def test_cli_prunes_retrains_checks_and_exports_the_residual_example(tmp_path):
    out = tmp_path / "o"
    code = main(["--model", RESNET, "--target", "loihi2", "--epochs", "1", "--sparsity", "0.8",
                 "--verify-samples", "16", "--out", str(out)])
    assert code == 0
    rep = json.loads((out / "report.json").read_text())
    assert rep["accuracy"]["dense"] >= 0.9
    assert abs(rep["sparsity"]["achieved"] - 0.8) < 0.01
    adds = [op for op in rep["model"]["ops"] if op["kind"] == "add"]
    assert [a["inputs"] for a in adds] == [["layers.0.bn2", "stem.2"],
                                           ["layers.1.bn2", "layers.1.shortcut.1"]]
    # exports proven in their runtimes, Lava's Loihi 2 simulator included
    assert rep["export"]["nir"]["exact"] and rep["export"]["onnx"]["exact"]
    lava = rep["export"]["lava"]
    assert lava["floating_pt"]["exact_match"] is True
    assert lava["fixed_pt"]["spike_agreement"] > 0.9
    lif2 = next(x for x in lava["floating_pt"]["layers_lava"] if x["name"] == "layers.0.lif2")
    assert lif2["delay"] == 3 and [(b["source"], b["wait"]) for b in lif2["branches"]] == [
        ("layers.0.lif1", 0), ("stem.2", 1)]  # the shortcut waits one step for the main path
    # the fit check maps each joined population once, with the fan-ins of its inputs added up
    fit = {row["name"]: row for row in rep["fit"]["report"]["layers"]}
    assert rep["fit"]["fits"] is True
    assert fit["layers.1.shortcut.0"]["binding_rule"] == "mapped with layers.1.conv2"
    assert fit["layers.1.shortcut.0"]["neurons"] == 0
    assert fit["layers.1.shortcut.0"]["cores"] is None
    ident = fit["layers.0.lif2:identity"]
    assert ident["kind"] == "identity" and ident["kept_synapses"] == 16 * 8 * 8
    state = torch.load(out / "pruned.pt", weights_only=True)
    model = cifar_resnet.resnet_tiny()
    model.load_state_dict(state, strict=False)

    def fan_in(conv, shape):  # kept synapses into each output unit, by convolving ones
        w = (conv.weight != 0).float()
        return torch.nn.functional.conv2d(torch.ones(1, *shape), w, stride=conv.stride,
                                          padding=conv.padding).flatten()

    b0, b1 = model.layers[0], model.layers[1]
    joined = fan_in(b1.conv2, (32, 4, 4)) + fan_in(b1.shortcut[0], (16, 8, 8))
    assert fit["layers.1.conv2"]["max_fan_in"] == int(joined.max())
    assert fit["layers.0.conv2"]["max_fan_in"] == int((fan_in(b0.conv2, (16, 8, 8)) + 1).max())
    # the stem's neurons feed layers.0.conv1, the identity shortcut and layers.1 (through lif2)
    assert fit["layers.0.conv1"]["max_fan_out"] > 0
    kept = sum(int((state[f"{r['name']}.weight"] != 0).sum()) for r in rep["layers"])
    assert kept == rep["sparsity"]["weights_kept"]


def test_check_maps_residual_joins_and_names_what_it_cannot(capsys):
    # TrueNorth: 256 inputs per neuron; layers.1's neurons read 288 (3x3x32) + 16 (1x1 shortcut)
    assert main(["check", "--target", "truenorth", "--model", RESNET]) == 3
    err = capsys.readouterr().err
    assert "layer layers.1.conv2: fan-in 304 > 256 (truenorth per-neuron limit)" in err
    # Speck maps layers onto its own kernel memory: no joins there yet
    assert main(["check", "--target", "speck", "--model", RESNET]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: fit check on speck: layer 'layers.1.shortcut.0' joins neuron "
                          "population 'layers.1.lif2' with layer 'layers.1.conv2'")
    assert err.count("\n") == 1



def test_fit_search_prunes_a_residual_model_until_the_joined_fan_in_fits(tmp_path):
    out = tmp_path / "f"
    assert main(["--model", RESNET, "--target", "truenorth", "--fit", "--epochs", "0",
                 "--verify-samples", "8", "--no-lava", "--out", str(out)]) == 0
    rep = json.loads((out / "report.json").read_text())
    fit = {row["name"]: row for row in rep["fit"]["report"]["layers"]}
    assert rep["fit"]["fits"] and 0 < rep["fit"]["fit_search_sparsity"] < 0.5
    assert fit["layers.1.conv2"]["max_fan_in"] <= 256  # 288 + 16 dense: the join was pruned


def test_capped_allocation_shares_the_fan_in_cap_of_joined_rows():
    """Rows of two joined layers and an identity shortcut share one fan-in cap per neuron; on a
    small case the greedy keeps the best-scoring feasible set (checked by enumeration)."""
    import itertools

    from slamp_deploy.geometry import LayerCaps, LayerGeometry
    from slamp_deploy.prune.allocate import allocate_capped

    rng = np.random.default_rng(4)
    a = LayerGeometry(name="a", kind="linear", in_shape=(3,), out_shape=(2,),
                      mask=np.ones((2, 3), bool), neuron_shape=(2,), population="p")
    b = LayerGeometry(name="b", kind="linear", in_shape=(2,), out_shape=(2,),
                      mask=np.ones((2, 2), bool), neuron_shape=(2,), population="p")
    ident = LayerGeometry(name="p:identity", kind="identity", in_shape=(2,), out_shape=(2,),
                          mask=np.ones(2, bool), neuron_shape=(2,), population="p")
    for trial in range(20):
        scores = {"a": rng.random((2, 3)) + 0.01, "b": rng.random((2, 2)) + 0.01}
        keep = int(rng.integers(1, 7))
        fan_in = 3  # per neuron, the identity synapse included: 2 weights per joined row
        alloc = allocate_capped(scores, [a, b, ident], None, keep,
                                extra_caps={"a": LayerCaps(fan_in_max=fan_in - 1),
                                            "b": LayerCaps(fan_in_max=fan_in - 1)})
        m = alloc.masks
        joined = m["a"].sum(1) + m["b"].sum(1)
        assert (joined <= fan_in - 1).all() and alloc.n_kept == min(keep, 4)
        flat = [("a", r, c) for r in range(2) for c in range(3)] + \
               [("b", r, c) for r in range(2) for c in range(2)]
        best = 0.0
        for k in range(min(keep, 4), 0, -1):
            for pick in itertools.combinations(flat, k):
                rows = [sum(1 for n, r, _ in pick if r == row) for row in range(2)]
                if max(rows) <= fan_in - 1:
                    best = max(best, sum(scores[n][r, c] for n, r, c in pick))
            break
        got = sum(float(scores[n][m[n]].sum()) for n in ("a", "b"))
        assert got == pytest.approx(best), trial
    # a profile's fan-in cap loses the identity shortcut's synapse, on both joined layers
    from slamp_deploy.chips import load_profile
    from slamp_deploy.chips.family import profile_caps

    caps = profile_caps([a, b, ident], load_profile("truenorth"))
    assert caps["a"].fan_in_max == caps["b"].fan_in_max == 255 and "p:identity" not in caps


def test_a_joined_population_maps_like_one_layer_over_both_inputs():
    """Two Linear layers joined into one population give the per-core counts of one Linear layer
    whose input is both inputs side by side (the merge is exact, not an estimate)."""
    from slamp_deploy.chips import load_profile
    from slamp_deploy.fit.check import check_fit
    from slamp_deploy.geometry import LayerGeometry

    rng = np.random.default_rng(0)
    m1, m2 = rng.random((300, 200)) < 0.3, rng.random((300, 90)) < 0.5
    pre = [LayerGeometry(name="a", kind="linear", in_shape=(64,), out_shape=(200,),
                         mask=rng.random((200, 64)) < 0.5, neuron_shape=(200,), source="@input"),
           LayerGeometry(name="b", kind="linear", in_shape=(64,), out_shape=(90,),
                         mask=rng.random((90, 64)) < 0.5, neuron_shape=(90,), source="@input")]
    joined = [
        *pre,
        LayerGeometry(name="p1", kind="linear", in_shape=(200,), out_shape=(300,), mask=m1,
                      neuron_shape=(300,), source="a", population="p"),
        LayerGeometry(name="p2", kind="linear", in_shape=(90,), out_shape=(300,), mask=m2,
                      neuron_shape=(300,), source="b", population="p")]
    # the same neurons as one layer reading a and b side by side (sources as one block)
    one = [*pre, LayerGeometry(name="p1", kind="linear", in_shape=(290,), out_shape=(300,),
                               mask=np.hstack([m1, m2]), neuron_shape=(300,), source="a")]
    for target in ("loihi", "truenorth", "spinnaker"):
        prof = load_profile(target)
        a = {lf.name: lf for lf in check_fit(joined, prof).layers}
        b = {lf.name: lf for lf in check_fit(one, prof).layers}
        assert a["p1"].cores == b["p1"].cores and a["p1"].max_fan_in == b["p1"].max_fan_in
        assert dict(a["p1"].cores_by_rule) == dict(b["p1"].cores_by_rule)
        values = {c.rule: c.value for c in a["p1"].checks if c.rule.startswith("core.")}
        assert values == {c.rule: c.value for c in b["p1"].checks if c.rule.startswith("core.")}
        assert a["p2"].cores is None and a["p2"].binding_rule == "mapped with p1"


def test_train_script_trains_a_resnet_and_prints_the_command_that_prunes_it(tmp_path, capsys):
    from slamp_deploy.model.loader import load_model

    from .test_datasets import _train_main, write_cifar10

    write_cifar10(tmp_path, per_batch=1, n_test=2)
    out = tmp_path / "r18.pt"
    meta = _train_main()(["--data", f"cifar10:{tmp_path}", "--model", "resnet18", "--epochs",
                          "1", "--timesteps", "1", "--batch-size", "5", "--device", "cpu",
                          "--out", str(out)])
    assert meta["model"] == "slamp_deploy.examples.cifar_resnet:resnet18_cifar10"
    assert (f"slamp-deploy --model slamp_deploy.examples.cifar_resnet:resnet18_cifar10 "
            f"--weights {out}") in capsys.readouterr().out
    loaded = load_model(meta["model"], str(out))
    state = torch.load(out, weights_only=True)
    assert torch.equal(loaded.model.state_dict()["stem.0.weight"], state["stem.0.weight"])


def test_incidence_in_chunks_equals_the_whole_for_linear_identity_and_joined_layers():
    from slamp_deploy.fit.check import _populations
    from slamp_deploy.geometry import LayerGeometry, core_starts, layer_stats

    rng = np.random.default_rng(2)
    lin = LayerGeometry(name="l", kind="linear", in_shape=(9,), out_shape=(11,),
                        mask=rng.random((11, 9)) < 0.5, neuron_shape=(11,), population="p")
    ident = LayerGeometry(name="i", kind="identity", in_shape=(11,), out_shape=(11,),
                          mask=np.ones(11, bool), neuron_shape=(11,), population="p")
    stats = [layer_stats(lin), layer_stats(ident)]
    _, merged = _populations([lin, ident], stats)
    for st in [*stats, merged["l"]]:
        starts = core_starts(11, 5)
        parts = [st.incidence(starts[a:a + 2], int(starts[a + 2]) if a + 2 < 5 else 11)
                 for a in range(0, 5, 2)]
        np.testing.assert_array_equal(np.hstack(parts), st.incidence(starts))
        np.testing.assert_array_equal(st.incidence(starts).sum(axis=0),
                                      np.add.reduceat(st.fan_in, starts))


def test_fit_geometry_refuses_a_join_after_the_neurons_by_name():
    from slamp_deploy.errors import ModelError
    from slamp_deploy.fit.from_graph import geometries
    from slamp_deploy.prune.masks import alive_masks

    g = trace(SpikeSum(), (6,))
    with pytest.raises(ModelError, match="fit check: the residual join 'lif2\\+lif1' adds spikes "
                                         "that feed 'fc3' directly"):
        geometries(g, alive_masks(g))
