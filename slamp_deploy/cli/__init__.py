"""Command line: ``slamp-deploy [--target NAME] [options]`` and its subcommands.

The only package that prints. It parses arguments, calls the library, turns
:class:`~slamp_deploy.errors.SlampError` into a one-line ``error: ...`` on stderr and an exit code:
0 success, 1 bad input or configuration, 2 usage (argparse), 3 the model does not fit the target.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from typing import TYPE_CHECKING, Any, NoReturn

from slamp_deploy import __version__
from slamp_deploy.errors import SlampError, SlampWarning

if TYPE_CHECKING:
    from slamp_deploy.report.model import RunReport

#: the subcommands, each a module of this package with a ``run_<name>(argv) -> int``; anything
#: else is the full pipeline (``slamp-deploy [run] [options]``)
_SUBCOMMANDS = ("targets", "check", "energy")


def main_parser() -> argparse.ArgumentParser:
    """The parser of the full pipeline, ``slamp-deploy [run] [options]``."""
    from slamp_deploy.cli.options import add_run_options

    p = argparse.ArgumentParser(
        prog="slamp-deploy",
        description="Prune a spiking network with SLAMP for a neuromorphic chip, retrain it, "
                    "and report what it costs. Subcommands: targets, check, energy (each has "
                    "its own --help).")
    p.add_argument("--version", action="version", version=f"slamp-deploy {__version__}")
    add_run_options(p)
    return p


@contextmanager
def _rich_progress(console: Any) -> Iterator[Callable[[str, int], Any]]:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description:<22}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console, transient=False) as prog:

        @contextmanager
        def factory(description: str, total: int) -> Iterator[Callable[[int], None]]:
            task = prog.add_task(description, total=total)
            try:
                yield lambda n: prog.advance(task, n)
            finally:
                prog.update(task, completed=total)

        yield factory


def _print_summary(console: Any, report: RunReport, out_dir: str) -> None:
    from rich.table import Table

    sp = report.sparsity
    acc = report.accuracy
    t = Table(title=f"slamp-deploy · {report.method} → {report.target}", show_lines=False)
    t.add_column("layer")
    t.add_column("kind")
    t.add_column("weights", justify="right")
    t.add_column("kept", justify="right")
    t.add_column("sparsity", justify="right")
    t.add_column("layer score", justify="right")
    t.add_column("firing rate", justify="right")
    for row in report.layers:
        fr = row.firing_rate_per_step
        t.add_row(row.name, row.kind, f"{row.weights_total:,}", f"{row.weights_kept:,}",
                  f"{row.sparsity:.3f}", f"{row.layer_score:.3f}",
                  f"{sum(fr) / len(fr):.3f}" if fr else "-")
    t.add_section()
    t.add_row("total", "", f"{sp.weights_total:,}", f"{sp.weights_kept:,}",
              f"{sp.achieved:.3f}", "", "")
    console.print(t)
    a = Table(title="accuracy on the evaluation data")
    stages = (("dense", "dense"), ("structured", "compact"), ("pruned", "pruned"),
              ("current_matched", "current matched"), ("retrained", "retrained"))
    stages = tuple(s for s in stages if s[0] != "structured" or "structured" in acc)
    for _, title in stages:
        a.add_column(title, justify="right")
    a.add_row(*(f"{acc[k]:.4f}" if k in acc else "-" for k, _ in stages))
    console.print(a)
    if report.structure is not None:
        from slamp_deploy.report.markdown import structure_summary

        console.print(structure_summary(report.structure), soft_wrap=True)
    for summary in report.section_summaries():
        if summary:
            console.print(summary, soft_wrap=True)
    tim = report.timings_s
    console.print(f"total {tim.get('total', 0):.1f} s · "
                  + " · ".join(f"{k} {v:.1f} s" for k, v in tim.items() if k != "total"),
                  soft_wrap=True)
    from slamp_deploy.verify import FileCheck

    checks = report.export.checks if report.export else ()
    # every other registered exporter that ran wrote its file into the folder (verify.FileCheck)
    extra = [c.file for c in checks if isinstance(c, FileCheck) and c.spikes and c.file]
    if report.structure:
        extra += ["structure.json", "compact_model.py"]
    console.print(f"outputs: {out_dir}/ report.json, report.md, pruned.pt, model.nir, "
                  f"model.onnx" + "".join(f", {f}" for f in extra), soft_wrap=True)


def _run(argv: Sequence[str]) -> int:
    """The full pipeline: progress bars on stderr, the summary on stdout; 3 if it does not fit."""
    from rich.console import Console

    from slamp_deploy.cli.options import to_config
    from slamp_deploy.distributed import env_world
    from slamp_deploy.pipeline.outputs import out_lock
    from slamp_deploy.pipeline.run import check_run
    from slamp_deploy.pipeline.run import run as run_pipeline

    cfg = to_config(main_parser().parse_args(argv))
    main_rank = env_world()[0] == 0
    err = Console(stderr=True)
    check_run(cfg)  # bad options and paths, and a locked --out, before any progress bar
    try:
        with out_lock(cfg.out) if main_rank else nullcontext(), warnings.catch_warnings():
            # the run's warnings are collected into report.json and printed once below
            warnings.simplefilter("ignore", SlampWarning)
            if main_rank:
                with _rich_progress(err) as factory:
                    result = run_pipeline(cfg, progress=factory)
            else:  # under torchrun only rank 0 prints
                run_pipeline(cfg)
                return 0
    except KeyboardInterrupt as e:
        from slamp_deploy.pipeline.outputs import on_disk

        e.on_disk = on_disk(cfg.out)  # type: ignore[attr-defined]  # for the message in main
        raise
    for w in result.report.warnings:
        print(f"warning: {w}", file=sys.stderr)
    _print_summary(Console(), result.report, str(result.out_dir))
    fit = result.report.fit
    if fit is not None and not fit.report.fits:
        print(f"error: the pruned model does not fit {cfg.target}: {fit.summary}; "
              f"try --fit", file=sys.stderr)
        return 3
    return 0


def _dispatch(argv: list[str]) -> int:
    if argv and argv[0] in _SUBCOMMANDS:
        module = importlib.import_module(f"{__name__}.{argv[0]}")
        return getattr(module, f"run_{argv[0]}")(argv[1:])
    return _run(argv[1:] if argv and argv[0] == "run" else argv)


def _error(e: SlampError) -> int:
    """Print ``e`` as one line ``error: ...`` (naming the rank under torchrun); its exit code."""
    from slamp_deploy.distributed import env_world

    rank, size, _ = env_world()
    prefix = f"rank {rank}: " if size > 1 and not str(e).startswith("rank ") else ""
    print(f"error: {prefix}{e}", file=sys.stderr)
    return e.exit_code


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv``, run the command, and return its exit code (never raises SlampError; a usage
    error exits through argparse with 2)."""
    with _sigterm_interrupts():
        try:
            return _dispatch(list(sys.argv[1:] if argv is None else argv))
        except SlampError as e:
            return _error(e)
        except KeyboardInterrupt as e:
            name = "SIGTERM" if isinstance(e, Terminated) else "SIGINT"
            disk = getattr(e, "on_disk", "nothing was written")
            print(f"error: interrupted ({name}); {disk}", file=sys.stderr)
            return 143 if isinstance(e, Terminated) else 130


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that every cleanup (the output swap's rollback, the
    lock) runs; Python's default for SIGTERM is to die on the spot."""


@contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def raise_terminated(signum: int, frame: object) -> None:
        raise Terminated()

    before = signal.signal(signal.SIGTERM, raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


def entrypoint() -> NoReturn:
    """Console-script entry point."""
    code = main()
    from slamp_deploy.distributed import env_world

    if env_world()[1] > 1:
        # Under torchrun, skip interpreter finalization: torch.distributed's gloo threads (and the
        # Python objects inside collectives they still hold, e.g. all_gather_object's buffers)
        # outlive destroy_process_group() once DDP has run, and a thread that frees a Python
        # object during finalization aborts the process. Outputs are already written atomically.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    entrypoint()
