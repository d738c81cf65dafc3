"""Pipeline speed and scale: scoring + allocation against global_unstructured and one sort.

    python -m benchmarks.speed            # make bench-speed
    python -m benchmarks.speed --quick    # the two smallest models only

Models: VGG-16-shaped SNNs on 32x32x3 inputs (13 conv layers with Leaky neurons and 2x2 average
pooling, then FC 512*w -> 512*w -> 10), at channel width multipliers giving about 1M to 50M
weights; width 1.0 is the standard VGG-16 (about 15M weights).

Per model, in one process (so the ratios compare like with like; median of ``--reps`` interleaved
repetitions):

* ``sort``: one ``torch.sort`` of all weights concatenated (the floor);
* ``global_unstructured``: ``torch.nn.utils.prune.global_unstructured`` with L1 at sparsity 0.9;
* ``slamp``: :func:`slamp_deploy.prune.allocate.allocate` (LAMP scores of every layer times
  lambda, and the global top-k), i.e. scoring + allocation; ``slamp+masks`` adds the per-layer
  magnitude masks;
* ``proposed``: the sort-once allocation proposed for ``scores.py`` (:func:`proposed_allocate`).
  It has since replaced the global sort in ``scores.allocate``, so on new runs it equals
  ``slamp``; the committed results were measured before that change.

Peak extra memory: a fresh subprocess per (model, operation) builds the model, resets the
kernel's peak-RSS counter (``/proc/self/clear_refs``), runs the operation once and reports peak RSS
minus RSS before (falls back to ``ru_maxrss`` deltas where the counter cannot be reset). Also the
calibration throughput (samples x timesteps per second through
:func:`slamp_deploy.prune.calibrate.calibrate`) and NIR export time (``to_nir`` + ``nir_bytes``).

Results: ``benchmarks/results/speed.{json,csv}``, ``speed.png`` (log-log), a rich table.
"""

from __future__ import annotations

import argparse
import cProfile
import csv
import gc
import json
import math
import os
import pstats
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import snntorch as snn
import torch
from torch import nn

RESULTS = Path(__file__).resolve().parent / "results"
VGG16 = (64, 64, "P", 128, 128, "P", 256, 256, 256, "P", 512, 512, 512, "P", 512, 512, 512, "P")
#: width multipliers: ~0.9M, ~3.7M, ~14.7M (VGG-16), ~33M, ~50M weights
WIDTHS = (0.25, 0.5, 1.0, 1.5, 1.85)
SPARSITY = 0.9
BETAS = (0.5, 0.7, 0.9, 0.95)


def vgg_snn(width: float = 1.0, classes: int = 10) -> nn.Sequential:
    """VGG-16-shaped SNN for 32x32x3 inputs; Leaky neurons with betas cycling through BETAS."""
    layers: list[nn.Module] = []
    c_in, k = 3, 0

    def lif(**kw: Any) -> snn.Leaky:
        nonlocal k
        k += 1
        return snn.Leaky(beta=BETAS[k % len(BETAS)], init_hidden=True, reset_mechanism="zero",
                         **kw)

    for v in VGG16:
        if v == "P":
            layers.append(nn.AvgPool2d(2))
            continue
        c = max(1, round(int(v) * width))
        layers += [nn.Conv2d(c_in, c, 3, padding=1), lif()]
        c_in = c
    h = max(1, round(512 * width))
    layers += [nn.Flatten(), nn.Linear(c_in, h), lif(), nn.Linear(h, classes), lif(output=True)]
    return nn.Sequential(*layers)


def n_weights(model: nn.Module) -> int:
    return sum(m.weight.numel() for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))


# ----------------------------------------------------------------------------- the proposal


