"""Export stage of a run: write NIR and ONNX, run the chip family's simulators (Lava for the
Loihi family), and prove each behaves the same as the pruned model by running what was written
in its real runtime.

Every format is a registered exporter (``slamp_deploy.exporters``), run through one interface:
export the NIR graph into a folder, run the file on the verification batch, compare its spikes
(and states) with the pruned torch model. Which exporters run is passed in (``exporters``);
:func:`verify_exports` takes explicit arguments and returns a frozen :class:`VerifyResult`
(the typed report section, the output files and the Lava wall times).

Every comparison tells rounding from error (``slamp_deploy.rounding``): the pruned model runs
in float64 beside a rigorous bound on the rounding of an export's arithmetic, each spike the
export flips is explained (the reference membrane was within that bound of the threshold) or
not, and the reference takes the export's side at each flip so cascades are not counted. The
verdicts read "identical", "identical up to N rounding flips (explained)" or "DIFFER" with the
first unexplained layer, sample and step. Each check queues its export's spikes; once every
export has run, one shared float64 run classifies them all (``rounding.classify``: forced runs
only on the samples where an export differs), and the checks are completed from its verdicts.

* NIR: the file is read back and simulated (numpy reference simulator, snnTorch's semantics)
  in float64 and in float32; the tests also run it through snnTorch's own ``import_from_nir``.
* ONNX: the stateful single-step graph runs in onnxruntime (float32) for T steps; spikes are
  classified as above and every membrane must be within twice its own rounding bound of the
  float64 reference's (a tolerance that scales with the values' magnitude).
* Lava (the Loihi family's simulator): the NIR file runs in Lava's Loihi 2 simulator in its own
  Python 3.10 interpreter, in floating point (spikes compared with the pruned model, allowing
  Lava's one-step delay per connection layer, which the runner removes) and in Loihi's fixed
  point (8-bit weights; quantisation and clipping reported per layer, accuracy on the same
  samples beside the float accuracy).
"""

from __future__ import annotations

import tempfile
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

import nir
import numpy as np
import torch

from slamp_deploy.data import encode
from slamp_deploy.errors import ExportError, SlampWarning
from slamp_deploy.exporters import (
    Exporter,
    check_known,
    get_exporter,
    lava_export,
    nir_export,
    nir_sim,
)
from slamp_deploy.model.graph import NEURON_KINDS, Op, SpikingGraph
from slamp_deploy.model.runner import run
from slamp_deploy.rounding import ForcedReference, Request, RoundingVerdict, classify

VERIFY_SAMPLES = 64


@dataclass(frozen=True, slots=True, kw_only=True)
class VerificationBatch:
    """Encoded inputs [T, N, *input_shape] (float32) and their labels [N]."""

    x: np.ndarray
    labels: np.ndarray


@dataclass(frozen=True, slots=True, kw_only=True)
class ExportOptions:
    """Per-exporter options of a run (today Lava's only)."""

    lava_timeout: float = 600.0


def verification_batch(eval_data: Any, *, timesteps: int, encoding: str, seed: int,
                       n: int = VERIFY_SAMPLES) -> VerificationBatch:
    """The first ``n`` evaluation samples, encoded exactly as the pipeline encodes them."""
    sub = eval_data.subset(np.arange(min(n, len(eval_data))))
    gen = torch.Generator().manual_seed(seed)
    x = encode(sub.x, timesteps, encoding, sequence=sub.sequence, generator=gen)
    return VerificationBatch(x=x.detach().cpu().numpy().astype(np.float32), labels=sub.y.numpy())


def torch_states(graph: SpikingGraph, x: np.ndarray) -> dict[str, np.ndarray]:
    """Spikes (``name``) and membranes (``name.mem``) of every neuron op, [T, N, *shape]."""
    rec: dict[str, list[np.ndarray]] = {}

    def grab(i: int, op: Op, t: int, inp: torch.Tensor, out: torch.Tensor) -> None:
        if op.kind in NEURON_KINDS:
            rec.setdefault(op.name, []).append(out.detach().cpu().numpy())
            rec.setdefault(f"{op.name}.mem", []).append(
                op.module.mem.detach().cpu().numpy())  # type: ignore[union-attr]

    graph.model.eval()
    with torch.no_grad():
        run(graph, torch.from_numpy(x).to(next(graph.model.parameters()).device),
            observers=(grab,))
    return {k: np.stack(v) for k, v in rec.items()}


