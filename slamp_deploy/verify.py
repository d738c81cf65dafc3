"""Export stage of a run: write NIR, ONNX and (for Loihi) a Lava run, and prove each behaves the
same as the pruned model by running what was written in its real runtime.

* NIR: the file is read back and simulated (numpy reference simulator, float32, snnTorch's
  semantics); the tests also run it through snnTorch's own ``import_from_nir``.
* ONNX: the stateful single-step graph runs in onnxruntime for T steps; spikes must be
  identical and membranes within 1e-5 of the torch model.
* Lava (targets loihi2 and loihi): the NIR file runs in Lava's Loihi 2 simulator in its own
  Python 3.10 interpreter, in floating point (spikes compared with the pruned model, allowing
  Lava's one-step delay per connection layer, which the runner removes) and in Loihi's fixed
  point (8-bit weights; quantisation and clipping reported per layer, accuracy on the same
  samples beside the float accuracy).
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import nir
import numpy as np
import torch

from slamp_deploy.data import encode
from slamp_deploy.errors import ExportError, SlampWarning
from slamp_deploy.exporters import lava_export, nir_export, nir_sim, onnx_export
from slamp_deploy.model.graph import NEURON_KINDS, Op
from slamp_deploy.model.runner import run

if TYPE_CHECKING:
    from slamp_deploy.pipeline.run import PipelineContext

VERIFY_SAMPLES = 64
LAVA_TARGETS = ("loihi2", "loihi")
ONNX_ATOL = 1e-5


def verification_batch(ctx: PipelineContext, n: int = VERIFY_SAMPLES
                       ) -> tuple[np.ndarray, np.ndarray]:
    """The first ``n`` evaluation samples, encoded exactly as the pipeline encodes them."""
    ev = ctx.parts.eval
    sub = ev.subset(np.arange(min(n, len(ev))))
    gen = torch.Generator().manual_seed(ctx.cfg.seed)
    x = encode(sub.x, ctx.timesteps, ctx.cfg.encoding, sequence=sub.sequence, generator=gen)
    return x.detach().cpu().numpy().astype(np.float32), sub.y.numpy()


def torch_states(ctx: PipelineContext, x: np.ndarray) -> dict[str, np.ndarray]:
    """Spikes (``name``) and membranes (``name.mem``) of every neuron op, [T, N, *shape]."""
    rec: dict[str, list[np.ndarray]] = {}

    def grab(i: int, op: Op, t: int, inp: torch.Tensor, out: torch.Tensor) -> None:
        if op.kind in NEURON_KINDS:
            rec.setdefault(op.name, []).append(out.detach().cpu().numpy())
            rec.setdefault(f"{op.name}.mem", []).append(
                op.module.mem.detach().cpu().numpy())  # type: ignore[union-attr]

    ctx.graph.model.eval()
    with torch.no_grad():
        run(ctx.graph, torch.from_numpy(x).to(next(ctx.graph.model.parameters()).device),
            observers=(grab,))
    return {k: np.stack(v) for k, v in rec.items()}


def compare_spikes(ours: dict[str, np.ndarray], theirs: dict[str, np.ndarray],
                   names: list[str]) -> dict[str, Any]:
    """Per-layer fraction of identical spike entries, and whether all agree exactly."""
    layers = {}
    for name in names:
        a = ours[name]
        b = np.asarray(theirs[name]).reshape(a.shape)
        layers[name] = {"agreement": float((a == b).mean()),
                        "spikes_torch": int(a.sum()), "spikes_exported": int(b.sum())}
    return {"exact": all(v["agreement"] == 1.0 for v in layers.values()), "layers": layers}


def _accuracy(spikes: np.ndarray, labels: np.ndarray) -> float:
    counts = spikes.reshape(spikes.shape[0], spikes.shape[1], -1).sum(0)
    return float((counts.argmax(1) == labels).mean())


def export_all(ctx: PipelineContext) -> dict[str, Any]:
    """Write model.nir and model.onnx into the outputs, verify them, run Lava for Loihi."""
    c = ctx.cfg
    graph = nir_export.to_nir(ctx.graph, timesteps=ctx.timesteps, encoding=c.encoding,
                              readout=c.readout)
    x, labels = verification_batch(ctx, c.verify_samples)
    ours = torch_states(ctx, x)
    names = [op.name for op in ctx.graph.neuron_ops]
    section: dict[str, Any] = {"verified_samples": int(x.shape[1])}
    summary = []
    with tempfile.TemporaryDirectory() as d:
        nir_path = Path(d) / "model.nir"
        nir_export.write_nir(graph, nir_path)
        ctx.extra_files["model.nir"] = nir_path.read_bytes()
        back = nir.read(str(nir_path))
        sim = nir_sim.simulate(back, x)
        check = compare_spikes(ours, sim, names)
        section["nir"] = {"file": "model.nir", "nir_version": nir.version, "dt": nir_export.DT,
                          "nodes": len(graph.nodes),
                          "runtime": "slamp_deploy.exporters.nir_sim (numpy, float32)", **check}
        summary.append(f"NIR   model.nir: {_same(check)} on {x.shape[1]} samples")

        onnx_path = Path(d) / "model.onnx"
        exp = onnx_export.export_onnx(back, onnx_path, timesteps=ctx.timesteps)
        ctx.extra_files["model.onnx"] = onnx_path.read_bytes()
        ort = onnx_export.run_onnx(onnx_path, x)
        check = compare_spikes(ours, ort, names)
        mem_err = max(float(np.abs(ort[f"{n}.mem"].reshape(ours[f"{n}.mem"].shape)
                                   - ours[f"{n}.mem"]).max()) for n in names)
        check["max_abs_state_error"] = mem_err
        check["states_within_tolerance"] = mem_err <= ONNX_ATOL
        section["onnx"] = {"file": "model.onnx", "opset": exp.opset,
                           "state_pairs": exp.state_pairs, "runtime": "onnxruntime", **check}
        summary.append(f"ONNX  model.onnx: {_same(check)}, states within "
                       f"{mem_err:.1e} (onnxruntime)")

        if c.target in LAVA_TARGETS and c.lava:
            section["lava"] = _lava(ctx, nir_path, back, x, labels, Path(d), ours)
            summary.append(section["lava"]["summary"])
    section["summary"] = "\n".join(summary)
    section["markdown"] = export_markdown(section)
    return section


def _same(check: dict[str, Any]) -> str:
    if check["exact"]:
        return "spikes identical to the pruned model"
    worst = min(v["agreement"] for v in check["layers"].values())
    return f"spikes DIFFER from the pruned model (worst layer agreement {worst:.4f})"


def _lava(ctx: PipelineContext, nir_path: Path, graph: Any, x: np.ndarray,
          labels: np.ndarray, work: Path, ours: dict[str, np.ndarray]) -> dict[str, Any]:
    """Lava floating_pt and fixed_pt on the verification samples, or how to enable it."""
    if lava_export.find_lava_python() is None:
        msg = ("Lava check skipped: the Lava interpreter was not found; run `make lava-env` "
               "or set SLAMP_LAVA_PYTHON to a Python 3.10 with lava-nc 0.10.0")
        warnings.warn(msg, SlampWarning, stacklevel=2)
        return {"available": False, "how_to_enable": msg, "summary": f"Lava  {msg}"}
    ref = lava_export.reference_spikes(graph, x)
    out: dict[str, Any] = {"available": True, "samples": int(x.shape[1])}
    torch_acc = _accuracy(ours[ctx.graph.neuron_ops[-1].name], labels)
    for mode in ("floating_pt", "fixed_pt"):
        try:
            res = lava_export.run_lava(nir_path, x, mode=mode, workdir=work / mode,
                                       timeout_s=ctx.cfg.lava_timeout)
        except ExportError as e:
            out[mode] = {"error": str(e)}
            warnings.warn(f"Lava {mode}: {e}", SlampWarning, stacklevel=2)
            continue
        cmp = lava_export.compare_with_reference(res.spikes, ref, labels, ctx.cfg.readout,
                                                 order=res.order, stats=res.stats)
        # wall-clock times go to the report's timings_s, so every other number is reproducible
        ctx.timer.stages[f"lava_{mode}"] = round(res.wall_s, 3)
        entry = {**cmp, "warnings": list(res.warnings),
                 "layers_lava": res.stats.get("layers", [])}
        for w in res.warnings:
            warnings.warn(f"Lava {mode}: {w}", SlampWarning, stacklevel=2)
        out[mode] = entry
    out["accuracy_torch"] = torch_acc
    fl, fx = out.get("floating_pt", {}), out.get("fixed_pt", {})
    parts = []
    if "spike_agreement" in fl:
        parts.append("floating_pt " + ("identical spikes" if fl["exact_match"]
                                       else f"spike agreement {fl['spike_agreement']:.4f}"))
    if "spike_agreement" in fx:
        parts.append(f"fixed_pt spike agreement {fx['spike_agreement']:.4f}, accuracy "
                     f"{fx['accuracy_lava']:.4f} vs float {torch_acc:.4f}")
    errors = [f"{m}: {out[m]['error']}" for m in ("floating_pt", "fixed_pt") if "error" in out[m]]
    if errors:
        parts.append("; ".join(errors))
    if fl.get("reset_substituted"):
        parts.append("zero reset stands in for subtract reset (accuracy is the zero-reset "
                     "model's)")
    out["summary"] = f"Lava  ({x.shape[1]} samples, Loihi 2 simulator): " + "; ".join(parts)
    return out


def export_markdown(section: dict[str, Any]) -> str:
    lines = ["## Export and equivalence", "",
             f"Checked on the first {section['verified_samples']} evaluation samples.", "",
             "| format | runtime | spikes vs pruned model | note |", "|---|---|---|---|"]
    n, o = section["nir"], section["onnx"]
    lines.append(f"| NIR ({n['file']}, nir {n['nir_version']}) | {n['runtime']} | "
                 f"{'identical' if n['exact'] else 'differ'} | dt = {n['dt']} |")
    lines.append(f"| ONNX ({o['file']}, opset {o['opset']}) | {o['runtime']} | "
                 f"{'identical' if o['exact'] else 'differ'} | max state error "
                 f"{o['max_abs_state_error']:.1e} |")
    lava = section.get("lava")
    if lava is not None:
        if not lava.get("available"):
            lines.append(f"| Lava | not run | - | {lava['how_to_enable']} |")
        for mode in ("floating_pt", "fixed_pt"):
            e = lava.get(mode)
            if not e:
                continue
            if "error" in e:
                lines.append(f"| Lava {mode} | Loihi 2 simulator | error | {e['error']} |")
                continue
            note = (f"accuracy {e['accuracy_lava']:.4f} (float model "
                    f"{lava['accuracy_torch']:.4f})" if mode == "fixed_pt" else
                    "after removing Lava's one-step delay per layer")
            if e.get("warning"):
                note += f"; {e['warning']}"
            agree = "identical" if e["exact_match"] else f"{e['spike_agreement']:.4f}"
            lines.append(f"| Lava {mode} | Loihi 2 simulator (lava-nc 0.10.0) | {agree} | "
                         f"{note} |")
    return "\n".join(lines)