def proposed_allocate(method: str, weights: Mapping[str, torch.Tensor],
                      alive: Mapping[str, torch.Tensor], sparsity: float, *,
                      lambdas: Mapping[str, float] | None = None) -> dict[str, int]:
    """Keep counts of the sort-once allocation.

    The proposal (one sort per layer, bisection on the global threshold) now ships as
    :func:`slamp_deploy.prune.allocate.allocate`, so this calls it: on new runs the ``slamp`` and
    ``proposed`` columns time the same code. The committed ``results/speed.json`` was measured
    before the change, when ``slamp`` was the global-sort implementation.
    """
    from slamp_deploy.prune.allocate import allocate

    return allocate(method, weights, alive, sparsity, lambdas=lambdas).keep


# ----------------------------------------------------------------------------- operations


def _setup(width: float) -> dict[str, Any]:
    torch.manual_seed(0)
    model = vgg_snn(width)
    model.eval()
    prunable = [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    weights = {n: m.weight for n, m in prunable}
    alive = {n: (w.detach() != 0) for n, w in weights.items()}
    T = 8
    lambdas = {n: (1 - BETAS[(i + 1) % 4] ** T) / (1 - BETAS[(i + 1) % 4])
               for i, n in enumerate(weights)}
    return {"model": model, "prunable": prunable, "weights": weights, "alive": alive,
            "lambdas": lambdas, "n": sum(w.numel() for w in weights.values())}


def _ops(env: dict[str, Any]) -> dict[str, Callable[[], Any]]:
    from torch.nn.utils import prune

    from slamp_deploy.prune.allocate import allocate
    from slamp_deploy.prune.masks import magnitude_mask

    weights, alive, lambdas = env["weights"], env["alive"], env["lambdas"]
    flat = torch.cat([w.detach().flatten() for w in weights.values()])
    originals = {n: w.detach().clone() for n, w in weights.items()}

    def op_sort() -> Any:
        return torch.sort(flat)

    def op_slamp() -> Any:
        return allocate("slamp", weights, alive, SPARSITY, lambdas=lambdas)

    def op_slamp_masks() -> Any:
        a = allocate("slamp", weights, alive, SPARSITY, lambdas=lambdas)
        return {n: magnitude_mask(weights[n], a.keep[n], alive[n]) for n in weights}

    def op_proposed() -> Any:
        return proposed_allocate("slamp", weights, alive, SPARSITY, lambdas=lambdas)

    def op_global_unstructured() -> Any:
        params = [(m, "weight") for _, m in env["prunable"]]
        prune.global_unstructured(params, pruning_method=prune.L1Unstructured, amount=SPARSITY)
        masks = [m.weight_mask for m, _ in params]
        for (name, m), _ in zip(env["prunable"], params, strict=True):  # undo, for the next rep
            prune.remove(m, "weight")
            with torch.no_grad():
                m.weight.copy_(originals[name])
        return masks

    return {"sort": op_sort, "global_unstructured": op_global_unstructured, "slamp": op_slamp,
            "slamp+masks": op_slamp_masks, "proposed": op_proposed}


def _status_kb(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def _peak_extra(fn: Callable[[], Any]) -> tuple[int, str]:
    """Peak RSS growth (bytes) while running ``fn`` once, the result kept alive until measured."""
    gc.collect()
    try:
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
        before = _status_kb("VmRSS")
        out = fn()
        peak = _status_kb("VmHWM")
        del out
        return (peak - before) * 1024, "VmHWM after clear_refs"
    except OSError:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        out = fn()
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        del out
        return (peak - before) * 1024, "ru_maxrss delta (a lower bound)"


def worker(job: dict[str, Any]) -> dict[str, Any]:
    """One measurement in this (fresh) process."""
    env = _setup(job["width"])
    kind = job["kind"]
    if kind == "memory":
        fn = _ops(env)[job["op"]]
        extra, how = _peak_extra(fn)
        return {"extra_bytes": extra, "method": how}
    if kind == "time":
        ops = _ops(env)
        counts = proposed_allocate("slamp", env["weights"], env["alive"], SPARSITY,
                                   lambdas=env["lambdas"])
        same = counts == ops["slamp"]().keep
        for fn in ops.values():  # warm-up
            fn()
        times: dict[str, list[float]] = {k: [] for k in ops}
        for _ in range(job["reps"]):
            for name, fn in ops.items():
                gc.collect()
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)
        return {"seconds": {k: statistics.median(v) for k, v in times.items()},
                "all_seconds": times, "proposed_counts_identical": same}
    if kind == "profile":
        from slamp_deploy.prune.allocate import allocate

        allocate("slamp", env["weights"], env["alive"], SPARSITY, lambdas=env["lambdas"])
        pr = cProfile.Profile()
        pr.enable()
        allocate("slamp", env["weights"], env["alive"], SPARSITY, lambdas=env["lambdas"])
        pr.disable()
        st = pstats.Stats(pr)
        rows = []
        for (file, line, func), (_cc, nc, tt, ct, _callers) in st.stats.items():  # type: ignore[attr-defined]
            rows.append({"function": func if file == "~" else f"{Path(file).name}:{line}({func})",
                         "calls": nc, "tottime": tt, "cumtime": ct})
        rows.sort(key=lambda r: -r["tottime"])
        return {"profile": rows[:15], "total": sum(r["tottime"] for r in rows)}
    raise ValueError(f"unknown measurement kind {kind!r}")


def calib_export(width: float, samples: int, timesteps: int) -> dict[str, Any]:
    """Calibration throughput and NIR export time for one model (in this process)."""
    from slamp_deploy.exporters.nir_export import nir_bytes, to_nir

    from slamp_deploy.data import Dataset
    from slamp_deploy.model.graph import trace
    from slamp_deploy.prune.calibrate import calibrate

    env = _setup(width)
    g = trace(env["model"], (3, 32, 32))
    gen = torch.Generator().manual_seed(0)
    ds = Dataset(x=torch.rand(samples, 3, 32, 32, generator=gen),
                 y=torch.zeros(samples, dtype=torch.long), source="random")
    # warm-up on the same shapes (oneDNN builds its conv kernels per input shape on first use)
    calibrate(g, ds, timesteps=1, encoding="direct", readout="spikes", batch_size=samples)
    t0 = time.perf_counter()
    calibrate(g, ds, timesteps=timesteps, encoding="direct", readout="spikes", batch_size=samples)
    cal = time.perf_counter() - t0
    t0 = time.perf_counter()
    ng = to_nir(g, timesteps=timesteps, encoding="direct", readout="spikes")
    t_graph = time.perf_counter() - t0
    t0 = time.perf_counter()
    data = nir_bytes(ng)
    t_bytes = time.perf_counter() - t0
    return {"calib_seconds": cal, "calib_samples": samples, "calib_timesteps": timesteps,
            "calib_sample_steps_per_s": samples * timesteps / cal,
            "nir_to_nir_seconds": t_graph, "nir_bytes_seconds": t_bytes,
            "nir_export_seconds": t_graph + t_bytes, "nir_file_bytes": len(data)}


def _sub(job: dict[str, Any]) -> dict[str, Any]:
    """Run ``job`` in a fresh interpreter (one measurement per process)."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    p = subprocess.run([sys.executable, "-m", "benchmarks.speed", "--worker", json.dumps(job)],
                       capture_output=True, text=True, env=env, cwd=root, check=False)
    if p.returncode != 0:
        raise RuntimeError(f"worker {job} failed:\n{p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- driver


def _slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Least-squares slope of log(y) on log(x)."""
    return float(np.polyfit(np.log(xs), np.log(ys), 1)[0])


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description="slamp-deploy speed and scale benchmark")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--widths", nargs="+", type=float, default=list(WIDTHS))
    ap.add_argument("--quick", action="store_true", help="the two smallest models, 3 reps")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--calib-samples", type=int, default=16)
    ap.add_argument("--calib-timesteps", type=int, default=4)
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--name", default="speed")
    ap.add_argument("--no-plot", action="store_true")
    ap.add_argument("--render", type=Path, metavar="JSON",
                    help="print the markdown tables of an existing results file and exit")
    return ap.parse_args(argv)