# --------------------------------------------------------------------------- the section


@dataclass(frozen=True, slots=True, kw_only=True)
class LayerAgreement:
    name: str
    agreement: float
    spikes_torch: int
    spikes_exported: int


@dataclass(frozen=True, slots=True, kw_only=True)
class SpikeCheck:
    """Per-layer fraction of identical spike entries, and whether all agree exactly."""

    exact: bool  # bit-equal spikes to the float32 torch run
    layers: tuple[LayerAgreement, ...]
    rounding: tuple[RoundingVerdict, ...] = ()  # per precision the export ran in

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"exact": self.exact, "layers": {
            la.name: {"agreement": la.agreement, "spikes_torch": la.spikes_torch,
                      "spikes_exported": la.spikes_exported} for la in self.layers}}
        if self.rounding:
            d["rounding"] = [v.to_dict() for v in self.rounding]
            d["verdict"] = self.verdict
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SpikeCheck:
        return cls(exact=d["exact"], layers=tuple(
            LayerAgreement(name=k, **v) for k, v in d["layers"].items()),
            rounding=tuple(RoundingVerdict.from_dict(v) for v in d.get("rounding", ())))

    @property
    def verdict(self) -> str:
        """"identical", "explained" (rounding flips only) or "differ"."""
        if not self.rounding:
            return "identical" if self.exact else "differ"
        kinds = {v.verdict for v in self.rounding}
        return next(k for k in ("differ", "explained", "identical") if k in kinds)

    def same(self) -> str:
        if self.rounding:
            bad = [v for v in self.rounding if v.verdict == "differ"]
            texts = [v.text() for v in (bad or self.rounding)]
            return "spikes vs the pruned model: " + "; ".join(texts)
        if self.exact:
            return "spikes identical to the pruned model"
        worst = min(la.agreement for la in self.layers)
        return f"spikes DIFFER from the pruned model (worst layer agreement {worst:.4f})"


def compare_spikes(ours: dict[str, np.ndarray], theirs: Mapping[str, np.ndarray],
                   names: list[str]) -> SpikeCheck:
    """Per-layer fraction of identical spike entries, and whether all agree exactly."""
    layers = []
    for name in names:
        a = ours[name]
        b = np.asarray(theirs[name]).reshape(a.shape)
        layers.append(LayerAgreement(name=name, agreement=float((a == b).mean()),
                                     spikes_torch=int(a.sum()), spikes_exported=int(b.sum())))
    return SpikeCheck(exact=all(la.agreement == 1.0 for la in layers), layers=tuple(layers))


def _md(spikes: SpikeCheck) -> str:
    """The table cell: the verdict, with the flip counts."""
    if not spikes.rounding:
        return "identical" if spikes.exact else "differ"
    cells = []
    for v in spikes.rounding:
        if v.verdict == "differ":
            f = v.first_unexplained
            assert f is not None
            cells.append(f"DIFFER ({v.precision}: {v.unexplained} unexplained flips, first in "
                         f"'{f.layer}', sample {f.sample}, step {f.step})")
        elif v.verdict == "explained":
            cells.append(f"identical up to {v.explained} rounding flips (explained, "
                         f"{v.precision})")
        else:
            cells.append(f"identical ({v.precision})")
    return "; ".join(cells)


