"""The command-line options, built from :class:`~slamp_deploy.config.PipelineConfig`: each field's
flag, type, default, choices and help come from the field; this module owns only the layout
(which group an option sits in, and in which order ``--help`` lists them) and the way back from
parsed arguments to a config.
"""

from __future__ import annotations

import argparse
from dataclasses import fields
from typing import Any

from slamp_deploy.config import PipelineConfig

_FIELDS = {f.name: f for f in fields(PipelineConfig)}
_TYPES: dict[str, type] = {"int": int, "float": float}

#: the model and data options of every command that loads a model and its data, in --help order
MODEL_DATA = ("model", "weights", "nir_dt", "data", "eval_data", "eval_fraction", "calib_samples",
              "timesteps", "encoding", "readout", "device", "dist_timeout", "seed", "split_seed")
#: the groups of the run's own options after "model and data", in --help order
RUN_GROUPS = (
    ("pruning", ("method", "sparsity", "fit", "structure", "chips", "cores", "schedule", "rounds",
                 "lambda_variant", "timestep_weights", "current_matching")),
    ("retraining", ("epochs", "lr", "batch_size")),
    ("export", ("verify_samples", "nir_for", "lava", "lava_timeout")),
)


def flag(name: str) -> str:
    """The command-line flag of config field ``name`` (``--field-name`` unless it says else)."""
    return _FIELDS[name].metadata["flag"] or "--" + name.replace("_", "-")


def add_option(parser: argparse.ArgumentParser | argparse._ArgumentGroup, name: str,
               **overrides: Any) -> None:
    """Add config field ``name`` as an option; ``overrides`` are passed to ``add_argument``.

    The argparse type follows the field's annotation (``int``, ``float``; ``str`` needs none),
    and a ``bool`` field is a switch that turns its default around.
    """
    f = _FIELDS[name]
    kwargs: dict[str, Any] = {"dest": name, "default": f.default}
    base = str(f.type).removesuffix(" | None")
    if base == "bool":
        kwargs["action"] = "store_false" if f.default else "store_true"
    elif base in _TYPES:
        kwargs["type"] = _TYPES[base]
    for key in ("choices", "help"):
        if f.metadata[key] is not None:
            kwargs[key] = f.metadata[key]
    parser.add_argument(flag(name), **(kwargs | overrides))


def add_model_data(parser: argparse.ArgumentParser, names: tuple[str, ...] = MODEL_DATA) -> None:
    """The "model and data" group: ``names`` (default all of :data:`MODEL_DATA`)."""
    g = parser.add_argument_group("model and data")
    for name in names:
        add_option(g, name)


def add_run_options(parser: argparse.ArgumentParser) -> None:
    """Every option of the full pipeline, one per :class:`PipelineConfig` field."""
    add_option(parser, "target")
    add_model_data(parser)
    for title, names in RUN_GROUPS:
        g = parser.add_argument_group(title)
        for name in names:
            add_option(g, name)
    add_option(parser, "out")


def to_config(args: argparse.Namespace) -> PipelineConfig:
    """The config of the parsed ``args``; options a command does not have keep their defaults,
    and parsed values that are no config field (e.g. ``energy --targets``) are left out."""
    return PipelineConfig(**{k: v for k, v in vars(args).items() if k in _FIELDS})


__all__ = ["MODEL_DATA", "RUN_GROUPS", "add_model_data", "add_option", "add_run_options",
           "flag", "to_config"]
