"""The whole job, stage by stage: load, calibrate, score, prune, recover, retrain, check the fit,
measure, export, report.

Library code: it raises :class:`~slamp_deploy.errors.SlampError` subclasses and reports progress
through a callback; only the CLI prints. Each stage after retraining returns a frozen value
(:class:`Deployed` holds the report sections); :meth:`PipelineContext.build_report` puts them
into the typed :class:`~slamp_deploy.report.model.RunReport`, and
:mod:`slamp_deploy.pipeline.outputs` writes it.
"""

from __future__ import annotations

import math
import platform
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from slamp_deploy import __version__, distributed
from slamp_deploy.chips.family import family_of
from slamp_deploy.chips.profile import HardwareProfile
from slamp_deploy.chips.toml import load_profile
from slamp_deploy.config import DEFAULT_SPARSITY, PipelineConfig
from slamp_deploy.data import Dataset, Split, check_labels, encode, load_digits, load_npz, split
from slamp_deploy.errors import (
    DataError,
    InfeasibleTargetError,
    ModelError,
    SlampWarning,
    UsageError,
)
from slamp_deploy.fit.search import (
    caps_blocked,
    check_masks,
    chip_caps,
    fit_keep,
    place_neurons,
)
from slamp_deploy.fit.structured import relieved_rules, structure_would_fit
from slamp_deploy.measure.activity import dense_weights, measure
from slamp_deploy.model.forward_check import check_against_forward
from slamp_deploy.model.graph import SpikingGraph, trace
from slamp_deploy.model.loader import BUILTIN, LoadedModel, load_model
from slamp_deploy.model.runner import check_readout
from slamp_deploy.pipeline.inputs import check_paths
from slamp_deploy.pipeline.outputs import check_out_dir, out_lock, write_outputs
from slamp_deploy.pipeline.structure import StructureOutcome, structure_stage
from slamp_deploy.prune.allocate import allocate
from slamp_deploy.prune.calibrate import TemporalStats, calibrate
from slamp_deploy.prune.masks import Masks, alive_masks, apply_masks, masks_from_plan
from slamp_deploy.prune.methods import get_method
from slamp_deploy.prune.plan import PruningPlan
from slamp_deploy.prune.recover import match_currents
from slamp_deploy.prune.retrain import evaluate, retrain
from slamp_deploy.report.html import render_files
from slamp_deploy.report.model import (
    ActivityData,
    ActivitySection,
    CalibrationInfo,
    CurrentMatching,
    DataInfo,
    DistributedInfo,
    EnergySection,
    EnvironmentInfo,
    FitSection,
    LayerRow,
    ModelInfo,
    NirAssumption,
    RoundRecord,
    RunReport,
    SparsityInfo,
    activity_section,
    energy_section,
    target_profiles,
)
from slamp_deploy.verify import ExportOptions, ExportSection, verification_batch, verify_exports

#: progress(description, total) -> context manager yielding advance(n)
ProgressFactory = Callable[[str, int], AbstractContextManager[Callable[[int], None]]]


@contextmanager
def _no_progress(description: str, total: int) -> Iterator[Callable[[int], None]]:
    yield lambda n: None


@dataclass(frozen=True, slots=True, kw_only=True)
class PipelineResult:
    """What a run produced: the report (also written as JSON) and where the outputs are."""

    report: RunReport
    out_dir: Path
    graph: SpikingGraph
    masks: Masks = field(repr=False)


class _Timer:
    """Seconds per stage; a stage that runs out of memory fails with a message naming the
    option that sizes its batches, not an allocator traceback."""

    def __init__(self, batch_size: int = 0) -> None:
        self.stages: dict[str, float] = {}
        self.batch_size = batch_size

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        except (torch.OutOfMemoryError, MemoryError) as e:
            raise DataError(_out_of_memory(name, self.batch_size, e)) from e
        except RuntimeError as e:
            if "can't allocate memory" not in str(e) and "out of memory" not in str(e):
                raise
            raise DataError(_out_of_memory(name, self.batch_size, e)) from e
        finally:
            self.stages[name] = round(self.stages.get(name, 0.0) + time.perf_counter() - t0, 3)


def _out_of_memory(stage: str, batch_size: int, e: BaseException) -> str:
    first = (str(e).splitlines() or [type(e).__name__])[0][:160]
    return (f"stage {stage!r} ran out of memory at --batch-size {batch_size} ({first}); "
            f"lower --batch-size, or --calib-samples / --verify-samples for the calibration "
            f"and export stages")