@dataclass(frozen=True, slots=True, kw_only=True)
class NirCheck:
    name: ClassVar[str] = "nir"
    file: str
    nir_version: str
    dt: float
    nodes: int
    runtime: str
    spikes: SpikeCheck

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "nir_version": self.nir_version, "dt": self.dt,
                "nodes": self.nodes, "runtime": self.runtime, **self.spikes.to_dict()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> NirCheck:
        return cls(file=d["file"], nir_version=d["nir_version"], dt=d["dt"], nodes=d["nodes"],
                   runtime=d["runtime"], spikes=SpikeCheck.from_dict(d))

    def summary(self, samples: int) -> str:
        return f"NIR   {self.file}: {self.spikes.same()} on {samples} samples"

    def rows(self) -> list[str]:
        return [f"| NIR ({self.file}, nir {self.nir_version}) | {self.runtime} | "
                f"{_md(self.spikes)} | dt = {self.dt} |"]


@dataclass(frozen=True, slots=True, kw_only=True)
class OnnxCheck:
    name: ClassVar[str] = "onnx"
    file: str
    opset: int
    state_pairs: dict[str, str]
    runtime: str
    spikes: SpikeCheck
    max_abs_state_error: float  # against the float64 reference (forced at the flips)
    states_within_tolerance: bool  # every membrane within twice its rounding bound
    state_bound_ratio: float | None = None  # the largest |error| / (2 * its bound)

    def to_dict(self) -> dict[str, Any]:
        d = {"file": self.file, "opset": self.opset, "state_pairs": self.state_pairs,
             "runtime": self.runtime, **self.spikes.to_dict(),
             "max_abs_state_error": self.max_abs_state_error,
             "states_within_tolerance": self.states_within_tolerance}
        if self.state_bound_ratio is not None:
            d["state_bound_ratio"] = self.state_bound_ratio
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> OnnxCheck:
        return cls(file=d["file"], opset=d["opset"], state_pairs=dict(d["state_pairs"]),
                   runtime=d["runtime"], spikes=SpikeCheck.from_dict(d),
                   max_abs_state_error=d["max_abs_state_error"],
                   states_within_tolerance=d["states_within_tolerance"],
                   state_bound_ratio=d.get("state_bound_ratio"))

    def _states(self) -> str:
        if self.state_bound_ratio is None:
            return f"states within {self.max_abs_state_error:.1e}"
        return (f"states within {self.max_abs_state_error:.1e} ("
                f"{'within' if self.states_within_tolerance else 'OUTSIDE'} rounding bounds, "
                f"{self.state_bound_ratio:.2g} of them)")

    def summary(self, samples: int) -> str:
        return f"ONNX  {self.file}: {self.spikes.same()}, {self._states()} ({self.runtime})"

    def rows(self) -> list[str]:
        return [f"| ONNX ({self.file}, opset {self.opset}) | {self.runtime} | "
                f"{_md(self.spikes)} | max state error {self.max_abs_state_error:.1e} |"]


LAYERS_NOTE = ("run layer by layer (too many synapses for one Lava run): each layer fed its "
               "inputs' spikes from the float64 reference")


@dataclass(frozen=True, slots=True, kw_only=True)
class LavaModeCheck:
    """One Lava mode: ``compare_with_reference``'s record, or the error that stopped it."""

    mode: str
    error: str | None = None
    comparison: dict[str, Any] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    layers_lava: tuple[dict[str, Any], ...] = ()
    rounding: RoundingVerdict | None = None  # floating_pt against the float64 torch model
    # "network": one Lava run of the whole network; "layers": each layer in its own run, fed
    # its sources' spikes from the float64 reference (a network too large for one run)
    method: str = "network"

    def to_dict(self) -> dict[str, Any]:
        if self.error is not None:
            return {"error": self.error}
        d = {**self.comparison, "warnings": list(self.warnings),
             "layers_lava": list(self.layers_lava), "method": self.method}
        if self.rounding is not None:
            d["rounding"] = self.rounding.to_dict()
        return d

    @classmethod
    def from_dict(cls, mode: str, d: Mapping[str, Any]) -> LavaModeCheck:
        if "error" in d:
            return cls(mode=mode, error=d["error"])
        rest = {k: v for k, v in d.items()
                if k not in ("warnings", "layers_lava", "rounding", "method")}
        return cls(mode=mode, comparison=rest, warnings=tuple(d["warnings"]),
                   layers_lava=tuple(d["layers_lava"]), method=d.get("method", "network"),
                   rounding=RoundingVerdict.from_dict(d["rounding"]) if "rounding" in d
                   else None)

    def row(self, accuracy_torch: float) -> str:
        if self.error is not None:
            return f"| Lava {self.mode} | Loihi 2 simulator | error | {self.error} |"
        e = self.comparison
        note = (f"accuracy {e['accuracy_lava']:.4f} (float model "
                f"{accuracy_torch:.4f})" if self.mode == "fixed_pt" else
                "after removing Lava's one-step delay per layer")
        if self.method == "layers":
            note += f"; {LAYERS_NOTE}"
        if e.get("warning"):
            note += f"; {e['warning']}"
        agree = "identical" if e["exact_match"] else f"{e['spike_agreement']:.4f}"
        if self.rounding is not None:
            agree = self.rounding.text()
        return f"| Lava {self.mode} | {lava_export.LavaExporter.runtime} | {agree} | {note} |"


