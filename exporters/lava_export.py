"""Run an exported NIR graph on Lava (Loihi 2 simulator) from the main environment.

lava-nc 0.10.0 needs Python 3.10 and numpy<2, so it lives in its own interpreter (``make
lava-env`` -> ``.venv-lava``) and this module talks to ``exporters/lava_runner.py`` running
there through files; nothing here imports Lava.

Interpreter lookup (``find_lava_python``), first hit wins:
  1. ``$SLAMP_LAVA_PYTHON`` (a path to the interpreter; if set but not executable, lookup
     fails rather than silently using another interpreter);
  2. ``<repo>/.venv-lava/bin/python``, where <repo> is the folder above this package's
     ``exporters/`` directory (the checkout for an editable install);
  3. ``./.venv-lava/bin/python`` relative to the current directory.

Files in ``workdir`` (``run_lava``): ``lava_in.npz`` (``x`` float32 [T, N, *input_shape]),
``lava_out_<mode>.npz`` (``spikes:<node>`` uint8 [T, N, *shape], aligned to model steps;
``order``: neuron node names in layer order) and ``lava_out_<mode>.json`` (per-layer Lava
process, delay, du/dv/vth, fixed-point quantization stats, warnings, timings, versions; see
lava_runner's docstring).

Agreement: floating_pt spikes equal ``reference_spikes`` (nir_sim in float64, Lava's precision)
exactly; against a torch float32 run a spike can flip where a membrane lies within float32
rounding of the threshold. Loihi resets to zero only: models with subtract (or no) reset run
with zero reset in Lava and ``compare_with_reference`` flags it.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from slamp_deploy.errors import ExportError

from . import lava_stages, nir_sim, register_exporter
from ._atomic import write_atomically

__all__ = [
    "ENV_VAR",
    "LavaExporter",
    "LavaResult",
    "compare_with_reference",
    "find_lava_python",
    "reference_spikes",
    "run_lava",
]

ENV_VAR = "SLAMP_LAVA_PYTHON"
MODES = ("floating_pt", "fixed_pt")
RUNNER = Path(__file__).resolve().with_name("lava_runner.py")
NOT_FOUND = "Lava interpreter not found: run `make lava-env` or set SLAMP_LAVA_PYTHON"
HOW_TO_ENABLE = ("Lava check skipped: the Lava interpreter was not found; run `make lava-env` "
                 "or set SLAMP_LAVA_PYTHON to a Python 3.10 with lava-nc 0.10.0")
# fixed_pt findings worth a warning (fractions of a layer's nonzero weights)
MAX_CLIPPED_FRACTION = 0.01
MAX_ZEROED_FRACTION = 0.05


def _is_exe(p: Path) -> bool:
    return p.is_file() and os.access(p, os.X_OK)


def find_lava_python() -> Path | None:
    """The Lava interpreter: $SLAMP_LAVA_PYTHON, <repo>/.venv-lava, ./.venv-lava; else None."""
    env = os.environ.get(ENV_VAR)
    if env:
        p = Path(env).expanduser()
        return p if _is_exe(p) else None
    for base in (Path(__file__).resolve().parent.parent, Path.cwd()):
        p = base / ".venv-lava" / "bin" / "python"
        if _is_exe(p):
            return p
    return None


@dataclass(frozen=True, slots=True, kw_only=True)
class LavaResult(Mapping[str, np.ndarray]):
    """One Lava run: spikes per neuron node [T, N, *shape] (uint8, per-layer delay removed);
    the result reads as that mapping (what an Exporter's run returns)."""

    mode: str
    spikes: dict[str, np.ndarray]
    order: tuple[str, ...]
    stats: dict[str, Any]
    n_samples: int
    timesteps: int
    wall_s: float
    python: Path
    warnings: tuple[str, ...] = field(default=())

    def __getitem__(self, key: str) -> np.ndarray:
        return self.spikes[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.spikes)

    def __len__(self) -> int:
        return len(self.spikes)

    @property
    def layers(self) -> tuple[lava_stages.LayerStats, ...]:
        """The per-layer record of the stats file, typed."""
        return tuple(lava_stages.LayerStats.from_json(d) for d in self.stats.get("layers", []))

    @property
    def method(self) -> str:
        """"network" (one Lava run) or "layers" (each layer fed the reference's spikes)."""
        return str(self.stats.get("method", "network"))

    @property
    def reset_substituted(self) -> bool:
        """True when some layer's subtract/none reset ran as Loihi's zero reset."""
        return any(layer.reset_substituted for layer in self.layers)


def _save_npz(path: str, **arrays: np.ndarray) -> None:
    with open(path, "wb") as f:  # a file object: np.savez would append ".npz" to the name
        np.savez(f, **arrays)


def _tail(text: str, lines: int = 6) -> str:
    kept = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return " | ".join(kept[-lines:]) if kept else "(no output)"


def _quant_warnings(stats: dict) -> list[str]:
    out = []
    for layer in (lava_stages.LayerStats.from_json(d) for d in stats.get("layers", [])):
        q = layer.quant
        if q is None:
            continue
        name = layer.name
        for part, s in (("weights", q.weights), ("bias", q.bias)):
            if not s:
                continue
            if s["clipped_fraction"] > MAX_CLIPPED_FRACTION:
                out.append(
                    f"layer {name!r}: {s['clipped_fraction']:.1%} of {s['n_nonzero']} {part} "
                    f"clip in Loihi's 8-bit format (limit {MAX_CLIPPED_FRACTION:.0%}); "
                    f"max |w| {s['max_abs_weight']:.4g}, rms error {s['rel_rms_error']:.2%}"
                )
            if s["zeroed_fraction"] > MAX_ZEROED_FRACTION:
                out.append(
                    f"layer {name!r}: {s['zeroed_fraction']:.1%} of {s['n_nonzero']} nonzero "
                    f"{part} round to 0 in 8 bits (limit {MAX_ZEROED_FRACTION:.0%}): the "
                    "weight range is too wide for one exponent"
                )
        if q.neuron.get("threshold_clipped"):
            out.append(f"layer {name!r}: threshold exceeds Loihi's 17-bit vth and was clipped")
        if q.a_in_overflow_observed:
            out.append(
                f"layer {name!r}: synaptic input reached {q.a_in_max_abs_observed:.0f} in "
                "this run, beyond Loihi's 16-bit a_in (the chip would saturate it)"
            )
    return out


#: stored synapses one Lava run may hold (all samples' block-diagonal copies): about 1.2 GB of
#: CSR matrix in the runner, and again in each Sparse process. Above it, with reference spikes
#: given, the runner goes layer by layer.
MAX_NNZ = 100_000_000


def run_lava(
    nir_path: str | Path, x: np.ndarray, mode: str = "floating_pt",
    workdir: str | Path | None = None, timeout_s: float = 600.0, clip_percentile: float = 100.0,
    python: str | Path | None = None, reference: Mapping[str, np.ndarray] | None = None,
    max_nnz: int = MAX_NNZ,
) -> LavaResult:
    """Run the NIR file on Lava for ``T = x.shape[0]`` steps on ``x`` [T, N, *input_shape].

    All N samples run in one Lava run (block-diagonal copies) while the network's stored
    synapses times N are at most ``max_nnz``. A larger network runs layer by layer when
    ``reference`` (spikes [T, N, *shape] of every neuron node, e.g. :func:`reference_spikes`)
    is given: each layer is fed its sources' reference spikes (``LavaResult.method`` says
    which). ``workdir`` holds the exchange files (default: the NIR file's folder). Raises
    ExportError when the interpreter is missing, the graph cannot run on Lava (the runner's
    message names the node), the run fails (with the tail of its stderr) or it exceeds
    ``timeout_s``.
    """
    if mode not in MODES:
        raise ExportError(f"Lava mode {mode!r} is unknown; use one of {', '.join(MODES)}")
    py = Path(python) if python is not None else find_lava_python()
    if py is None or not _is_exe(py):
        env = os.environ.get(ENV_VAR)
        hint = f" ({ENV_VAR}={env} is not an executable)" if env and python is None else ""
        raise ExportError(NOT_FOUND + hint)
    nir_path = Path(nir_path)
    if not nir_path.is_file():
        raise ExportError(f"NIR file {nir_path} does not exist: export the model first")
    x = np.asarray(x, dtype=np.float32)
    if x.ndim < 3:
        raise ExportError(f"Lava input has shape {x.shape}; expected [T, N, *input_shape]")
    work = (Path(workdir) if workdir is not None else nir_path.parent).resolve()
    work.mkdir(parents=True, exist_ok=True)
    in_path = work / "lava_in.npz"
    out_path = work / f"lava_out_{mode}.npz"
    stats_path = work / f"lava_out_{mode}.json"
    write_atomically(in_path, lambda tmp: _save_npz(tmp, x=x))
    for stale in (out_path, stats_path):
        stale.unlink(missing_ok=True)
    cmd = [
        str(py), str(RUNNER), "--nir", str(nir_path.resolve()), "--input", str(in_path),
        "--output", str(out_path), "--stats", str(stats_path), "--mode", mode,
        "--clip-percentile", repr(float(clip_percentile)), "--max-nnz", str(int(max_nnz)),
    ]
    if reference is not None:
        ref_path = work / "lava_reference.npz"
        ref = {f"spikes:{k}": np.asarray(v, dtype=np.uint8) for k, v in reference.items()}
        write_atomically(ref_path, lambda tmp: _save_npz(tmp, **ref))
        cmd += ["--reference", str(ref_path)]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["PYTHONNOUSERSITE"] = "1"
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout_s, env=env, check=False,
            cwd=str(work),
        )
    except subprocess.TimeoutExpired as exc:
        raise ExportError(
            f"Lava run ({mode}, {x.shape[1]} samples x {x.shape[0]} steps) exceeded "
            f"{timeout_s:.0f} s: use fewer Lava samples or a longer timeout"
        ) from exc
    except OSError as exc:
        raise ExportError(f"cannot start the Lava interpreter {py}: {exc}") from exc
    wall = time.perf_counter() - t0
    if proc.returncode != 0 or not out_path.is_file():
        raise ExportError(
            f"Lava run ({mode}) failed with exit code {proc.returncode}: {_tail(proc.stderr)}"
        )
    stats = json.loads(stats_path.read_text())
    with np.load(out_path) as f:
        order = tuple(str(n) for n in f["order"])
        spikes = {n: f[f"spikes:{n}"] for n in order}
    warns = list(stats.get("warnings", [])) + _quant_warnings(stats)
    return LavaResult(
        mode=mode, spikes=spikes, order=order, stats=stats, n_samples=int(x.shape[1]),
        timesteps=int(x.shape[0]), wall_s=wall, python=py, warnings=tuple(warns),
    )