def load_data(cfg: PipelineConfig) -> tuple[Dataset, Dataset | None]:
    """The data set ``--data`` names (default: scikit-learn digits) and the evaluation set.

    ``--data`` is an ``.npz`` file or a data set spec (``cifar10:PATH``, ``cifar100:PATH``,
    ``cifar10-dvs:PATH``; see docs/datasets.md). A data set with a fixed test split returns it
    as the evaluation set; ``--eval-data`` overrides it.
    """
    ev = load_npz(cfg.eval_data) if cfg.eval_data else None
    if cfg.data is None:
        return load_digits(), ev
    from slamp_deploy.datasets import load_data_spec

    # rate and latency encoders read pixel values as probabilities in [0, 1]: no mean/std
    ds, test = load_data_spec(cfg.data, frames=cfg.timesteps,
                              normalize=None if cfg.encoding == "direct" else False)
    return ds, ev if ev is not None else test


def resolve_timesteps(cfg: PipelineConfig, ds: Dataset) -> int:
    """``--timesteps``, the sequence length of sequence data, or 8."""
    if ds.sequence:
        T = int(ds.x.shape[0])
        if cfg.timesteps is not None and cfg.timesteps != T:
            raise UsageError(f"--timesteps {cfg.timesteps}: the data {ds.source} holds sequences "
                             f"of {T} steps; drop --timesteps or pass {T}")
        return T
    if cfg.timesteps is not None:
        return cfg.timesteps
    if cfg.model is None or cfg.model == BUILTIN:
        from slamp_deploy.examples.digits import TIMESTEPS

        return TIMESTEPS
    return 8


def run(cfg: PipelineConfig, *, progress: ProgressFactory | None = None) -> PipelineResult:
    """Run the whole pipeline and write its outputs into ``cfg.out`` (atomically)."""
    check_run(cfg)
    # only rank 0 writes, so only rank 0 locks --out against a second run
    lock = out_lock(cfg.out) if distributed.env_world()[0] == 0 else nullcontext()
    with lock:
        world = distributed.init(cfg.device, cfg.dist_timeout)
        try:
            return _run(cfg, world, progress)
        finally:
            distributed.shutdown(world)


def check_run(cfg: PipelineConfig) -> None:
    """Every check that needs no loading: the options, the input paths and ``--out``, before
    any work starts."""
    cfg.validate()
    check_out_dir(cfg.out)
    check_paths(cfg)


def prepare(cfg: PipelineConfig) -> tuple[LoadedModel, SpikingGraph, Split, int]:
    """Load the model and the data, trace, check labels and readout, and split the data.

    Shared by the pipeline, ``check``, ``energy`` and the benchmarks, so every command sees the
    same model, the same graph and the same samples for the same options.
    """
    loaded = load_model(cfg.model, cfg.weights, device=cfg.device, nir_dt=cfg.nir_dt)
    ds, ev = load_data(cfg)
    T = resolve_timesteps(cfg, ds)
    graph = trace(loaded.model, ds.sample_shape)
    check_readout(graph, cfg.readout)
    check_labels(ds, graph.n_outputs)
    if ev is not None:
        if ev.sample_shape != ds.sample_shape:
            raise DataError(f"--eval-data {cfg.eval_data}: per-sample shape {ev.sample_shape} "
                            f"differs from --data's {ds.sample_shape}")
        check_labels(ev, graph.n_outputs)
    parts = split(ds, eval_fraction=cfg.eval_fraction, calib_samples=cfg.calib_samples,
                  seed=cfg.seed, eval_ds=ev, split_seed=cfg.split_seed)
    check_traced(graph, parts.calib, T, cfg)
    return loaded, graph, parts, T


#: calibration samples the traced graph is compared on with the user's forward
FORWARD_CHECK_SAMPLES = 8


def check_traced(graph: SpikingGraph, calib: Dataset, timesteps: int, cfg: PipelineConfig) -> None:
    """The traced graph must give exactly what the user's forward gives on a calibration batch
    (before any pruning), so a forward the tracer misread is refused, not pruned."""
    n = min(FORWARD_CHECK_SAMPLES, len(calib))
    xb = calib.x[:, :n] if calib.sequence else calib.x[:n]
    device = next(graph.model.parameters()).device
    gen = torch.Generator().manual_seed(cfg.seed)
    x_seq = encode(xb.to(device), timesteps, cfg.encoding, sequence=calib.sequence,
                   generator=gen)
    check_against_forward(graph, x_seq)