@dataclass(frozen=True, slots=True, kw_only=True)
class LavaCheck:
    name: ClassVar[str] = "lava"
    available: bool
    how_to_enable: str | None = None
    samples: int = 0
    modes: tuple[LavaModeCheck, ...] = ()
    accuracy_torch: float = 0.0
    samples_note: str | None = None  # why Lava ran on fewer samples than the other checks

    def _summary(self) -> str:
        if not self.available:
            return f"Lava  {self.how_to_enable}"
        by = {m.mode: m for m in self.modes}
        fl = by["floating_pt"].comparison if "floating_pt" in by else {}
        fx = by["fixed_pt"].comparison if "fixed_pt" in by else {}
        parts = []
        rd = by["floating_pt"].rounding if "floating_pt" in by else None
        if rd is not None:
            parts.append(f"floating_pt spikes vs the pruned model: {rd.text()}")
        elif "spike_agreement" in fl:
            parts.append("floating_pt " + ("identical spikes" if fl["exact_match"]
                                           else f"spike agreement {fl['spike_agreement']:.4f}"))
        if "spike_agreement" in fx:
            parts.append(f"fixed_pt spike agreement {fx['spike_agreement']:.4f}, accuracy "
                         f"{fx['accuracy_lava']:.4f} vs float {self.accuracy_torch:.4f}")
        errors = [f"{m.mode}: {m.error}" for m in self.modes if m.error is not None]
        if errors:
            parts.append("; ".join(errors))
        if fl.get("reset_substituted"):
            parts.append("zero reset stands in for subtract reset (accuracy is the zero-reset "
                         "model's)")
        if any(m.method == "layers" for m in self.modes):
            parts.append(LAYERS_NOTE)
        if self.samples_note:
            parts.append(self.samples_note)
        return f"Lava  ({self.samples} samples, Loihi 2 simulator): " + "; ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        if not self.available:
            return {"available": False, "how_to_enable": self.how_to_enable,
                    "summary": self._summary()}
        d = {"available": True, "samples": self.samples,
             **{m.mode: m.to_dict() for m in self.modes},
             "accuracy_torch": self.accuracy_torch, "summary": self._summary()}
        if self.samples_note:
            d["samples_note"] = self.samples_note
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> LavaCheck:
        if not d["available"]:
            return cls(available=False, how_to_enable=d["how_to_enable"])
        return cls(available=True, samples=d["samples"], accuracy_torch=d["accuracy_torch"],
                   modes=tuple(LavaModeCheck.from_dict(m, d[m])
                               for m in lava_export.MODES if m in d),
                   samples_note=d.get("samples_note"))

    def summary(self, samples: int) -> str:
        return self._summary()

    def rows(self) -> list[str]:
        if not self.available:
            return [f"| Lava | not run | - | {self.how_to_enable} |"]
        return [m.row(self.accuracy_torch) for m in self.modes]