def join_samples(first: LavaResult, rest: LavaResult) -> LavaResult:
    """Two runs of the same network and mode on consecutive samples, as one run of all of them.

    Exact: the samples of a Lava run are independent copies (block-diagonal, or one layer at a
    time), so a probe run's sample need not be run again. The record (stats) is the second
    run's, with the method "layers" if either went layer by layer and the wall times added.
    """
    a = (first.mode, first.order, first.timesteps)
    b = (rest.mode, rest.order, rest.timesteps)
    if a != b:
        raise ExportError(f"Lava runs of different (mode, layers, steps) cannot be joined: "
                          f"{a} and {b}; join only runs of one export and mode")
    stats = dict(rest.stats)
    if "layers" in (first.method, rest.method):
        stats["method"] = "layers"
    stats["runs"] = int(first.stats.get("runs", 1)) + int(rest.stats.get("runs", 1))
    return LavaResult(
        mode=rest.mode, order=rest.order, stats=stats, timesteps=rest.timesteps,
        spikes={k: np.concatenate([first.spikes[k], rest.spikes[k]], axis=1)
                for k in rest.order},
        n_samples=first.n_samples + rest.n_samples, wall_s=first.wall_s + rest.wall_s,
        python=rest.python, warnings=tuple(dict.fromkeys(first.warnings + rest.warnings)))


