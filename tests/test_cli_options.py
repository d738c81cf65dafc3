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
    from slamp_deploy import cli
    from slamp_deploy.cli import energy

    return {"run": cli.build_parser(), "check": cli._check_parser(),
            "energy": energy.build_parser(), "targets": cli._targets_parser()}


def _action(a: argparse.Action, group: str) -> dict[str, Any]:
    return {"group": group, "flags": list(a.option_strings), "dest": a.dest,
            "default": a.default, "choices": None if a.choices is None else list(a.choices),
            "nargs": a.nargs, "const": a.const, "required": a.required,
            "type": None if a.type is None else a.type.__name__,
            "action": type(a).__name__, "help": a.help}


def snapshot(p: argparse.ArgumentParser) -> dict[str, Any]:
    """What a user can see of ``p``: its prog and every action, in the order --help lists them."""
    actions = [_action(a, g.title or "") for g in p._action_groups for a in g._group_actions]
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