def _measure_width(w: float, reps: int, ops: tuple[str, ...], args: argparse.Namespace,
                   advance: Callable[[], None]) -> dict[str, Any]:
    """One model width's row: times, extra memory per op, calibration/export, and ratios."""
    n = n_weights(vgg_snn(w))
    row: dict[str, Any] = {"model": f"vgg16-snn x{w:g}", "width": w, "weights": n,
                           "weight_bytes": 4 * n}
    tm = _sub({"kind": "time", "width": w, "reps": reps})
    advance()
    row.update({f"t_{k}": v for k, v in tm["seconds"].items()})
    row["proposed_counts_identical"] = tm["proposed_counts_identical"]
    for op in ops:
        mem = _sub({"kind": "memory", "width": w, "op": op})
        row[f"mem_{op}"] = mem["extra_bytes"]
        row["mem_method"] = mem["method"]
        advance()
    row.update(_sub({"kind": "calib_export", "width": w, "samples": args.calib_samples,
                     "timesteps": args.calib_timesteps}))
    advance()
    row["ratio_slamp_vs_global_unstructured"] = row["t_slamp"] / row[
        "t_global_unstructured"]
    row["ratio_slamp_vs_sort"] = row["t_slamp"] / row["t_sort"]
    row["ratio_slamp_masks_vs_global_unstructured"] = row["t_slamp+masks"] / row[
        "t_global_unstructured"]
    row["ratio_proposed_vs_global_unstructured"] = row["t_proposed"] / row[
        "t_global_unstructured"]
    row["ratio_proposed_vs_sort"] = row["t_proposed"] / row["t_sort"]
    row["mem_slamp_x_weight_bytes"] = row["mem_slamp"] / row["weight_bytes"]
    row["mem_proposed_x_weight_bytes"] = row["mem_proposed"] / row["weight_bytes"]
    return row


