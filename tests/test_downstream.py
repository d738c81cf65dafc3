"""The downstream-aware temporal factor: closed forms, LAMP limits, paths through residual joins."""

from __future__ import annotations

import numpy as np
import pytest
import snntorch as snn
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from slamp_deploy.data import from_arrays
from slamp_deploy.errors import UsageError
from slamp_deploy.model.graph import trace
from slamp_deploy.prune.allocate import allocate
from slamp_deploy.prune.calibrate import calibrate, downstream_impulse, neuron_successors
from slamp_deploy.prune.temporal import chain_response, impulse_response, temporal_factor


def _lif(beta: float, reset: str = "subtract", output: bool = False) -> snn.Leaky:
    return snn.Leaky(beta=beta, init_hidden=True, reset_mechanism=reset, output=output)


def _mlp(*betas: float, reset: str = "subtract") -> nn.Sequential:
    torch.manual_seed(0)
    mods: list[nn.Module] = []
    width = 12
    for i, b in enumerate(betas):
        lin = nn.Linear(width, 10 if i < len(betas) - 1 else 4)
        with torch.no_grad():
            lin.weight.mul_(3)
        mods += [lin, _lif(b, reset, output=i == len(betas) - 1)]
        width = lin.out_features
    return nn.Sequential(*mods)


def _data(n: int = 48) -> object:
    rng = np.random.default_rng(1)
    return from_arrays(rng.random((n, 12)).astype(np.float32), rng.integers(0, 4, n),
                       source="toy")


def _stats(model: nn.Module, T: int, shape=(12,)):
    g = trace(model, shape)
    return g, calibrate(g, _data(), timesteps=T, encoding="rate", readout="spikes", seed=0)


@settings(max_examples=50, deadline=None)
@given(a=st.floats(0.0, 0.99), b=st.floats(0.0, 0.99), T=st.integers(1, 20))
def test_chain_of_two_leaky_populations_is_their_convolution(a, b, T):
    h0, h1 = impulse_response("leaky", a, 0, T), impulse_response("leaky", b, 0, T)
    H = chain_response(h0, [(chain_response(h1, []), 1)])
    expect = np.array([sum(a ** i * b ** (k - i) for i in range(k + 1)) for k in range(T)])
    assert H.tolist() == pytest.approx(expect.tolist(), rel=1e-9)
    # uniform activity: the l2 ratios of the own response and of the convolution, from their
    # definitions, and the variant is their geometric mean
    own = max(1.0, float(np.sqrt(np.mean(np.cumsum(h0) ** 2))))
    chain = max(1.0, float(np.sqrt(np.mean(np.cumsum(expect) ** 2))))
    assert temporal_factor(h0, np.ones(T), np.ones(T), "l2") == pytest.approx(own)
    assert temporal_factor(h0, np.ones(T), np.ones(T), "downstream", chain=H) == pytest.approx(
        np.sqrt(own * chain))
    with pytest.raises(UsageError, match="chain response"):
        temporal_factor(h0, np.ones(T), np.ones(T), "downstream")


@settings(max_examples=40, deadline=None)
@given(betas=st.lists(st.floats(0.0, 0.99), min_size=1, max_size=4), T=st.integers(1, 16),
       act=st.lists(st.floats(0.0, 1.0), min_size=16, max_size=16))
def test_downstream_is_lamp_at_one_step_and_without_memory(betas, T, act):
    succ: list[tuple[np.ndarray, int]] = []
    for b in reversed(betas):  # T = 1: every chain is [1]
        succ = [(chain_response(impulse_response("leaky", b, 0, 1), succ), 1)]
    one = impulse_response("leaky", betas[0], 0, 1)
    assert temporal_factor(one, np.array([act[0]]), np.ones(1), "downstream",
                           chain=succ[0][0]) == 1.0
    succ = []
    for _ in betas:  # beta = 0 everywhere: the chain is the unit impulse
        succ = [(chain_response(impulse_response("leaky", 0.0, 0, T), succ), 1)]
    H = succ[0][0]
    assert H.tolist() == [1.0] + [0.0] * (T - 1)
    assert temporal_factor(H, np.array(act[:T]), np.ones(T), "downstream",
                           chain=H) == pytest.approx(1.0)