@dataclass(frozen=True, slots=True, kw_only=True)
class FileCheck:
    """The check of any other registered exporter: its file, its runtime and facts (its
    ``describe``, when it has one) and the spike comparison; ``name`` is the exporter's."""

    name: str
    file: str | None
    runtime: str
    facts: dict[str, Any] = field(default_factory=dict)
    spikes: SpikeCheck | None = None
    how_to_enable: str | None = None

    def to_dict(self) -> dict[str, Any]:
        if self.spikes is None:
            return {"available": False, "how_to_enable": self.how_to_enable}
        return {"file": self.file, **self.facts, "runtime": self.runtime,
                **self.spikes.to_dict()}

    @classmethod
    def from_dict(cls, name: str, d: Mapping[str, Any]) -> FileCheck:
        if d.get("available") is False:
            return cls(name=name, file=None, runtime="", how_to_enable=d["how_to_enable"])
        facts = {k: v for k, v in d.items()
                 if k not in ("file", "runtime", "exact", "layers", "rounding")}
        return cls(name=name, file=d["file"], runtime=d["runtime"], facts=facts,
                   spikes=SpikeCheck.from_dict(d))

    def summary(self, samples: int) -> str:
        if self.spikes is None:
            return f"{self.name}: not run: {self.how_to_enable}"
        return f"{self.name}  {self.file}: {self.spikes.same()} on {samples} samples"

    def rows(self) -> list[str]:
        if self.spikes is None:
            return [f"| {self.name} | not run | - | {self.how_to_enable} |"]
        return [f"| {self.name} ({self.file}) | {self.runtime} | {_md(self.spikes)} | |"]


Check = NirCheck | OnnxCheck | LavaCheck | FileCheck
# report section key -> its check type (from_dict); other keys are FileCheck's
CHECK_TYPES: dict[str, Any] = {"nir": NirCheck, "onnx": OnnxCheck, "lava": LavaCheck}
_SECTION_KEYS = ("verified_samples", "summary", "markdown")
_RUN_ORDER = ("nir", "onnx")  # exported and checked first; every other format reads model.nir


@dataclass(frozen=True, slots=True, kw_only=True)
class ExportSection:
    """The report's export section: one check per exporter, in the order they ran."""

    verified_samples: int
    checks: tuple[Check, ...]

    @property
    def summary(self) -> str:
        return "\n".join(c.summary(self.verified_samples) for c in self.checks)

    @property
    def markdown(self) -> str:
        lines = ["## Export and equivalence", "",
                 f"Checked on the first {self.verified_samples} evaluation samples.", "",
                 "| format | runtime | spikes vs pruned model | note |", "|---|---|---|---|"]
        for c in self.checks:
            lines.extend(c.rows())
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"verified_samples": self.verified_samples,
                **{c.name: c.to_dict() for c in self.checks},
                "summary": self.summary, "markdown": self.markdown}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ExportSection:
        # report.json sorts its keys; the run verifies NIR first, then ONNX, then the simulators
        keys = sorted((k for k in d if k not in _SECTION_KEYS),
                      key=lambda k: _RUN_ORDER.index(k) if k in _RUN_ORDER else len(_RUN_ORDER))
        checks = tuple(CHECK_TYPES[k].from_dict(d[k]) if k in CHECK_TYPES
                       else FileCheck.from_dict(k, d[k]) for k in keys)
        return cls(verified_samples=d["verified_samples"], checks=checks)


@dataclass(frozen=True, slots=True, kw_only=True)
class VerifyResult:
    """What verify_exports produced: the section, the output files by name (bytes) and the wall
    times for the report's ``timings_s`` (kept out of the section so it stays reproducible)."""

    section: ExportSection
    files: Mapping[str, bytes]
    timings_s: Mapping[str, float]


# --------------------------------------------------------------------------- the checks