def _growth(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Log-log slopes of each op's time over the weight count (empty below two models)."""
    growth = {}
    if len(rows) >= 2:
        xs = [r["weights"] for r in rows]
        for k in ("sort", "global_unstructured", "slamp", "slamp+masks", "proposed"):
            growth[k] = _slope(xs, [r[f"t_{k}"] for r in rows])
        growth["n_log_n_reference"] = _slope(xs, [x * math.log(x) for x in xs])
    return growth


def _write_results(args: argparse.Namespace, result: dict[str, Any],
                   rows: list[dict[str, Any]]) -> list[Path]:
    """Write the results JSON and CSV (and the plot unless --no-plot); the paths written."""
    args.out.mkdir(parents=True, exist_ok=True)
    js = args.out / f"{args.name}.json"
    js.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    cs = args.out / f"{args.name}.csv"
    with cs.open("w", newline="") as f:
        keys = [k for k in rows[0] if k != "all_seconds"]
        wr = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
        wr.writeheader()
        for r in rows:
            wr.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
    files = [js, cs]
    if not args.no_plot:
        files.append(plot(args.out / f"{args.name}.png", rows))
    return files


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = _parse_args(argv)
    if args.render:
        md = render_markdown(json.loads(args.render.read_text()))
        print(md)
        return {"markdown": md}
    if args.worker:
        job = json.loads(args.worker)
        res = calib_export(job["width"], job["samples"], job["timesteps"]) \
            if job["kind"] == "calib_export" else worker(job)
        print(json.dumps(res))
        return res
    widths = args.widths[:2] if args.quick else args.widths
    reps = 3 if args.quick else args.reps

    from rich.console import Console
    from rich.progress import Progress

    from .quality import environment

    ops = ("sort", "global_unstructured", "slamp", "slamp+masks", "proposed")
    rows: list[dict[str, Any]] = []
    profile: dict[str, Any] = {}
    t_start = time.perf_counter()
    with Progress(transient=True) as prog:
        bar = prog.add_task("speed", total=len(widths) * (len(ops) + 2) + 1)
        for w in widths:
            rows.append(_measure_width(w, reps, ops, args, lambda: prog.advance(bar)))
        pw = 1.0 if 1.0 in widths else widths[-1]
        profile = _sub({"kind": "profile", "width": pw})
        profile["model"] = f"vgg16-snn x{pw:g}"
        prog.advance(bar)
    growth = _growth(rows)
    meta = {"environment": environment(), "sparsity": SPARSITY, "reps": reps,
            "statistic": "median of interleaved repetitions, one process per model",
            "wall_seconds": round(time.perf_counter() - t_start, 1),
            "goals": {"slamp_vs_global_unstructured": 0.5, "slamp_vs_sort": 1.5,
                      "extra_memory_x_weight_bytes": 3.0}}
    result = {"meta": meta, "rows": rows, "loglog_slopes": growth, "profile": profile}
    files = _write_results(args, result, rows)
    print_table(Console(width=160), rows, growth, profile)
    print("wrote " + ", ".join(map(str, files)))
    return result


def plot(path: Path, rows: list[dict[str, Any]]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = [r["weights"] for r in rows]
    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4.5))
    for k, style in (("sort", "k--"), ("global_unstructured", "C1-o"), ("slamp", "C0-o"),
                     ("slamp+masks", "C0:s"), ("proposed", "C2-^")):
        a.loglog(xs, [r[f"t_{k}"] for r in rows], style, label=k)
    a.set_xlabel("prunable weights")
    a.set_ylabel("seconds (median)")
    a.set_title("scoring + allocation time")
    a.grid(alpha=0.3, which="both")
    a.legend(fontsize=8)
    for k, style in (("sort", "k--"), ("global_unstructured", "C1-o"), ("slamp", "C0-o"),
                     ("proposed", "C2-^")):
        b.loglog(xs, [max(r[f"mem_{k}"], 1) / r["weight_bytes"] for r in rows], style, label=k)
    b.axhline(3.0, color="r", lw=1, ls=":", label="goal 3x")
    b.set_xlabel("prunable weights")
    b.set_ylabel("peak extra memory / weight bytes")
    b.set_title("peak extra memory")
    b.grid(alpha=0.3, which="both")
    b.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def print_table(con: Any, rows: list[dict[str, Any]], growth: dict[str, float],
                profile: dict[str, Any]) -> None:
    from rich.table import Table

    t = Table(title=f"Scoring + allocation at sparsity {SPARSITY} (seconds, median; ratios from "
                    f"the same process)")
    for c in ("model", "weights", "sort", "global_unstr.", "slamp", "slamp+masks", "proposed",
              "slamp/GU", "slamp/sort", "prop./GU", "prop./sort", "same counts"):
        t.add_column(c, justify="right")
    for r in rows:
        t.add_row(r["model"], f"{r['weights'] / 1e6:.1f}M", f"{r['t_sort']:.3f}",
                  f"{r['t_global_unstructured']:.3f}", f"{r['t_slamp']:.3f}",
                  f"{r['t_slamp+masks']:.3f}", f"{r['t_proposed']:.3f}",
                  f"{r['ratio_slamp_vs_global_unstructured']:.2f}",
                  f"{r['ratio_slamp_vs_sort']:.2f}",
                  f"{r['ratio_proposed_vs_global_unstructured']:.2f}",
                  f"{r['ratio_proposed_vs_sort']:.2f}", str(r["proposed_counts_identical"]))
    con.print(t)
    t = Table(title="Peak extra memory (x weight bytes) / calibration / NIR export")
    for c in ("model", "weight MB", "sort", "global_unstr.", "slamp", "slamp+masks", "proposed",
              "calib samples*T/s", "NIR export s", "NIR MB"):
        t.add_column(c, justify="right")
    for r in rows:
        wb = r["weight_bytes"]
        t.add_row(r["model"], f"{wb / 2**20:.1f}",
                  *[f"{r[f'mem_{k}'] / wb:.2f}" for k in ("sort", "global_unstructured", "slamp",
                                                          "slamp+masks", "proposed")],
                  f"{r['calib_sample_steps_per_s']:.1f}", f"{r['nir_export_seconds']:.3f}",
                  f"{r['nir_file_bytes'] / 2**20:.1f}")
    con.print(t)
    if growth:
        con.print("log-log slope of time vs weights: " + ", ".join(
            f"{k} {v:.2f}" for k, v in growth.items()))
    if profile:
        t = Table(title=f"Where allocate('slamp') spends its time ({profile['model']}, cProfile "
                        f"tottime, total {profile['total']:.3f} s)")
        for c in ("function", "calls", "tottime s", "share"):
            t.add_column(c, justify="right")
        for p in profile["profile"][:10]:
            t.add_row(p["function"], str(p["calls"]), f"{p['tottime']:.3f}",
                      f"{p['tottime'] / profile['total']:.0%}")
        con.print(t)