def reference_spikes(graph: Any, x: np.ndarray) -> dict[str, np.ndarray]:
    """Spikes of every neuron node from nir_sim in float64 (Lava floating_pt's precision)."""
    if isinstance(graph, (str, Path)):
        import nir

        graph = nir.read(str(graph))
    out = nir_sim.simulate(graph, x, dtype=np.float64)
    return {n: out[n].astype(np.uint8) for n in nir_sim.neuron_nodes(graph)}


def _accuracy(spikes: np.ndarray, labels: np.ndarray) -> float:
    counts = spikes.reshape(spikes.shape[0], spikes.shape[1], -1).sum(axis=0)
    return float((counts.argmax(axis=1) == labels).mean())


def compare_with_reference(
    lava_spikes: dict[str, np.ndarray], reference_spikes: dict[str, np.ndarray],
    labels: np.ndarray | None = None, readout: str = "spikes", *,
    order: tuple[str, ...] | list[str] | None = None, stats: dict | None = None,
) -> dict[str, Any]:
    """Spike agreement per layer, exact-match flag and spike-count accuracy.

    Layers are those present in both dicts (``order`` gives their order; default the Lava
    dict's order); the last is the readout layer. Accuracy is argmax of spike counts over T
    (ties go to the lowest class); with ``readout="membrane"`` Lava has no membrane to read,
    so both accuracies use spike counts and ``readout_substituted`` is set. ``stats`` (the
    LavaResult's) lets the result flag Loihi's zero reset standing in for subtract reset.
    """
    names = [n for n in (order or list(lava_spikes)) if n in reference_spikes]
    if not names:
        raise ExportError(
            "no neuron layer is common to the Lava and reference spikes: "
            f"Lava has {sorted(lava_spikes)}, reference has {sorted(reference_spikes)}"
        )
    layers: dict[str, dict[str, Any]] = {}
    same = total = 0
    for n in names:
        a = np.asarray(lava_spikes[n]) != 0
        b = np.asarray(reference_spikes[n]) != 0
        if a.shape != b.shape:
            raise ExportError(
                f"layer {n!r}: Lava spikes have shape {a.shape}, reference {b.shape}; "
                "compare the same samples and time steps"
            )
        eq = int((a == b).sum())
        layers[n] = {
            "agreement": eq / a.size, "mismatches": int(a.size - eq), "total": int(a.size),
            "lava_rate": float(a.mean()), "reference_rate": float(b.mean()),
        }
        same += eq
        total += a.size
    result: dict[str, Any] = {
        "layers": layers,
        "spike_agreement": same / total,
        "exact_match": same == total,
        "readout_layer": names[-1],
        "readout": readout,
        "readout_substituted": readout != "spikes",
        "n_samples": int(np.asarray(lava_spikes[names[0]]).shape[1]),
    }
    if labels is not None:
        labels = np.asarray(labels).reshape(-1)
        last = names[-1]
        result["accuracy_lava"] = _accuracy(np.asarray(lava_spikes[last]), labels)
        result["accuracy_reference"] = _accuracy(np.asarray(reference_spikes[last]), labels)
    substituted = [
        layer["name"] for layer in (stats or {}).get("layers", [])
        if layer.get("reset_substituted")
    ]
    result["reset_substituted"] = bool(substituted)
    if substituted:
        result["warning"] = (
            f"layers {', '.join(map(repr, substituted))} use subtract/none reset; Loihi resets "
            "to zero, so the Lava spikes and accuracy are those of the zero-reset model"
        )
    return result