def test_calibrated_downstream_is_lamp_at_t1_and_for_memoryless_networks():
    for T, betas in ((1, (0.8, 0.9, 0.95)), (8, (0.0, 0.0, 0.0))):
        g, stats = _stats(_mlp(*betas), T)
        lam = stats.lambdas("downstream")
        assert lam == dict.fromkeys(lam, 1.0), (T, betas)
        weights = {la.name: la.weight for la in g.layers}
        alive = {n: torch.ones_like(w, dtype=torch.bool) for n, w in weights.items()}
        for s in (0.5, 0.9):
            assert (allocate("slamp", weights, alive, s, lambdas=lam).keep
                    == allocate("lamp", weights, alive, s).keep)


def test_a_fast_layer_before_slow_ones_sees_their_memory():
    """The blind spot of the own-layer estimator: the input layer's lambda must grow with the
    memory downstream, while the own-layer (l2) lambda cannot see it."""
    _, fast_after = _stats(_mlp(0.3, 0.0, 0.0), 16)
    _, slow_after = _stats(_mlp(0.3, 0.9, 0.97), 16)
    assert slow_after.lambdas("l2")["0"] == pytest.approx(fast_after.lambdas("l2")["0"], rel=0.2)
    assert slow_after.lambdas("downstream")["0"] > 2 * fast_after.lambdas("downstream")["0"]
    # with nothing slow after it, the input layer's factor is its own
    assert fast_after.lambdas("downstream")["0"] == pytest.approx(fast_after.lambdas("l2")["0"])
    # the last layer has nothing after it: its downstream lambda is its own l2 lambda
    assert slow_after.lambdas("downstream")["4"] == pytest.approx(slow_after.lambdas("l2")["4"])
    # and along the chain the response only gains memory: H_0 >= H_2 >= H_4 elementwise
    d = slow_after.downstream
    assert np.all(d["0"] >= d["2"] - 1e-12) and np.all(d["2"] >= d["4"] - 1e-12)


def test_zero_reset_shortens_the_memory_by_the_measured_rate():
    g = trace(_mlp(0.9, 0.9, reset="zero"), (12,))
    rates = {"1": np.full(6, 0.5), "3": np.full(6, 0.0)}
    got = downstream_impulse(g, 6, rates)
    expect = chain_response(impulse_response("leaky", 0.45, 0, 6),
                            [(impulse_response("leaky", 0.9, 0, 6), 1)])
    assert got["0"] == pytest.approx(expect)
    g2 = trace(_mlp(0.9, 0.9, reset="subtract"), (12,))  # subtract keeps the error
    assert downstream_impulse(g2, 6, rates)["0"] == pytest.approx(
        chain_response(impulse_response("leaky", 0.9, 0, 6),
                       [(impulse_response("leaky", 0.9, 0, 6), 1)]))


class _Block(nn.Module):
    """stem LIF -> conv path (fc1, lif1, fc2) + identity shortcut -> lif2 -> head."""

    def __init__(self, betas=(0.5, 0.6, 0.9, 0.95)):
        super().__init__()
        self.stem, self.fc1, self.fc2, self.head = (nn.Linear(12, 8), nn.Linear(8, 8),
                                                    nn.Linear(8, 8), nn.Linear(8, 4))
        self.lif0, self.lif1, self.lif2 = (_lif(b) for b in betas[:3])
        self.out = _lif(betas[3], output=True)

    def forward(self, x):
        s0 = self.lif0(self.stem(x))
        s2 = self.lif2(self.fc2(self.lif1(self.fc1(s0))) + s0)
        return self.out(self.head(s2))


def test_residual_propagation_follows_both_paths():
    torch.manual_seed(0)
    g = trace(_Block(), (12,))
    idx = {op.name: i for i, op in enumerate(g.ops)}
    # lif0 reaches lif1 through fc1 and lif2 directly through the identity shortcut
    assert neuron_successors(g, idx["lif0"]) == {idx["lif1"]: 1, idx["lif2"]: 1}
    T = 10
    h = {n: impulse_response("leaky", b, 0, T) for n, b in
         zip(("lif0", "lif1", "lif2", "out"), (0.5, 0.6, 0.9, 0.95), strict=True)}
    H_out = chain_response(h["out"], [])
    H2 = chain_response(h["lif2"], [(H_out, 1)])
    H1 = chain_response(h["lif1"], [(H2, 1)])
    H0 = np.convolve(h["lif0"], (H1 + H2) / 2)[:T]
    got = downstream_impulse(g, T)
    assert got["stem"] == pytest.approx(H0)
    assert got["fc1"] == pytest.approx(H1) and got["fc2"] == pytest.approx(H2)
    assert got["head"] == pytest.approx(H_out)
    # the long path through lif1 adds memory the shortcut alone would not have
    assert got["stem"].sum() > chain_response(h["lif0"], [(H2, 1)]).sum()