def render_markdown(result: dict[str, Any]) -> str:
    """Markdown tables of a speed results JSON (what docs/benchmarks.md shows)."""
    rows, growth, prof = result["rows"], result["loglog_slopes"], result["profile"]
    g = result["meta"]["goals"]
    out = [f"**Scoring + allocation at sparsity {result['meta']['sparsity']}** (seconds, "
           f"{result['meta']['statistic']}; goals: slamp <= {g['slamp_vs_global_unstructured']}x "
           f"global_unstructured and <= {g['slamp_vs_sort']}x the sort)", "",
           "| model | weights | sort | global_unstructured | slamp | slamp + masks | proposed | "
           "slamp / GU | slamp / sort | proposed / GU | proposed / sort | same counts |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        out.append(
            f"| {r['model']} | {r['weights'] / 1e6:.1f}M | {r['t_sort']:.3f} | "
            f"{r['t_global_unstructured']:.3f} | {r['t_slamp']:.3f} | {r['t_slamp+masks']:.3f} | "
            f"{r['t_proposed']:.3f} | {r['ratio_slamp_vs_global_unstructured']:.2f} | "
            f"{r['ratio_slamp_vs_sort']:.2f} | {r['ratio_proposed_vs_global_unstructured']:.2f} | "
            f"{r['ratio_proposed_vs_sort']:.2f} | {r['proposed_counts_identical']} |")
    out += ["", f"**Peak extra memory** (x the weights' bytes; goal <= "
                f"{g['extra_memory_x_weight_bytes']}x; {rows[0]['mem_method']}), "
                "**calibration throughput and NIR export**", "",
            "| model | weight MB | sort | global_unstructured | slamp | slamp + masks | proposed | "
            "calibration (samples x T / s) | NIR export s (to_nir + nir_bytes) | NIR file MB |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        wb = r["weight_bytes"]
        out.append(f"| {r['model']} | {wb / 2**20:.1f} | " + " | ".join(
            f"{r[f'mem_{k}'] / wb:.2f}" for k in ("sort", "global_unstructured", "slamp",
                                                  "slamp+masks", "proposed"))
            + f" | {r['calib_sample_steps_per_s']:.1f} | {r['nir_export_seconds']:.3f} | "
              f"{r['nir_file_bytes'] / 2**20:.1f} |")
    if growth:
        out += ["", "**Growth** (least-squares slope of log time on log weights; N log N over "
                    f"this range has slope {growth['n_log_n_reference']:.2f}): " + ", ".join(
                        f"{k} {v:.2f}" for k, v in growth.items() if k != "n_log_n_reference")]
    if prof:
        out += ["", f"**Where `allocate('slamp')` spends its time** ({prof['model']}, cProfile "
                    f"tottime, total {prof['total']:.2f} s; time inside a Python function is its "
                    "tensor arithmetic and indexing)", "",
                "| function | calls | tottime s | share |", "|---|---|---|---|"]
        for p in prof["profile"][:10]:
            out.append(f"| `{p['function']}` | {p['calls']} | {p['tottime']:.3f} | "
                       f"{p['tottime'] / prof['total']:.0%} |")
    return "\n".join(out)


if __name__ == "__main__":
    main()
