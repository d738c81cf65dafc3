"""Export stage of a run: write NIR (and the other formats) and prove each behaves the same.

Each exporter's claim of equivalence is checked by running what was written in a real runtime:
the NIR file through the numpy reference simulator (and snnTorch's importer in the tests), the
Lava network in Lava's own simulator, the ONNX graph in onnxruntime.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import nir
import numpy as np
import torch

from .data import encode
from .exporters import nir_export, nir_sim
from .graph import NEURON_KINDS, Op
from .runner import run

if TYPE_CHECKING:
    from .pipeline import PipelineContext

VERIFY_SAMPLES = 64


def verification_batch(ctx: PipelineContext, n: int = VERIFY_SAMPLES
                       ) -> tuple[np.ndarray, np.ndarray]:
    """The first ``n`` evaluation samples, encoded exactly as the pipeline encodes them."""
    ev = ctx.parts.eval
    sub = ev.subset(np.arange(min(n, len(ev))))
    gen = torch.Generator().manual_seed(ctx.cfg.seed)
    x = encode(sub.x, ctx.timesteps, ctx.cfg.encoding, sequence=sub.sequence, generator=gen)
    return x.detach().cpu().numpy().astype(np.float32), sub.y.numpy()


def torch_spikes(ctx: PipelineContext, x: np.ndarray) -> dict[str, np.ndarray]:
    """Spikes of every neuron op of the pruned torch model, [T, N, *shape] each."""
    rec: dict[str, list[np.ndarray]] = {}

    def grab(i: int, op: Op, t: int, inp: torch.Tensor, out: torch.Tensor) -> None:
        if op.kind in NEURON_KINDS:
            rec.setdefault(op.name, []).append(out.detach().cpu().numpy())

    ctx.graph.model.eval()
    with torch.no_grad():
        run(ctx.graph, torch.from_numpy(x).to(next(ctx.graph.model.parameters()).device),
            observers=(grab,))
    return {k: np.stack(v) for k, v in rec.items()}


def compare_spikes(ours: dict[str, np.ndarray], theirs: dict[str, np.ndarray]
                   ) -> dict[str, Any]:
    """Per-layer fraction of identical spike entries, and whether all agree exactly."""
    layers = {}
    for name, a in ours.items():
        b = theirs[name].reshape(a.shape)
        layers[name] = {"agreement": float((a == b).mean()),
                        "spikes_torch": int(a.sum()), "spikes_exported": int(b.sum())}
    return {"exact": all(v["agreement"] == 1.0 for v in layers.values()), "layers": layers}


def export_all(ctx: PipelineContext) -> dict[str, Any]:
    """Write model.nir into the outputs and verify it; returns the report's export section."""
    c = ctx.cfg
    graph = nir_export.to_nir(ctx.graph, timesteps=ctx.timesteps, encoding=c.encoding,
                              readout=c.readout)
    data = nir_export.nir_bytes(graph)
    ctx.extra_files["model.nir"] = data
    x, _labels = verification_batch(ctx)
    ours = torch_spikes(ctx, x)
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "model.nir"
        p.write_bytes(data)
        back = nir.read(str(p))
    sim = nir_sim.simulate(back, x)
    nir_check = compare_spikes(ours, {k: sim[k] for k in ours})
    section: dict[str, Any] = {
        "nir": {"file": "model.nir", "nir_version": nir.version, "dt": nir_export.DT,
                "nodes": len(graph.nodes), "verified_samples": int(x.shape[1]),
                "runtime": "slamp_deploy.exporters.nir_sim (numpy, float32)", **nir_check},
    }
    summary = [f"NIR: model.nir, {'spikes identical' if nir_check['exact'] else 'spikes DIFFER'}"
               f" to the pruned model on {x.shape[1]} samples"]
    section["summary"] = "\n".join(summary)
    section["markdown"] = export_markdown(section)
    return section


def export_markdown(section: dict[str, Any]) -> str:
    lines = ["## Export", ""]
    n = section["nir"]
    lines.append(f"- NIR ({n['file']}, nir {n['nir_version']}): "
                 f"{'identical spikes' if n['exact'] else 'spikes differ'} on "
                 f"{n['verified_samples']} evaluation samples ({n['runtime']})")
    return "\n".join(lines)