@dataclass(slots=True)
class _Run:
    """One verification: the batch, the torch model's states and what the exporters wrote."""

    x: np.ndarray
    labels: np.ndarray
    ours: dict[str, np.ndarray]
    names: list[str]
    timesteps: int
    readout: str
    options: ExportOptions
    work: Path
    graph: Any  # the NIR graph as exported; replaced by the one read back from model.nir
    model: SpikingGraph  # the pruned torch model, for the float64 reference
    files: dict[str, bytes] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    nir_path: Path | None = None  # model.nir as written, once the NIR check has run
    # every neuron node's spikes from model.nir in float64 (the NIR check's run): Lava's
    # reference, and what a layer-by-layer Lava run feeds each layer
    reference64: dict[str, np.ndarray] | None = None
    # the floating_pt run of the first sample that lava_samples timed: not run again
    lava_probe: lava_export.LavaResult | None = None
    # the exports' spikes queued for the shared rounding classification, and its results
    requests: list[Request] = field(default_factory=list)
    results: list[ForcedReference] = field(default_factory=list)

    def request(self, out: Mapping[str, np.ndarray], precision: str, *,
                mems: bool = False) -> int:
        """Queue an export's spikes (and membranes) for the classification; its index."""
        self.requests.append(Request(
            exported={n: np.asarray(out[n]) for n in self.names}, precision=precision,
            mems={f"{n}.mem": np.asarray(out[f"{n}.mem"]) for n in self.names} if mems
            else None))
        return len(self.requests) - 1

    def timed(self, key: str, t0: float) -> None:
        self.timings[key] = round(self.timings.get(key, 0.0) + time.perf_counter() - t0, 3)

    def write(self, ex: Exporter, workdir: Path | None = None) -> Path:
        path = ex.export(self.graph, workdir or self.work, timesteps=self.timesteps)
        if ex.filename is not None:
            self.files[ex.filename] = path.read_bytes()
        return path


#: a check, completed once the shared rounding classification has run
Pending = Callable[[], Check]


def _check_nir(r: _Run) -> Pending:
    t0 = time.perf_counter()
    ex = get_exporter("nir")
    path = r.write(ex)
    r.nir_path = path
    r.graph = nir.read(str(path))  # the other formats start from the file as written
    sim = nir_sim.simulate(r.graph, r.x)  # what NirExporter.run does, without a second read
    sim64 = nir_sim.simulate(r.graph, r.x, dtype=np.float64)
    j64 = r.request(sim64, "float64")
    r.reference64 = {n: sim64[n].astype(np.uint8) for n in nir_sim.neuron_nodes(r.graph)}
    del sim64
    j32 = r.request(sim, "float32")
    spikes = compare_spikes(r.ours, sim, r.names)
    facts = nir_export.graph_facts(r.graph)
    del sim
    r.timed("export_nir", t0)

    def done() -> NirCheck:
        rounding = (r.results[j64].verdict, r.results[j32].verdict)
        return NirCheck(file=ex.filename or path.name, runtime=ex.runtime,
                        spikes=replace(spikes, rounding=rounding), **facts)
    return done


def _check_onnx(r: _Run) -> Pending:
    t0 = time.perf_counter()
    ex = get_exporter("onnx")
    path = r.write(ex)
    out = ex.run(path, r.x)
    j = r.request(out, "float32", mems=True)
    spikes = compare_spikes(r.ours, out, r.names)
    facts = ex.describe(path)
    del out
    r.timed("export_onnx", t0)

    def done() -> OnnxCheck:
        fr = r.results[j]
        assert fr.states is not None
        return OnnxCheck(file=ex.filename or path.name, runtime=ex.runtime,
                         spikes=replace(spikes, rounding=(fr.verdict,)),
                         max_abs_state_error=fr.states.max_abs_error,
                         states_within_tolerance=fr.states.within,
                         state_bound_ratio=round(fr.states.max_bound_ratio, 6), **facts)
    return done


def _accuracy(spikes: np.ndarray, labels: np.ndarray) -> float:
    counts = spikes.reshape(spikes.shape[0], spikes.shape[1], -1).sum(0)
    return float((counts.argmax(1) == labels).mean())


