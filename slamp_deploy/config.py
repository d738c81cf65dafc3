"""What a run depends on, defined once: :class:`PipelineConfig`, a frozen dataclass whose field
metadata holds each option's help text, argparse choices and (where it differs from
``--field-name``) its flag, beside the field's type and default.

The command line (:mod:`slamp_deploy.cli.options`) builds its parsers from these fields, and the
choices come from the modules that own them (``data.ENCODINGS``, ``model.runner.READOUTS``,
``prune.calibrate.TIMESTEP_WEIGHTS``, ``prune.methods.available_methods``), so a default, a
choice or a help text is written in one place. Help texts may use argparse's ``%(default)s``,
which shows the field's default.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch

from slamp_deploy.data import ENCODINGS
from slamp_deploy.errors import UnknownTargetError, UsageError
from slamp_deploy.model.runner import READOUTS
from slamp_deploy.prune.calibrate import TIMESTEP_WEIGHTS
from slamp_deploy.prune.methods import available_methods
from slamp_deploy.prune.structure import parse_structure, structure_method
from slamp_deploy.prune.temporal import LAMBDA_VARIANTS
from slamp_deploy.verify import VERIFY_SAMPLES

SCHEDULES = ("oneshot", "iterative")
#: SLAMP temporal factor: the three estimators from calibration statistics, or measured on the
#: network (slamp_deploy.prune.temporal)
LAMBDA_CHOICES = (*LAMBDA_VARIANTS, "measured")
DEFAULT_SPARSITY = 0.9
DEVICES = ("cpu", "cuda")


def option(default: Any, help: str | None = None, *, choices: tuple[str, ...] | None = None,
           flag: str | None = None) -> Any:
    """A config field with its command-line option: ``flag`` defaults to ``--field-name``; a bool
    field is a switch (``--flag`` sets True when the default is False, and clears it otherwise,
    so its flag then reads ``--no-...``)."""
    return field(default=default, metadata={"help": help, "choices": choices, "flag": flag})


def _method_help() -> str:
    names = available_methods()
    return f"{names[0]} (default), {', '.join(names[1:])}"


@dataclass(frozen=True, slots=True, kw_only=True)
class PipelineConfig:
    """Everything a run depends on; the CLI builds one from its arguments."""

    target: str = option("loihi2", "chip profile name (see `slamp-deploy targets`) or "
                         "path/to/chip.toml")
    model: str | None = option(  # None: the built-in digits example
        None, "path/to/file.py:factory or package.module:factory (a function returning the "
        "nn.Module), or graph.nir; default: the built-in digits example")
    weights: str | None = option(None, "state_dict checkpoint (.pt), loaded with "
                                 "weights_only=True")
    nir_dt: float | None = option(  # None: the file's slamp.dt, else 1e-4 s with a warning
        None, "with --model graph.nir: the time step in seconds the graph was exported at "
        "(NIR carries none; a file slamp-deploy wrote records it; norse/rockpool 1e-3, "
        "sinabs/spyx 1, snnTorch 1e-4; see docs/nir-interop.md)")
    data: str | None = option(  # None: scikit-learn digits
        None, ".npz with arrays x ([N, ...] samples or [T, N, ...] sequences) and y ([N] "
        "labels), or cifar10:PATH, cifar100:PATH, cifar10-dvs:PATH (local copies; see "
        "docs/datasets.md); default: scikit-learn digits")
    eval_data: str | None = option(None, ".npz evaluation set (default: split off --data)")
    timesteps: int | None = option(  # None: the example's 8, or the sequence length of the data
        None, "time steps per sample (default 8, or the sequence length of sequence data)")
    encoding: str = option("direct", "how static samples become input sequences (default "
                           "%(default)s)", choices=ENCODINGS)
    readout: str = option("spikes", "class = argmax of output spike counts, or of the last "
                          "membrane", choices=READOUTS)
    # no argparse choices: an unknown method is bad input (exit 1, listing the methods), as from
    # the library
    method: str = option("slamp", _method_help())
    sparsity: float | None = option(  # None: DEFAULT_SPARSITY (or the fit search with fit=True)
        None, f"target fraction of pruned weights in [0, 1) (default {DEFAULT_SPARSITY})")
    fit: bool = option(False, "find the smallest sparsity at which the model fits --target")
    structure: str | None = option(  # None: no structure step (prune/structure.py)
        None, "remove whole neurons and channels first: neurons:F removes the fraction F of "
        "the hidden ones (readout classes stay); with --fit, neurons finds the smallest "
        "removal that fits --target (methods slamp, lamp, uniform)")
    chips: int | None = option(None, "with --fit/check: chips available")
    cores: int | None = option(None, "with --fit/check: cores available")
    epochs: int = option(3, "retraining epochs (0 = none)")
    lr: float = option(1e-3)
    batch_size: int = option(64)
    schedule: str = option("oneshot", choices=SCHEDULES)
    rounds: int = option(3, "rounds of the iterative schedule")
    current_matching: bool = option(True, "skip the closed-form current matching after pruning",
                                    flag="--no-current-matching")
    lambda_variant: str = option(  # best mean accuracy after retraining (docs/benchmarks.md)
        "l2", "SLAMP temporal factor estimator (default %(default)s, the best mean accuracy "
        "after retraining in docs/benchmarks.md)", choices=LAMBDA_CHOICES)
    timestep_weights: str = option("uniform", "step weights w_t for SLAMP (default %(default)s)",
                                   choices=TIMESTEP_WEIGHTS)
    eval_fraction: float = option(0.2, "fraction of --data held out for evaluation (default "
                                  "%(default)s)")
    calib_samples: int = option(256, "calibration samples, drawn from the retraining part "
                                "(default %(default)s)")
    verify_samples: int = option(  # evaluation samples the exported models are checked on
        VERIFY_SAMPLES, "evaluation samples the exported NIR/ONNX/Lava models are checked on "
        "(default %(default)s; Lava's CPU simulator is slow)")
    nir_for: str | None = option(  # None: model.nir only (exporters/nir_export.for_consumer)
        None, "also write model.<reader>.nir in the form that framework's NIR importer reads "
        "exactly (norse: r = 1, the gain folded into the weights; see docs/nir-interop.md), "
        "checked like model.nir", choices=("norse",))
    lava: bool = option(True, "skip the Lava (Loihi 2 simulator) check for Loihi targets",
                        flag="--no-lava")
    lava_timeout: float = option(  # seconds per Lava run before it is abandoned (with a warning)
        300.0, "seconds per Lava run before it is abandoned with a warning (default "
        "%(default)g; large networks are slow in Lava's CPU simulator)")
    device: str = option("cpu", choices=DEVICES)
    dist_timeout: float = option(300.0, "under torchrun: seconds a rank waits for the others "
                                 "before failing")
    seed: int = option(0, "seeds calibration subset, encoders and retraining (default "
                       "%(default)s)")
    # fixes the evaluation split (the built-in weights were trained on 0's)
    split_seed: int = option(
        0, "seeds the evaluation split only, so runs with different --seed are scored on the "
        "same held-out samples (default %(default)s, the split the built-in example was "
        "trained on)")
    out: str = option("slamp-out", "output folder (default ./%(default)s)")

    def validate(self) -> None:
        """Refuse option values before any work is done (one line, names the option)."""
        if self.method not in available_methods():
            raise UnknownTargetError(f"--method {self.method!r}: unknown; choose one of "
                                     f"{', '.join(available_methods())}")
        if self.sparsity is not None and not (0.0 <= self.sparsity < 1.0
                                              and math.isfinite(self.sparsity)):
            raise UsageError(f"--sparsity {self.sparsity}: must be in [0, 1)")
        if self.encoding not in ENCODINGS:
            raise UsageError(f"--encoding {self.encoding!r}: choose one of {', '.join(ENCODINGS)}")
        if self.readout not in READOUTS:
            raise UsageError(f"--readout {self.readout!r}: choose one of {', '.join(READOUTS)}")
        if self.schedule not in SCHEDULES:
            raise UsageError(f"--schedule {self.schedule!r}: choose one of {', '.join(SCHEDULES)}")
        if self.lambda_variant not in LAMBDA_CHOICES:
            raise UsageError(f"--lambda-variant {self.lambda_variant!r}: choose one of "
                             f"{', '.join(LAMBDA_CHOICES)}")
        if self.timestep_weights not in TIMESTEP_WEIGHTS:
            raise UsageError(f"--timestep-weights {self.timestep_weights!r}: choose one of "
                             f"{', '.join(TIMESTEP_WEIGHTS)}")
        for name, v, low in (("--epochs", self.epochs, 0), ("--rounds", self.rounds, 1),
                             ("--batch-size", self.batch_size, 1),
                             ("--calib-samples", self.calib_samples, 1),
                             ("--verify-samples", self.verify_samples, 1)):
            if v < low:
                raise UsageError(f"{name} {v}: must be at least {low}")
        if self.timesteps is not None and self.timesteps < 1:
            raise UsageError(f"--timesteps {self.timesteps}: must be at least 1")
        if not 0.0 < self.eval_fraction < 1.0:
            raise UsageError(f"--eval-fraction {self.eval_fraction}: must be in (0, 1)")
        if self.device not in DEVICES:
            raise UsageError(f"--device {self.device!r}: choose {' or '.join(DEVICES)}")
        if self.device == "cuda" and not torch.cuda.is_available():
            raise UsageError("--device cuda: no CUDA device is available here; use --device cpu")
        if not self.lr > 0:
            raise UsageError(f"--lr {self.lr}: must be positive")
        _check_ranges(self)
        _check_nir_dt(self.nir_dt)
        _check_structure(self)


#: the seeds numpy's and torch's generators all take
SEED_MAX = 2**32 - 1
#: the longest timeout accepted (seconds; about 115 days, and within datetime.timedelta)
TIMEOUT_MAX = 1e7


def _check_ranges(cfg: PipelineConfig) -> None:
    """Finite numbers, seeds the generators take, timeouts and counts that mean something."""
    if not math.isfinite(cfg.lr):
        raise UsageError(f"--lr {cfg.lr}: must be a finite positive number, e.g. 1e-3")
    for name, seed in (("--seed", cfg.seed), ("--split-seed", cfg.split_seed)):
        if not 0 <= seed <= SEED_MAX:
            raise UsageError(f"{name} {seed}: must be in 0..{SEED_MAX}")
    for name, t in (("--lava-timeout", cfg.lava_timeout), ("--dist-timeout", cfg.dist_timeout)):
        if not 0 < t <= TIMEOUT_MAX:  # NaN fails this too
            raise UsageError(f"{name} {t}: must be a number of seconds in (0, {TIMEOUT_MAX:g}]")
    for name, n in (("--chips", cfg.chips), ("--cores", cfg.cores)):
        if n is not None and n < 1:
            raise UsageError(f"{name} {n}: must be at least 1 (or leave it out to use the "
                             f"target's own count)")


def _check_structure(cfg: PipelineConfig) -> None:
    """``--structure``: its value, and a method with a structured form."""
    if parse_structure(cfg.structure, cfg.fit) is not None:
        structure_method(cfg.method)


def _check_nir_dt(dt: float | None) -> None:
    if dt is not None and not (math.isfinite(dt) and dt > 0):
        raise UsageError(f"--nir-dt {dt}: must be a positive number of seconds")


__all__ = ["DEFAULT_SPARSITY", "DEVICES", "LAMBDA_CHOICES", "SCHEDULES", "PipelineConfig",
           "option"]