def _run(cfg: PipelineConfig, world: distributed.World,
         progress: ProgressFactory | None) -> PipelineResult:
    if cfg.epochs > 0:
        distributed.check_batch(cfg.batch_size, world)
    prog: ProgressFactory = progress or _no_progress
    timer = _Timer(cfg.batch_size)
    torch.manual_seed(cfg.seed)
    t_start = time.perf_counter()

    deployed = Deployed()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SlampWarning)
        with timer.stage("load"):  # loading warns too (e.g. a model file that prints)
            profile = load_profile(cfg.target)
            loaded, graph, parts, T = prepare(cfg)
        ctx = PipelineContext(cfg=cfg, loaded=loaded, graph=graph, parts=parts, timesteps=T,
                              timer=timer, progress=prog, profile=profile, world=world)
        ctx.prune_and_recover()
        if world.is_main:  # fit check, reports and export are cheap and write files: rank 0
            deployed = ctx.deploy()
    messages = [*loaded.warnings,  # the NIR reader's, issued before this block
                *(str(w.message) for w in caught if issubclass(w.category, SlampWarning))]
    for w in caught:  # hand everything back to the caller's warning filters
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    timer.stages["total"] = round(time.perf_counter() - t_start, 3)
    report = ctx.build_report(deployed, messages)
    out = Path(cfg.out).resolve()
    if world.is_main:  # only rank 0 writes
        ctx.extra_files.update(render_files(report))  # from the final report
        out = write_outputs(out, report, ctx.graph, ctx.extra_files)
    return PipelineResult(report=report, out_dir=out, graph=ctx.graph, masks=ctx.masks)


@dataclass(frozen=True, slots=True, kw_only=True)
class Deployed:
    """What the stages after retraining found (rank 0 only; empty on the other ranks)."""

    fit: FitSection | None = None
    activity: ActivitySection | None = None
    energy: EnergySection | None = None
    export: ExportSection | None = None