def test_downstream_needs_the_responses():
    _, stats = _stats(_mlp(0.5, 0.9), 4)
    empty = type(stats)(**{**{f: getattr(stats, f) for f in (
        "timesteps", "samples", "activity_rms", "firing_rate", "impulse", "timestep_weights",
        "timestep_weights_source")}, "downstream": {}})
    with pytest.raises(UsageError, match="downstream"):
        empty.lambdas("downstream")
    assert empty.lambdas("l2") == stats.lambdas("l2")


@pytest.mark.slow
def test_pipeline_prunes_with_the_downstream_variant(tmp_path, tiny_model_file, tiny_weights,
                                                     digits_npz):
    """Wired through: the report's layer scores are the variant's lambdas and the allocation
    differs from l2's. The tiny model resets to zero, so the readout, which has nothing after
    it, scores below its l2 factor (its memory shortened by its firing rate), and the first
    layer, which feeds it, above."""
    from benchmarks.quality import RunSpec, _context
    from benchmarks.tasks import Task

    task = Task(name="tiny", model=f"{tiny_model_file}:build", weights=str(tiny_weights),
                train=digits_npz, eval=digits_npz, encoding="rate", readout="spikes",
                timesteps=6, description="tiny")
    reps = {}
    for lv in ("l2", "downstream"):
        # the pipeline's own prune stage (calibrate, allocate, prune), as the benchmark runs it
        ctx = _context(task, RunSpec(task="tiny", variant=lv, method="slamp", sparsity=0.8,
                                     seed=0, epochs=0, lambda_variant=lv,
                                     current_matching=False))
        ctx.prune_and_recover()
        reps[lv] = ctx.allocation
    assert ctx.cfg.lambda_variant == "downstream"
    score = {lv: {la.name: la.layer_score for la in a.layers} for lv, a in reps.items()}
    names = list(score["l2"])
    first, last = names[0], names[-1]
    assert 1.0 <= score["downstream"][last] < score["l2"][last]
    assert score["downstream"][first] > 1.2 * score["l2"][first]
    kept = {lv: [la.n_kept for la in a.layers] for lv, a in reps.items()}
    assert kept["downstream"] != kept["l2"]


def test_readout_keeping_candidates_keep_the_lamp_limits_and_l2_readout_ratio():
    """The two readout-keeping forms tried in benchmarks/lambda_sweep.py (docs/method.md):
    LAMP's keep counts at T = 1 and without memory (property 3); with slow layers after a fast
    one the input layer keeps downstream's factor while the readout keeps ``l2``'s ratio to the
    layer that feeds it (``anchored``) or its own ``l2`` factor (``readout_l2``)."""
    from benchmarks.lambda_sweep import _readout_keeping

    for T, betas in ((1, (0.8, 0.9, 0.95)), (8, (0.0, 0.0, 0.0))):
        g, stats = _stats(_mlp(*betas, reset="zero"), T)
        weights = {la.name: la.weight for la in g.layers}
        alive = {n: torch.ones_like(w, dtype=torch.bool) for n, w in weights.items()}
        for lam in _readout_keeping(g, stats.lambdas("l2"), stats.lambdas("downstream")):
            assert lam == dict.fromkeys(lam, 1.0), (T, betas)
            assert (allocate("slamp", weights, alive, 0.9, lambdas=lam).keep
                    == allocate("lamp", weights, alive, 0.9).keep)
    g, stats = _stats(_mlp(0.3, 0.9, 0.97, reset="zero"), 16)
    l2, ds = stats.lambdas("l2"), stats.lambdas("downstream")
    ro, anch = _readout_keeping(g, l2, ds)
    assert ro["0"] == anch["0"] == ds["0"] and ro["2"] == anch["2"] == ds["2"]
    assert ro["4"] == l2["4"] > ds["4"]  # zero reset: downstream shortened the readout's memory
    assert anch["4"] / anch["2"] == pytest.approx(l2["4"] / l2["2"])
