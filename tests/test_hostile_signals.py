"""Signals and a concurrent run, in real processes: Ctrl-C (SIGINT) or a kill (SIGTERM) before,
during and after the output swap, and a second run into the same ``--out``. Each test stops the
run at its moment with the test-only pause hook (``SLAMP_DEPLOY_TEST_PAUSE=POINT:FLAGFILE``: the
run creates FLAGFILE at POINT and waits until the test deletes it), so none can pass by luck.

Asserted each time: the exit code, one ``error:`` line that says what is on disk, ``--out``
present at every check (the earlier output byte-identical, or the new one whole), and no
temporary folder or lock left beside it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from slamp_deploy.pipeline.outputs import MARKER, PAUSE_ENV

pytestmark = pytest.mark.slow

MODEL = textwrap.dedent('''
    import snntorch as snn
    from torch import nn

    def build():
        return nn.Sequential(
            nn.Linear(64, 16), snn.Leaky(beta=0.8, init_hidden=True),
            nn.Linear(16, 10), snn.Leaky(beta=0.9, init_hidden=True, output=True))
''')


@pytest.fixture
def setup(tmp_path: Path) -> dict[str, Path]:
    (tmp_path / "m.py").write_text(MODEL)
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x=rng.random((80, 64), dtype=np.float32),
             y=np.arange(80) % 10)
    out = tmp_path / "out"
    out.mkdir()
    (out / MARKER).write_text("earlier\n")
    (out / "report.json").write_text('{"earlier": true}\n')
    return {"dir": tmp_path, "out": out}


def _argv(s: dict[str, Path]) -> list[str]:
    d = s["dir"]
    return [sys.executable, "-m", "slamp_deploy", "--model", f"{d / 'm.py'}:build", "--data",
            str(d / "d.npz"), "--timesteps", "2", "--epochs", "0", "--no-lava", "--target",
            "truenorth", "--calib-samples", "16", "--verify-samples", "2", "--out",
            str(s["out"])]


def _start(s: dict[str, Path], point: str | None) -> tuple[subprocess.Popen, Path]:
    flag = s["dir"] / f"flag-{point}"
    env = dict(os.environ)
    if point:
        env[PAUSE_ENV] = f"{point}:{flag}"
    # a suite started in the background (`make test &`, nohup) inherits SIGINT ignored, and the
    # CLI rightly keeps it so: the run under test gets the default disposition back
    proc = subprocess.Popen(_argv(s), cwd=s["dir"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=_default_sigint)
    return proc, flag


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _wait_for(flag: Path, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 240
    while not flag.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the run never reached its pause point"
        time.sleep(0.05)


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


def _leftovers(s: dict[str, Path]) -> list[str]:
    return sorted(p.name for p in s["dir"].iterdir() if p.name.startswith(".out"))


def _finish(proc: subprocess.Popen) -> tuple[int, str]:
    _, err = proc.communicate(timeout=240)
    return proc.returncode, err


def _error_line(err: str) -> str:
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize(("sig", "code", "name"), [(signal.SIGINT, 130, "SIGINT"),
                                                   (signal.SIGTERM, 143, "SIGTERM")])
def test_a_signal_before_the_swap_keeps_the_earlier_output(setup, sig, code, name) -> None:
    """The new outputs are written into the temporary folder; the signal comes now."""
    earlier = _snapshot(setup["out"])
    proc, flag = _start(setup, "written")
    _wait_for(flag, proc)
    assert any(n.startswith(".out.tmp-") for n in _leftovers(setup))  # the moment is real
    proc.send_signal(sig)
    time.sleep(0.3)
    flag.unlink()
    rc, err = _finish(proc)
    assert rc == code, err
    assert _error_line(err) == f"error: interrupted ({name}); --out {setup['out']} holds the " \
                               f"earlier output, unchanged"
    assert _snapshot(setup["out"]) == earlier
    assert _leftovers(setup) == []


@pytest.mark.parametrize(("sig", "code", "name"), [(signal.SIGINT, 130, "SIGINT"),
                                                   (signal.SIGTERM, 143, "SIGTERM")])
def test_a_signal_during_the_swap_is_held_until_the_new_output_is_whole(setup, sig, code,
                                                                        name) -> None:
    """The swap has exchanged the folders (the earlier output now sits in the temporary one);
    the signal waits until the swap is done, and the message says the new output is there."""
    proc, flag = _start(setup, "swapped")
    _wait_for(flag, proc)
    assert (setup["out"] / "report.md").is_file()  # --out is never absent: the new one is in
    proc.send_signal(sig)
    time.sleep(0.3)
    assert proc.poll() is None  # held back during the swap
    flag.unlink()
    rc, err = _finish(proc)
    assert rc == code, err
    assert _error_line(err) == f"error: interrupted ({name}); --out {setup['out']} holds this " \
                               f"run's new outputs (written before the interrupt)"
    assert {"report.json", "report.md", "pruned.pt", MARKER} <= set(_snapshot(setup["out"]))
    assert '"earlier"' not in (setup["out"] / "report.json").read_text()
    assert _leftovers(setup) == []


def test_a_second_run_into_the_same_out_fails_naming_the_first(setup) -> None:
    earlier = _snapshot(setup["out"])
    first, flag = _start(setup, "locked")
    _wait_for(flag, first)
    second = subprocess.run(_argv(setup), cwd=setup["dir"], capture_output=True, text=True,
                            timeout=240)
    assert second.returncode == 1, second.stderr
    assert _error_line(second.stderr) == (
        f"error: --out {setup['out']}: another slamp-deploy run (pid {first.pid}) is writing "
        f"into it (lock {setup['dir'] / '.out.lock'}); wait for it to finish or choose another "
        f"--out")
    assert _snapshot(setup["out"]) == earlier  # the second run touched nothing
    flag.unlink()
    rc, err = _finish(first)
    assert rc == 0, err
    assert '"earlier"' not in (setup["out"] / "report.json").read_text()
    assert _leftovers(setup) == []


def test_a_model_file_running_argparse_at_import_exits_1_in_one_line(setup) -> None:
    (setup["dir"] / "cli_model.py").write_text(
        "import argparse\np = argparse.ArgumentParser()\np.add_argument('--depth', type=int, "
        "required=True)\nargs = p.parse_args()\n" + MODEL)
    argv = _argv(setup)
    argv[argv.index("--model") + 1] = f"{setup['dir'] / 'cli_model.py'}:build"
    earlier = _snapshot(setup["out"])
    res = subprocess.run(argv, cwd=setup["dir"], capture_output=True, text=True, timeout=240)
    assert res.returncode == 1 and res.stdout == "", res
    line = _error_line(res.stderr)
    assert "cli_model.py called sys.exit(2) after printing" in line, line
    assert "the following arguments are required: --depth" in line, line
    assert _snapshot(setup["out"]) == earlier
