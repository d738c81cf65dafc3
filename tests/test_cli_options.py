"""The command line's surface, pinned: every parser's actions (flags, dest, default, choices,
nargs, type, required, help, group) must match ``tests/data/cli_parsers.json``, which was written
from the parsers as they were before the options moved into ``slamp_deploy.config``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

SNAPSHOT = Path(__file__).parent / "data" / "cli_parsers.json"


def _parsers() -> dict[str, argparse.ArgumentParser]:
    from slamp_deploy.cli import main_parser
    from slamp_deploy.cli.check import check_parser
    from slamp_deploy.cli.energy import energy_parser
    from slamp_deploy.cli.targets import targets_parser

    return {"run": main_parser(), "check": check_parser(), "energy": energy_parser(),
            "targets": targets_parser()}


def _action(p: argparse.ArgumentParser, a: argparse.Action, group: str) -> dict[str, Any]:
    # the help as --help shows it, with %(default)s and the like filled in
    shown = p._get_formatter()._expand_help(a) if a.help else a.help
    return {"group": group, "flags": list(a.option_strings), "dest": a.dest,
            "default": a.default, "choices": None if a.choices is None else list(a.choices),
            "nargs": a.nargs, "const": a.const, "required": a.required,
            "type": None if a.type is None else a.type.__name__,
            "action": type(a).__name__, "help": shown}


def snapshot(p: argparse.ArgumentParser) -> dict[str, Any]:
    """What a user can see of ``p``: its prog and every action, in the order --help lists them."""
    actions = [_action(p, a, g.title or "") for g in p._action_groups for a in g._group_actions]
    return {"prog": p.prog, "actions": actions}


def current() -> dict[str, Any]:
    return {name: snapshot(p) for name, p in _parsers().items()}


def test_parsers_match_the_snapshot() -> None:
    expected = json.loads(SNAPSHOT.read_text())
    got = json.loads(json.dumps(current()))
    assert got.keys() == expected.keys()
    for name in expected:
        assert got[name]["prog"] == expected[name]["prog"], name
        want = {tuple(a["flags"]): a for a in expected[name]["actions"]}
        have = {tuple(a["flags"]): a for a in got[name]["actions"]}
        assert list(have) == list(want), name
        for flags, a in want.items():
            assert have[flags] == a, (name, flags)


if __name__ == "__main__":  # writes the snapshot; only when the CLI is meant to change
    SNAPSHOT.write_text(json.dumps(current(), indent=1) + "\n")


def test_every_config_field_is_a_run_option_with_the_same_default() -> None:
    from dataclasses import fields

    from slamp_deploy.cli import main_parser
    from slamp_deploy.cli.options import to_config
    from slamp_deploy.config import PipelineConfig

    parsed = vars(main_parser().parse_args([]))
    assert sorted(parsed) == sorted(f.name for f in fields(PipelineConfig))
    assert to_config(main_parser().parse_args([])) == PipelineConfig()


def test_parsed_values_reach_the_config() -> None:
    from slamp_deploy.cli import main_parser
    from slamp_deploy.cli.options import to_config

    cfg = to_config(main_parser().parse_args(
        ["--no-lava", "--fit", "--lr", "0.5", "--timesteps", "4", "--encoding", "rate",
         "--target", "truenorth", "--no-current-matching"]))
    assert (cfg.lava, cfg.fit, cfg.lr, cfg.timesteps, cfg.encoding, cfg.target,
            cfg.current_matching) == (False, True, 0.5, 4, "rate", "truenorth", False)