def _lava_mode(r: _Run, mode: str, path: Path) -> tuple[LavaModeCheck, int | None]:
    """The mode's check against the float64 reference, and the index of its queued rounding
    request (floating_pt)."""
    ref = r.reference64
    assert ref is not None, "the NIR check sets the float64 reference"
    ex = get_exporter("lava", mode=mode, timeout_s=r.options.lava_timeout)
    probe = r.lava_probe if mode == "floating_pt" else None
    try:
        if probe is None:
            res = ex.run(path, r.x, reference=ref)
        elif r.x.shape[1] == 1:
            res = probe
        else:  # the probe's sample is done: run the others and join them
            res = lava_export.join_samples(probe, ex.run(
                path, r.x[:, 1:], reference={k: v[:, 1:] for k, v in ref.items()}))
    except ExportError as e:
        warnings.warn(f"Lava {mode}: {e}", SlampWarning, stacklevel=3)
        return LavaModeCheck(mode=mode, error=str(e)), None
    assert isinstance(res, lava_export.LavaResult)
    cmp = lava_export.compare_with_reference(res.spikes, ref, r.labels, r.readout,
                                             order=res.order, stats=res.stats)
    # wall-clock times go to the report's timings_s, so every other number is reproducible
    r.timings[f"lava_{mode}"] = round(res.wall_s, 3)
    for w in res.warnings:
        warnings.warn(f"Lava {mode}: {w}", SlampWarning, stacklevel=3)
    # floating_pt computes in float64 (Lava's float models): its flips are classified against
    # the pruned model; fixed_pt quantises, so it reports agreement and accuracy instead
    j = (r.request(res.spikes, "float64")
         if mode == "floating_pt" and not cmp.get("reset_substituted")
         and all(n in res.spikes for n in r.names) else None)
    return LavaModeCheck(mode=mode, comparison=cmp, warnings=tuple(res.warnings),
                         layers_lava=tuple(res.stats.get("layers", [])),
                         method=res.method), j


def _check_lava(r: _Run) -> Pending:
    """Lava floating_pt and fixed_pt on the verification samples, or how to enable it."""
    ex = get_exporter("lava", timeout_s=r.options.lava_timeout)
    msg = ex.unavailable()
    if msg is not None:
        warnings.warn(msg, SlampWarning, stacklevel=3)
        unavailable = LavaCheck(available=False, how_to_enable=msg)
        return lambda: unavailable
    # Lava reads model.nir as written for the NIR check (its exchange files go beside it)
    assert r.nir_path is not None, "the NIR check runs first"
    path = r.nir_path
    assert r.reference64 is not None, "the NIR check sets the float64 reference"
    n, note = lava_samples(r, ex, path)
    if n < r.x.shape[1]:  # the same first n samples for Lava and for its references
        r = replace(r, x=r.x[:, :n], labels=r.labels[:n],
                    ours={k: v[:, :n] for k, v in r.ours.items()},
                    reference64={k: v[:, :n] for k, v in r.reference64.items()})
    torch_acc = _accuracy(r.ours[r.names[-1]], r.labels)
    runs = [_lava_mode(r, mode, path) for mode in lava_export.MODES]
    samples = int(r.x.shape[1])

    def done() -> LavaCheck:  # r.results is the shared list (replace() copies references)
        modes = tuple(m if j is None else replace(m, rounding=r.results[j].verdict)
                      for m, j in runs)
        return LavaCheck(available=True, samples=samples, modes=modes,
                         accuracy_torch=torch_acc, samples_note=note)
    return done


#: below this many neuron-steps over the verification batch Lava runs every sample unprobed
LAVA_PROBE_NEURON_STEPS = 4_000_000
#: the share of --lava-timeout the probed sample count aims at: the probe times floating_pt,
#: and fixed_pt took up to twice as long at VGG/ResNet-19 scale (make bench-scale-lava: 77 s
#: against 39 s on VGG-11, 363 s against 195 s on ResNet-19)
LAVA_TIMEOUT_SHARE = 0.45


