"""--device cuda: every torch stage on the GPU (skipped without CUDA); a stage that runs out of
memory fails with one line naming --batch-size."""

from __future__ import annotations

import copy

import pytest
import torch

from slamp_deploy.cli import main
from slamp_deploy.config import PipelineConfig
from slamp_deploy.model.graph import trace
from slamp_deploy.pipeline import run as pipeline_run
from slamp_deploy.prune.masks import apply_masks, magnitude_mask
from slamp_deploy.prune.recover import match_currents, match_currents_per_layer

from .test_recover import _data, conv_chain

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")


def test_out_of_memory_names_the_batch_size(monkeypatch, capsys, tmp_path):
    def exhausted(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(pipeline_run, "calibrate", exhausted)
    out = tmp_path / "out"
    assert main(["--epochs", "0", "--batch-size", "512", "--out", str(out)]) == 1
    text = capsys.readouterr().err
    err = [line for line in text.splitlines() if line.startswith("error:")]
    assert len(err) == 1 and "Traceback" not in text and not out.exists()
    assert "--batch-size 512" in err[0] and "'calibrate'" in err[0]


@cuda
def test_matching_on_the_gpu_equals_the_definition_on_the_gpu():
    torch.manual_seed(0)
    model = conv_chain().eval().cuda()
    a, b = (trace(copy.deepcopy(model), (1, 8, 8)) for _ in range(2))
    masks = {la.name: magnitude_mask(la.weight, la.n_weights // 3) for la in a.layers}
    dense = {la.name: la.weight.detach().clone() for la in a.layers}
    for g in (a, b):
        apply_masks(g, masks)
    data = _data(24, (1, 8, 8))
    fa = match_currents(a, dense, masks, data, timesteps=3, encoding="rate", batch_size=8)
    fb = match_currents_per_layer(b, dense, masks, data, timesteps=3, encoding="rate",
                                  batch_size=8)
    assert fa == fb
    assert all(p.is_cuda for p in a.model.parameters())


@cuda
def test_a_whole_run_on_the_gpu(tmp_path):
    res = pipeline_run.run(PipelineConfig(device="cuda", epochs=1, out=str(tmp_path / "o")))
    rep = res.report.to_dict()
    assert all(p.is_cuda for p in res.graph.model.parameters())
    assert rep["export"]["nir"]["verdict"] != "differ"
    assert rep["export"]["onnx"]["verdict"] != "differ"
    assert set(rep["timings_s"]) >= {"calibrate", "current_matching", "retrain", "export"}