@register_exporter("lava")
class LavaExporter:
    """"lava": Loihi 2's simulator run of the NIR file in ``mode`` (floating_pt or fixed_pt),
    in the Lava interpreter; writes no output file of its own."""

    name = "lava"
    filename = None
    runtime = "Loihi 2 simulator (lava-nc 0.10.0)"

    def __init__(self, *, mode: str = "floating_pt", timeout_s: float = 600.0,
                 clip_percentile: float = 100.0) -> None:
        self.mode, self.timeout_s, self.clip_percentile = mode, timeout_s, clip_percentile

    def unavailable(self) -> str | None:
        return None if find_lava_python() is not None else HOW_TO_ENABLE

    def export(self, graph: Any, workdir: Path, *, timesteps: int) -> Path:
        import nir

        return write_atomically(Path(workdir) / "model.nir", lambda tmp: nir.write(tmp, graph))

    def describe(self, path: Path) -> dict[str, Any]:
        return {}

    def run(self, path: Path, x: np.ndarray,
            reference: Mapping[str, np.ndarray] | None = None) -> LavaResult:
        return run_lava(path, x, mode=self.mode, workdir=Path(path).parent / self.mode,
                        timeout_s=self.timeout_s, clip_percentile=self.clip_percentile,
                        reference=reference)
