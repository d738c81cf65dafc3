"""``slamp-deploy targets``: list the hardware profiles, one line each."""

from __future__ import annotations

import argparse
from collections.abc import Sequence


def targets_parser() -> argparse.ArgumentParser:
    return argparse.ArgumentParser(prog="slamp-deploy targets",
                                   description="List the hardware profiles, one line each.")


def run_targets(argv: Sequence[str]) -> int:
    """Print each profile's name and its one-line description."""
    from slamp_deploy.chips.toml import describe_targets

    targets_parser().parse_args(argv)
    for name, line in describe_targets():
        print(f"{name:<14} {line}")
    return 0
