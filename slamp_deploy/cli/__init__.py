"""Command line: ``slamp-deploy [--target NAME] [options]`` and its subcommands.

The only module that prints. It parses arguments, calls the library, turns
:class:`~slamp_deploy.errors.SlampError` into a one-line ``error: ...`` on stderr and an exit code:
0 success, 1 bad input or configuration, 2 usage (argparse), 3 the model does not fit the target.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NoReturn

from slamp_deploy import __version__
from slamp_deploy.errors import SlampError, SlampWarning

SUBCOMMANDS = ("run", "targets", "check", "energy")


def _add_model_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model and data")
    g.add_argument("--model", help="path/to/file.py:factory or package.module:factory (a function "
                   "returning the nn.Module), or graph.nir; default: the built-in digits example")
    g.add_argument("--weights", help="state_dict checkpoint (.pt), loaded with weights_only=True")
    g.add_argument("--data", help=".npz with arrays x ([N, ...] samples or [T, N, ...] "
                   "sequences) and y ([N] labels), or cifar10:PATH, cifar100:PATH, "
                   "cifar10-dvs:PATH (local copies; see docs/datasets.md); default: "
                   "scikit-learn digits")
    g.add_argument("--eval-data", help=".npz evaluation set (default: split off --data)")
    g.add_argument("--eval-fraction", type=float, default=0.2,
                   help="fraction of --data held out for evaluation (default 0.2)")
    g.add_argument("--calib-samples", type=int, default=256,
                   help="calibration samples, drawn from the retraining part (default 256)")
    g.add_argument("--timesteps", type=int, help="time steps per sample (default 8, or the "
                   "sequence length of sequence data)")
    g.add_argument("--encoding", default="direct", choices=("direct", "rate", "latency"),
                   help="how static samples become input sequences (default direct)")
    g.add_argument("--readout", default="spikes", choices=("spikes", "membrane"),
                   help="class = argmax of output spike counts, or of the last membrane")
    g.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    g.add_argument("--dist-timeout", type=float, default=300.0,
                   help="under torchrun: seconds a rank waits for the others before failing")
    g.add_argument("--seed", type=int, default=0,
                   help="seeds calibration subset, encoders and retraining (default 0)")
    g.add_argument("--split-seed", type=int, default=0,
                   help="seeds the evaluation split only, so runs with different --seed are "
                        "scored on the same held-out samples (default 0, the split the "
                        "built-in example was trained on)")


def build_parser() -> argparse.ArgumentParser:
    """The main parser: the full pipeline (also reachable as ``slamp-deploy run``)."""
    p = argparse.ArgumentParser(
        prog="slamp-deploy",
        description="Prune a spiking network with SLAMP for a neuromorphic chip, retrain it, "
                    "and report what it costs. Subcommands: targets, check (see "
                    "`slamp-deploy targets --help`).")
    p.add_argument("--version", action="version", version=f"slamp-deploy {__version__}")
    p.add_argument("--target", default="loihi2",
                   help="chip profile name (see `slamp-deploy targets`) or path/to/chip.toml")
    _add_model_args(p)
    g = p.add_argument_group("pruning")
    g.add_argument("--method", default="slamp",
                   help="slamp (default), lamp, global, uniform, uniform+, erk")
    g.add_argument("--sparsity", type=float, help="target fraction of pruned weights in [0, 1) "
                   "(default 0.9)")
    g.add_argument("--fit", action="store_true",
                   help="find the smallest sparsity at which the model fits --target")
    g.add_argument("--chips", type=int, help="with --fit/check: chips available")
    g.add_argument("--cores", type=int, help="with --fit/check: cores available")
    g.add_argument("--schedule", default="oneshot", choices=("oneshot", "iterative"))
    g.add_argument("--rounds", type=int, default=3, help="rounds of the iterative schedule")
    g.add_argument("--lambda-variant", default="l2", choices=("max", "l2", "sqrt", "measured"),
                   help="SLAMP temporal factor estimator (default l2, the best mean accuracy "
                        "after retraining in docs/benchmarks.md)")
    g.add_argument("--timestep-weights", default="uniform", choices=("uniform", "gradient"),
                   help="step weights w_t for SLAMP (default uniform)")
    g.add_argument("--no-current-matching", dest="current_matching", action="store_false",
                   help="skip the closed-form current matching after pruning")
    g = p.add_argument_group("retraining")
    g.add_argument("--epochs", type=int, default=3, help="retraining epochs (0 = none)")
    g.add_argument("--lr", type=float, default=1e-3)
    g.add_argument("--batch-size", type=int, default=64)
    g = p.add_argument_group("export")
    g.add_argument("--verify-samples", type=int, default=64,
                   help="evaluation samples the exported NIR/ONNX/Lava models are checked on "
                        "(default 64; Lava's CPU simulator is slow)")
    g.add_argument("--no-lava", dest="lava", action="store_false",
                   help="skip the Lava (Loihi 2 simulator) check for Loihi targets")
    g.add_argument("--lava-timeout", type=float, default=300.0,
                   help="seconds per Lava run before it is abandoned with a warning (default "
                        "300; large networks are slow in Lava's CPU simulator)")
    p.add_argument("--out", default="slamp-out", help="output folder (default ./slamp-out)")
    return p


def _targets_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="slamp-deploy targets",
                                description="List the hardware profiles, one line each.")
    return p


def _check_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="slamp-deploy check",
        description="Map a (pruned or dense) model onto a chip and report every rule. Exit 0 "
                    "if it fits, 3 if it does not.")
    p.add_argument("--target", required=True, help="profile name or path/to/chip.toml")
    p.add_argument("--chips", type=int)
    p.add_argument("--cores", type=int)
    _add_model_args(p)
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


def _print_summary(console: Any, report: dict[str, Any], out_dir: str) -> None:
    from rich.table import Table

    sp = report["sparsity"]
    acc = report["accuracy"]
    t = Table(title=f"slamp-deploy · {report['method']} → {report['target']}", show_lines=False)
    t.add_column("layer")
    t.add_column("kind")
    t.add_column("weights", justify="right")
    t.add_column("kept", justify="right")
    t.add_column("sparsity", justify="right")
    t.add_column("layer score", justify="right")
    t.add_column("firing rate", justify="right")
    for row in report["layers"]:
        fr = row["firing_rate_per_step"]
        t.add_row(row["name"], row["kind"], f"{row['weights_total']:,}",
                  f"{row['weights_kept']:,}", f"{row['sparsity']:.3f}",
                  f"{row['layer_score']:.3f}", f"{sum(fr) / len(fr):.3f}" if fr else "-")
    t.add_section()
    t.add_row("total", "", f"{sp['weights_total']:,}", f"{sp['weights_kept']:,}",
              f"{sp['achieved']:.3f}", "", "")
    console.print(t)
    a = Table(title="accuracy on the evaluation data")
    a.add_column("dense", justify="right")
    a.add_column("pruned", justify="right")
    a.add_column("current matched", justify="right")
    a.add_column("retrained", justify="right")
    a.add_row(*(f"{acc[k]:.4f}" if k in acc else "-"
                for k in ("dense", "pruned", "current_matched", "retrained")))
    console.print(a)
    from slamp_deploy.pipeline.run import REPORT_SECTIONS

    for key in REPORT_SECTIONS:
        sec = report.get(key)
        if isinstance(sec, dict) and sec.get("summary"):
            console.print(sec["summary"], soft_wrap=True)
    tim = report["timings_s"]
    console.print(f"total {tim.get('total', 0):.1f} s · "
                  + " · ".join(f"{k} {v:.1f} s" for k, v in tim.items() if k != "total"),
                  soft_wrap=True)
    console.print(f"outputs: {out_dir}/ report.json, report.md, pruned.pt, model.nir, "
                  f"model.onnx", soft_wrap=True)


def _run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from slamp_deploy.pipeline.run import PipelineConfig
    from slamp_deploy.pipeline.run import run as run_pipeline

    cfg = PipelineConfig(
        target=args.target, model=args.model, weights=args.weights, data=args.data,
        eval_data=args.eval_data, timesteps=args.timesteps, encoding=args.encoding,
        readout=args.readout, method=args.method, sparsity=args.sparsity, fit=args.fit,
        chips=args.chips, cores=args.cores, epochs=args.epochs, lr=args.lr,
        batch_size=args.batch_size, schedule=args.schedule, rounds=args.rounds,
        current_matching=args.current_matching, lambda_variant=args.lambda_variant,
        timestep_weights=args.timestep_weights, eval_fraction=args.eval_fraction,
        calib_samples=args.calib_samples, verify_samples=args.verify_samples,
        lava=args.lava, lava_timeout=args.lava_timeout,
        device=args.device, dist_timeout=args.dist_timeout, seed=args.seed,
        split_seed=args.split_seed, out=args.out)
    from slamp_deploy.distributed import env_world

    main_rank = env_world()[0] == 0
    err = Console(stderr=True)
    with warnings.catch_warnings():
        # the run's warnings are collected into report.json and printed once below
        warnings.simplefilter("ignore", SlampWarning)
        if main_rank:
            with _rich_progress(err) as factory:
                result = run_pipeline(cfg, progress=factory)
        else:  # under torchrun only rank 0 prints
            run_pipeline(cfg)
            return 0
    for w in result.report.get("warnings", []):
        print(f"warning: {w}", file=sys.stderr)
    _print_summary(Console(), result.report, str(result.out_dir))
    fit = result.report.get("fit")
    if isinstance(fit, dict) and not fit.get("fits", True):
        print(f"error: the pruned model does not fit {args.target}: {fit['summary']}; "
              f"try --fit", file=sys.stderr)
        return 3
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv``, run, and return the exit code (never raises SlampError)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] == "targets":
            _targets_parser().parse_args(argv[1:])
            return _targets()
        if argv and argv[0] == "check":
            return _check(_check_parser().parse_args(argv[1:]))
        if argv and argv[0] == "energy":
            from slamp_deploy.cli.energy import run_energy

            return run_energy(argv[1:])
        if argv and argv[0] == "run":
            argv = argv[1:]
        return _run(build_parser().parse_args(argv))
    except SlampError as e:
        from slamp_deploy.distributed import env_world

        rank, size, _ = env_world()
        prefix = f"rank {rank}: " if size > 1 and not str(e).startswith("rank ") else ""
        print(f"error: {prefix}{e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("error: interrupted; earlier outputs were left as they were", file=sys.stderr)
        return 130


def _targets() -> int:
    from slamp_deploy.chips import describe_targets

    for name, line in describe_targets():
        print(f"{name:<14} {line}")
    return 0


def _check(args: argparse.Namespace) -> int:
    from slamp_deploy.cli.check import run_check

    return run_check(args)


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