def lava_samples(r: _Run, ex: Any, path: Path) -> tuple[int, str | None]:
    """How many verification samples Lava's CPU simulator can run within --lava-timeout.

    A large network is probed on one sample first; its wall time (start-up included, so an
    over-estimate of one more sample's cost) says how many fit in LAVA_TIMEOUT_SHARE of the
    timeout. Returns
    the count and the report's note saying so (None when every sample runs).
    """
    n = int(r.x.shape[1])
    neurons = sum(int(np.prod(r.ours[name].shape[2:])) for name in r.names)
    if n <= 1 or neurons * n * r.timesteps <= LAVA_PROBE_NEURON_STEPS:
        return n, None
    timeout = float(r.options.lava_timeout)
    try:
        assert r.reference64 is not None, "the NIR check sets the float64 reference"
        probe = ex.run(path, r.x[:, :1],
                       reference={k: v[:, :1] for k, v in r.reference64.items()})
        w = float(probe.wall_s)
        if isinstance(probe, lava_export.LavaResult) and probe.mode == "floating_pt":
            r.lava_probe = probe  # its sample is not run again (join_samples)
    except ExportError:
        return 1, (f"Lava ran on 1 of {n} verification samples: one sample did not finish "
                   f"within --lava-timeout {timeout:g} s")
    fit = max(1, min(n, int(LAVA_TIMEOUT_SHARE * timeout / max(w, 1e-9))))
    if fit == n:
        return n, None
    return fit, (f"Lava ran on the first {fit} of {n} verification samples: one sample took "
                 f"{w:.1f} s in its CPU simulator, and --lava-timeout is {timeout:g} s")


def _check_file(r: _Run, name: str) -> Pending:
    """Any other registered exporter: export, run, compare its spikes with the pruned model."""
    ex = get_exporter(name)
    msg = ex.unavailable()
    if msg is not None:
        warnings.warn(msg, SlampWarning, stacklevel=3)
        check = FileCheck(name=name, file=ex.filename, runtime=ex.runtime, how_to_enable=msg)
    else:
        path = r.write(ex, r.work / name)
        out = ex.run(path, r.x)
        j = r.request(out, "float32")  # rounding flips told from errors, as for model.nir
        spikes = compare_spikes(r.ours, out, r.names)
        facts = dict(ex.describe(path))
        del out

        def done() -> FileCheck:
            return FileCheck(name=name, file=ex.filename or path.name, runtime=ex.runtime,
                             facts=facts, spikes=replace(spikes, rounding=(r.results[j].verdict,)))
        return done
    return lambda: check


# exporter name -> how its output is verified when it needs more than _check_file's spike
# comparison; "nir" runs first, the others export the graph read back from its file
_CHECKS: dict[str, Callable[[_Run], Pending]] = {
    "nir": _check_nir, "onnx": _check_onnx, "lava": _check_lava}


def verify_exports(graph: SpikingGraph, batch: VerificationBatch, *, timesteps: int,
                   encoding: str, readout: str, exporters: tuple[str, ...] = ("nir", "onnx"),
                   options: ExportOptions = ExportOptions(),
                   workdir: Path | None = None) -> VerifyResult:
    """Export ``graph`` with each of ``exporters`` (in order; "nir" must be first) and check
    every export against the pruned model on ``batch``.

    ``workdir`` holds the exchange files (default: a temporary folder, removed afterwards).
    Raises ExportError for a graph an exporter cannot write, or an unknown exporter name.
    """
    if not exporters or exporters[0] != "nir":
        raise ExportError(f"exporters {exporters!r}: the NIR export must come first, the other "
                          "formats are made from its file")
    check_known(exporters)  # before any export work
    nir_graph = nir_export.to_nir(graph, timesteps=timesteps, encoding=encoding, readout=readout)
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        r = _Run(x=batch.x, labels=batch.labels, ours=torch_states(graph, batch.x),
                 names=[op.name for op in graph.neuron_ops], timesteps=timesteps,
                 readout=readout, options=options, work=Path(workdir or d), graph=nir_graph,
                 model=graph)
        r.timed("export_torch_states", t0)
        pending = [_CHECKS[name](r) if name in _CHECKS else _check_file(r, name)
                   for name in exporters]
        t0 = time.perf_counter()
        r.results.extend(classify(graph, batch.x, r.requests))  # one shared float64 run
        r.timed("export_reference", t0)
        checks = tuple(done() for done in pending)
    section = ExportSection(verified_samples=int(batch.x.shape[1]), checks=checks)
    return VerifyResult(section=section, files=dict(r.files), timings_s=dict(r.timings))