@dataclass
class PipelineContext:
    """State shared by the stages of one run (mutable while the run is in progress)."""

    cfg: PipelineConfig
    loaded: LoadedModel
    graph: SpikingGraph
    parts: Split
    timesteps: int
    timer: _Timer
    progress: ProgressFactory
    profile: HardwareProfile | None = None
    world: distributed.World = field(default_factory=distributed.World)
    mask_digests: list[str] = field(default_factory=list)
    fit_sparsity: float | None = None  # smallest sparsity that fits (with --fit)
    accuracy: dict[str, float] = field(default_factory=dict)
    masks: Masks = field(default_factory=dict)
    allocation: PruningPlan | None = None
    stats: TemporalStats | None = None
    lambdas: dict[str, float] = field(default_factory=dict)
    rounds: list[RoundRecord] = field(default_factory=list)
    matching: dict[str, list[float]] = field(default_factory=dict)
    loss_history: list[float] = field(default_factory=list)
    extra_files: dict[str, bytes] = field(default_factory=dict)  # more outputs, by file name
    dense_weights: dict[str, torch.Tensor] = field(default_factory=dict)
    full_graph: SpikingGraph | None = None  # --structure: the full-size model
    structure: StructureOutcome | None = None

    @property
    def sparsity(self) -> float:
        """The final target: --sparsity, the fit search's result, or the default."""
        if self.fit_sparsity is not None:
            return max(self.fit_sparsity, self.cfg.sparsity or 0.0)
        return DEFAULT_SPARSITY if self.cfg.sparsity is None else self.cfg.sparsity

    def _eval(self, key: str) -> float:
        c = self.cfg
        with self.timer.stage("evaluate"):
            acc = evaluate(self.graph, self.parts.eval, timesteps=self.timesteps,
                           encoding=c.encoding, readout=c.readout, seed=c.seed)
        self.accuracy[key] = acc
        return acc

    def _calibrate(self) -> TemporalStats:
        c = self.cfg
        n_batches = math.ceil(len(self.parts.calib) / 128)
        with self.timer.stage("calibrate"), self.progress("calibrate", n_batches) as adv:
            return calibrate(self.graph, self.parts.calib, timesteps=self.timesteps,
                             encoding=c.encoding, readout=c.readout,
                             timestep_weights=c.timestep_weights, seed=c.seed, progress=adv)

    def prune_and_recover(self) -> None:
        """Dense accuracy, the structure step (--structure), then each round: calibrate,
        allocate, prune, match, retrain."""
        self._eval("dense")
        if self.cfg.structure is not None:
            self._structure()
        c, g = self.cfg, self.graph
        self.dense_weights = {la.name: la.weight.detach().clone() for la in g.layers}
        rounds = c.rounds if c.schedule == "iterative" else 1
        for r in range(1, rounds + 1):
            self.stats = self._calibrate()
            with self.timer.stage("score_allocate"):
                self.lambdas = self._lambdas()
                alive = alive_masks(g)
                if c.fit and r == 1:
                    self._fit_search(alive)
                target = 1.0 - (1.0 - self.sparsity) ** (r / rounds)
                if r == rounds:
                    target = self.sparsity
                before = {la.name: la.weight.detach().clone() for la in g.layers}
                blocked = (caps_blocked(g, alive, self.profile)
                           if self.profile is not None and r == 1 else None)
                if blocked is not None:
                    assert self.profile is not None
                    warnings.warn(f"{self.profile.name}'s caps (fan-in, synapses per core) are "
                                  f"not applied to the allocation: {blocked}",
                                  SlampWarning, stacklevel=2)
                caps = chip_caps(g, alive, self.profile) if self.profile is not None else None
                self.allocation = allocate(
                    c.method, {la.name: la.weight for la in g.layers}, alive, target,
                    lambdas=self.lambdas, order=[la.name for la in g.layers], caps=caps)
                self.masks = masks_from_plan(g, self.allocation, alive)
                apply_masks(g, self.masks)
                self.mask_digests = distributed.check_same_masks(self.masks)
            rec: dict[str, Any] = {"round": r, "target_sparsity": round(target, 6),
                                   "accuracy_pruned": self._eval("pruned")}
            if c.current_matching:
                with self.timer.stage("current_matching"), \
                        self.progress("current matching", len(g.layers)) as adv:
                    self.matching = match_currents(
                        g, before, self.masks, self.parts.calib, timesteps=self.timesteps,
                        encoding=c.encoding, seed=c.seed, progress=adv)
                rec["accuracy_current_matched"] = self._eval("current_matched")
            if c.epochs > 0:
                n_batches = math.ceil(len(self.parts.train) / c.batch_size) * c.epochs
                with self.timer.stage("retrain"), \
                        self.progress(f"retrain (round {r}/{rounds})" if rounds > 1
                                      else "retrain", n_batches) as adv:
                    hist = retrain(g, self.masks, self.parts.train, epochs=c.epochs,
                                   timesteps=self.timesteps, encoding=c.encoding,
                                   readout=c.readout, lr=c.lr, batch_size=c.batch_size,
                                   seed=c.seed + r, progress=adv)
                self.loss_history.extend(hist)
                rec["accuracy_retrained"] = self._eval("retrained")
            self.rounds.append(RoundRecord(**rec))
        if c.epochs == 0:
            self.accuracy.setdefault("retrained", self.accuracy.get(
                "current_matched", self.accuracy["pruned"]))

    def _structure(self) -> None:
        """--structure: remove whole neurons and channels, then go on with the compact model
        (the full-size one is kept for the dense activity measurement)."""
        self.stats = self._calibrate()
        with self.timer.stage("structure"):
            self.lambdas = self._lambdas()
            out = structure_stage(self.cfg, self.graph, self.lambdas, self.profile,
                                  self.loaded.spec)
        check_traced(out.graph, self.parts.calib, self.timesteps, self.cfg)
        self.full_graph, self.graph, self.structure = self.graph, out.graph, out
        self.extra_files.update(out.files)
        self._eval("structured")

    def _lambdas(self) -> dict[str, float]:
        c = self.cfg
        if not get_method(c.method).uses_lambdas:
            return {la.name: 1.0 for la in self.graph.layers}
        if c.lambda_variant == "measured":
            from slamp_deploy.prune.temporal import measured_lambdas

            return measured_lambdas(self.graph, self.parts.calib, timesteps=self.timesteps,
                                    encoding=c.encoding, seed=c.seed)
        assert self.stats is not None
        return self.stats.lambdas(c.lambda_variant)

    def _fit_search(self, alive: Masks) -> None:
        """--fit: the smallest sparsity at which the model fits the target."""
        c = self.cfg
        assert self.profile is not None
        with self.timer.stage("fit_search"):
            try:
                keep, _, _ = fit_keep(self.graph, c.method, self.lambdas, alive, self.profile,
                                      c.chips, c.cores)
            except InfeasibleTargetError as e:
                if c.structure is None and structure_would_fit(
                        self.graph, c.method, self.lambdas, self.profile, c.chips, c.cores):
                    raise InfeasibleTargetError(f"{e}; removing whole neurons and channels "
                                                f"relieves it: add --structure neurons") from e
                raise
        needed = 1.0 - keep / self.graph.n_weights
        if c.sparsity is not None and c.sparsity < needed - 1e-12:
            raise UsageError(f"--fit with --sparsity {c.sparsity}: the model needs at least "
                             f"{needed:.4f} sparsity to fit {self.profile.name}; raise --sparsity "
                             f"or drop it to let --fit choose")
        self.fit_sparsity = needed

    def deploy(self) -> Deployed:
        """After retraining: check the fit, measure activity and energy, export NIR and prove
        the export behaves the same."""
        if self.profile is not None:  # hidden neurons where the chip reads them (Xylo)
            place_neurons(self.graph, self.masks, self.profile)
        fit = self._check_fit()

        with self.timer.stage("activity_energy"):
            activity = self._measure_activity()
            energy = energy_section(activity.dense, activity.pruned,
                                    target_profiles(self.profile),
                                    chips_used=None if fit is None else fit.report.chips_used,
                                    layer_cores=None if fit is None else {
                                        lf.name: lf.cores for lf in fit.report.layers
                                        if lf.cores})
        with self.timer.stage("export"):
            export = self._verify_exports()
        return Deployed(fit=fit, activity=activity, energy=energy, export=export)

    def _verify_exports(self) -> ExportSection:
        """Export NIR and ONNX (and run the chip family's simulators, e.g. Lava for Loihi) on the
        first evaluation samples, and compare each with the pruned model."""
        c = self.cfg
        simulators = family_of(self.profile).simulators if self.profile and c.lava else ()
        forms = () if c.nir_for is None else (f"nir-{c.nir_for}",)  # model.<reader>.nir
        batch = verification_batch(self.parts.eval, timesteps=self.timesteps,
                                   encoding=c.encoding, seed=c.seed, n=c.verify_samples)
        res = verify_exports(self.graph, batch, timesteps=self.timesteps, encoding=c.encoding,
                             readout=c.readout, exporters=("nir", "onnx", *forms, *simulators),
                             options=ExportOptions(lava_timeout=c.lava_timeout))
        self.extra_files.update(res.files)
        self.timer.stages.update(res.timings_s)
        return res.section

    def _check_fit(self) -> FitSection | None:
        """The final masks against the target (None: no profile, or a join it cannot place)."""
        c = self.cfg
        if self.profile is None:
            return None
        try:
            with self.timer.stage("fit_check"):
                rep = check_masks(self.graph, self.masks, self.profile, c.chips, c.cores)
        except ModelError as e:
            if self.graph.is_chain:
                raise
            # a residual join this target's mapper cannot place: say so, keep the rest
            warnings.warn(f"fit check skipped: {e}", SlampWarning, stacklevel=3)
            return None
        search = None if self.fit_sparsity is None else _r(self.fit_sparsity)
        relieved = () if self.structure is None else relieved_rules(self.structure.blockers, rep)
        return FitSection(report=rep, fit_search_sparsity=search, structure_relieved=relieved)

    def _measure_activity(self) -> ActivitySection:
        """Activity on the evaluation data, with the pruned weights and with the dense ones put
        back for the duration of the measurement (the masks are permanent by now)."""
        c, g, ev = self.cfg, self.graph, self.parts.eval
        kw: dict[str, Any] = {"timesteps": self.timesteps, "encoding": c.encoding, "seed": c.seed}
        n_batches = -(-len(ev) // 256)
        with self.progress("activity (pruned, dense)", 2 * n_batches) as adv:
            pruned = measure(g, ev, label="pruned", progress=adv, **kw)
            dense = pruned
            if self.full_graph is not None:  # the full-size model, before the structure step
                dense = measure(self.full_graph, ev, label="dense", progress=adv, **kw)
            elif self.dense_weights:
                before = {la.name: la.weight.detach().clone() for la in g.layers}
                with dense_weights(g, self.dense_weights):
                    dense = measure(g, ev, label="dense", progress=adv, **kw)
                for la in g.layers:  # the context manager restores; this proves it
                    assert torch.equal(la.weight.detach(), before[la.name]), la.name
        data = ActivityData(part="evaluation", source=ev.source, samples=pruned.samples,
                            timesteps=self.timesteps,
                            encoding="sequence" if ev.sequence else c.encoding)
        return activity_section(dense, pruned, data)

    def layer_rows(self) -> tuple[LayerRow, ...]:
        """Per-layer facts for the report."""
        assert self.stats is not None and self.allocation is not None
        rows = []
        for la in self.graph.layers:
            kept = int(self.masks[la.name].sum())
            neuron = la.neuron
            factors = self.matching.get(la.name)
            rows.append(LayerRow(
                name=la.name, kind=la.kind, weight_shape=tuple(la.weight.shape),
                weights_total=la.n_weights, weights_kept=kept,
                sparsity=_r(1.0 - kept / la.n_weights),
                layer_score=_r(self.allocation.layer_score[la.name]),
                binding=self.allocation.binding[la.name],
                activity_rms_per_step=tuple(_r(v) for v in self.stats.activity_rms[la.name]),
                neuron=None if neuron is None else neuron.name,
                firing_rate_per_step=(None if neuron is None else tuple(
                    _r(v) for v in self.stats.firing_rate[neuron.name])),
                current_matching_factors=(None if factors is None else CurrentMatching(
                    min=_r(min(factors)), max=_r(max(factors)),
                    mean=_r(float(np.mean(factors)))))))
        return tuple(rows)

    def build_report(self, deployed: Deployed | None = None,
                     run_warnings: Sequence[str] = ()) -> RunReport:
        """The typed report of the run so far (``deployed``: the stages after retraining)."""
        c, g = self.cfg, self.graph
        d = deployed or Deployed()
        kept = sum(int(m.sum()) for m in self.masks.values())
        total = g.n_weights
        st = self.stats
        return RunReport(
            slamp_deploy_version=__version__, target=c.target, method=c.method, seed=c.seed,
            timesteps=self.timesteps,
            encoding=c.encoding if not self.parts.train.sequence else "sequence",
            readout=c.readout, config=_config_dict(c),
            model=ModelInfo(spec=self.loaded.spec, weights=self.loaded.weights,
                            ops=tuple(g.describe()),
                            nir_assumptions=tuple(
                                NirAssumption(name=a.name, value=a.value, source=a.source,
                                              note=a.note)
                                for a in self.loaded.nir_assumptions) or None),
            data=DataInfo.from_dict(self.parts.describe()),
            sparsity=SparsityInfo(target=_r(self.sparsity), achieved=_r(1.0 - kept / total),
                                  weights_total=total, weights_kept=kept),
            accuracy={k: _r(v) for k, v in self.accuracy.items()},
            rounds=tuple(self.rounds),
            retrain_loss_per_epoch=tuple(_r(v) for v in self.loss_history),
            calibration=CalibrationInfo(
                samples=st.samples if st else 0,
                timestep_weights=tuple(_r(v) for v in st.timestep_weights) if st else (),
                timestep_weights_source=st.timestep_weights_source if st else None,
                lambda_variant=c.lambda_variant),
            layers=self.layer_rows(),
            distributed=DistributedInfo(world_size=self.world.size, backend=self.world.backend,
                                        mask_digest_per_rank=tuple(self.mask_digests)),
            warnings=tuple(run_warnings),
            timings_s=dict(self.timer.stages),
            environment=EnvironmentInfo(python=platform.python_version(),
                                        torch=torch.__version__, device=c.device,
                                        threads=torch.get_num_threads()),
            fit=d.fit, activity=d.activity, energy=d.energy, export=d.export,
            structure=None if self.structure is None else self.structure.section)


def _config_dict(c: PipelineConfig) -> dict[str, Any]:
    """Every option as given; ``structure`` and ``nir_for`` only when given (runs without them
    report what they did before the options existed)."""
    d = asdict(c)
    for opt in ("structure", "nir_for"):
        if d[opt] is None:
            del d[opt]
    return d


def _r(v: float) -> float:
    """Round for reports only (counts stay exact; six significant decimals are plenty)."""
    return float(round(float(v), 6))


__all__ = ["Deployed", "PipelineContext", "PipelineResult", "check_run", "run"]
