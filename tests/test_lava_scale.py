"""Lava at scale: a network too large for Lava's CPU simulator within --lava-timeout runs on
the first samples that fit (probed on one sample), and the report says so."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from slamp_deploy import verify
from slamp_deploy.errors import ExportError


class _Probe:
    def __init__(self, wall_s: float | None) -> None:
        self.wall_s, self.calls, self.references = wall_s, [], []

    def run(self, path, x, reference=None):
        self.calls.append(x.shape[1])
        self.references.append(None if reference is None else
                               {k: v.shape[1] for k, v in reference.items()})
        if self.wall_s is None:
            raise ExportError("Lava floating_pt: timed out")
        return self

    def __getattr__(self, name):  # pragma: no cover - only wall_s is read
        raise AttributeError(name)


def _run(n: int, neurons: int, timeout: float = 300.0) -> verify._Run:
    x = np.zeros((4, n, 3), dtype=np.float32)
    ours = {"a": np.zeros((4, n, neurons), dtype=np.float32)}
    return verify._Run(x=x, labels=np.zeros(n, dtype=np.int64), ours=ours, names=["a"],
                       timesteps=4, readout="spikes",
                       options=verify.ExportOptions(lava_timeout=timeout), work=Path("."),
                       graph=None, model=None,
                       reference64={"a": np.zeros((4, n, neurons), dtype=np.uint8)})


def test_a_small_network_runs_every_sample_without_a_probe():
    probe = _Probe(1.0)
    assert verify.lava_samples(_run(64, 100), probe, Path("m.nir")) == (64, None)
    assert probe.calls == []


@pytest.mark.parametrize(("wall", "want"), [(50.0, 2), (25.0, 5), (400.0, 1), (1.0, 64)])
def test_a_large_network_runs_the_samples_that_fit_and_says_so(wall, want):
    probe = _Probe(wall)
    n, note = verify.lava_samples(_run(64, 200_000), probe, Path("m.nir"))
    assert probe.calls == [1] and n == want
    assert probe.references == [{"a": 1}]  # the probe's sample, for a layer-by-layer run
    if want < 64:
        assert note is not None and f"first {want} of 64" in note and "--lava-timeout" in note
    else:
        assert note is None


def test_a_probe_that_times_out_leaves_one_sample():
    n, note = verify.lava_samples(_run(64, 200_000), _Probe(None), Path("m.nir"))
    assert n == 1 and note is not None and "did not finish" in note


def test_the_note_is_in_the_summary_and_survives_report_json():
    chk = verify.LavaCheck(available=True, samples=4, samples_note="Lava ran on the first 4",
                           accuracy_torch=0.5)
    back = verify.LavaCheck.from_dict(chk.to_dict())
    assert back.samples_note == "Lava ran on the first 4" and "first 4" in back.summary(64)


def test_a_layer_by_layer_run_is_named_in_the_summary_row_and_report_json():
    mode = verify.LavaModeCheck(mode="floating_pt", method="layers", comparison={
        "exact_match": True, "spike_agreement": 1.0, "layers": {}})
    chk = verify.LavaCheck(available=True, samples=2, modes=(mode,), accuracy_torch=0.5)
    d = chk.to_dict()
    assert d["floating_pt"]["method"] == "layers"
    back = verify.LavaCheck.from_dict(d)
    assert back.modes[0].method == "layers" and "layer by layer" in back.summary(2)
    assert "layer by layer" in back.modes[0].row(0.5)
    plain = verify.LavaModeCheck.from_dict("floating_pt", {**d["floating_pt"],
                                                           "method": "network"})
    assert "layer by layer" not in plain.row(0.5)
