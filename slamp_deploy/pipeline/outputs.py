"""The run's output folder: report.json, report.md, pruned.pt and the other files the stages
produced, written into a temporary folder beside it and swapped in at the end.

The swap replaces ``--out`` whole, so :func:`check_out_dir` refuses, before any work starts, an
``--out`` that is not ours to replace: a file, the working folder or one above it, or a folder
holding anything but an earlier slamp-deploy output (recognised by the marker file every output
carries, or, for outputs older than the marker, by its report.json), or a path that cannot be
written (too long, unwritable, on a kernel file system such as /proc).

:func:`write_outputs` swaps the new folder in with one atomic exchange (two renames undone on
failure where the system has none) while SIGINT and SIGTERM are held back, so ``--out`` is never
absent and never half-written; :func:`out_lock` keeps a second run out of the same ``--out``;
:func:`on_disk` tells the CLI what an interrupted run left. :func:`test_pause` lets the tests
stop a run at a chosen moment to aim a signal or a second run at it.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import glob
import json
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path

import torch

from slamp_deploy.errors import UsageError
from slamp_deploy.model.graph import SpikingGraph
from slamp_deploy.report.markdown import render_markdown
from slamp_deploy.report.model import SCHEMA, RunReport, report_json

__all__ = ["MARKER", "PAUSE_ENV", "check_out_dir", "on_disk", "out_lock", "test_pause",
           "write_outputs"]

#: written into every output folder, so a later run knows the folder is one it may replace
MARKER = ".slamp-deploy-output"


def check_out_dir(out: str) -> None:
    """Refuse an ``--out`` the run must not replace; call it before any work starts.

    Raises:
        UsageError: ``out`` is empty, a file, the working folder or above it, sits under a file,
            or is a folder holding files slamp-deploy did not write.
    """
    if not out.strip():
        raise UsageError("--out '': name a folder for the outputs (default slamp-out)")
    path = Path(out).expanduser().resolve()
    cwd = Path.cwd().resolve()
    if path == cwd or path in cwd.parents:
        raise UsageError(f"--out {out}: is the working folder (or above it), which the run would "
                         f"replace whole; name a new folder, e.g. --out slamp-out")
    _check_length(out, path)
    parent = next((p for p in path.parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise UsageError(f"--out {out}: {parent} is a file, so no folder can be made under it; "
                         f"choose another --out")
    if parent is not None:
        _check_writable(out, parent)
    if not path.exists():
        return
    if not path.is_dir():
        raise UsageError(f"--out {out}: is a file, not a folder; choose another --out (the run "
                         f"would replace it)")
    if not _is_ours(path):
        names = sorted(p.name for p in path.iterdir())[:3]
        raise UsageError(f"--out {out}: the folder holds files slamp-deploy did not write "
                         f"({', '.join(names)}); choose another folder or empty it")
    if not os.access(path, os.W_OK | os.X_OK):
        raise UsageError(f"--out {out}: the earlier output is not writable, so it cannot be "
                         f"replaced; fix its permissions or choose another --out")


#: file systems of the kernel's own (process, device and control files): nothing is written there
_SPECIAL_FS = frozenset({"proc", "sysfs", "devtmpfs", "devpts", "cgroup", "cgroup2", "debugfs",
                         "tracefs", "securityfs", "pstore", "bpf", "configfs", "fusectl",
                         "mqueue", "hugetlbfs", "efivarfs", "binfmt_misc", "autofs", "nsfs"})


def _check_length(out: str, path: Path) -> None:
    """Names the file system cannot hold (255 bytes a name, 4095 a path on Linux)."""
    longest = max((len(os.fsencode(part)) for part in path.parts), default=0)
    if longest > 255 or len(os.fsencode(str(path))) > 4095:
        raise UsageError(f"--out {out[:60]}...: the path is too long for the file system "
                         f"(a name of {longest} bytes; at most 255 a name, 4095 in all); "
                         f"choose a shorter --out")


def _check_writable(out: str, parent: Path) -> None:
    """The nearest existing folder of ``--out`` must take new folders: a writable, ordinary
    file system (not /proc, /sys, /dev, nor mounted read-only)."""
    fs = _fs_type(parent)
    if fs in _SPECIAL_FS:
        raise UsageError(f"--out {out}: {parent} is on the kernel's {fs} file system, where no "
                         f"outputs can be written; choose a folder on a disk")
    try:
        read_only = bool(os.statvfs(parent).f_flag & os.ST_RDONLY)
    except OSError:
        read_only = False
    if read_only or not os.access(parent, os.W_OK | os.X_OK):
        why = "is on a read-only file system" if read_only else "is not writable"
        raise UsageError(f"--out {out}: {parent} {why}; choose a folder you can write to")


def _fs_type(path: Path) -> str | None:
    """The file system type of ``path`` from /proc/self/mounts (None where unknown)."""
    try:
        lines = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return None
    best, fs = "", None
    target = str(path.resolve())
    for line in lines:
        fields = line.split()
        if len(fields) < 3:
            continue
        mount = fields[1].replace("\\040", " ")
        inside = target == mount or target.startswith(mount.rstrip("/") + "/")
        if inside and len(mount) >= len(best):
            best, fs = mount, fields[2]
    return fs


def _is_ours(folder: Path) -> bool:
    """Empty, or an earlier slamp-deploy output (the marker, or an older output's report.json)."""
    if (folder / MARKER).is_file() or not any(folder.iterdir()):
        return True
    try:
        return json.loads((folder / "report.json").read_text()).get("schema") == SCHEMA
    except (OSError, ValueError, AttributeError):
        return False


def write_outputs(out: Path, report: RunReport, graph: SpikingGraph,
                  extra: Mapping[str, bytes] | None = None) -> Path:
    """Write report.json, report.md and pruned.pt into ``out``, replacing it atomically.

    Everything is written into a temporary folder beside ``out`` and swapped into place at the
    end (:func:`_swap_in`), with SIGINT and SIGTERM held back during the swap, so ``out`` is
    never absent and a failure or an interrupt at any point leaves either the earlier ``out``
    or the new one, and no temporary folder.
    """
    out = out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    made: list[Path] = []  # the temporary folder, once made (a signal may come at any point)
    try:
        with _signals_deferred():
            made.append(Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-{os.getpid()}-",
                                              dir=out.parent)))
        tmp = made[0]
        umask = os.umask(0)
        os.umask(umask)
        tmp.chmod(0o777 & ~umask)  # mkdtemp's 0700 would make the output private to its writer
        _write_into(tmp, report, graph, extra or {})
        test_pause("written")
        with _signals_deferred():
            _swap_in(tmp, out)  # now tmp holds the earlier output, if there was one
            _COMPLETED.add(out)
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:  # before the swap, or the swap undone: tmp holds the new files
        with _signals_deferred():
            for folder in made:
                shutil.rmtree(folder, ignore_errors=True)
        raise
    return out


#: the --out folders this process has finished writing (so an interrupt after the swap can
#: say that the new outputs are in place)
_COMPLETED: set[Path] = set()

_RENAME_EXCHANGE = 2  # linux/fs.h: swap two paths atomically


def _exchange(a: Path, b: Path) -> bool:
    """Swap ``a`` and ``b`` in one step (Linux renameat2 RENAME_EXCHANGE); False where the
    system or the filesystem cannot."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd = -100
    rc = fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), _RENAME_EXCHANGE)
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def _swap_in(tmp: Path, out: Path) -> None:
    """Make ``tmp`` the folder ``out``; afterwards ``tmp`` holds the earlier output (if any),
    for the caller to delete. ``out`` exists at every moment it existed before."""
    if not os.path.lexists(out):
        os.rename(tmp, out)
        return
    if _exchange(tmp, out):
        test_pause("swapped")
        return
    # no atomic exchange here: two renames, undone if the second fails (signals are held)
    old = out.with_name(f".{out.name}.old-{os.getpid()}")
    os.rename(out, old)
    try:
        test_pause("swapped")
        os.rename(tmp, out)
    except BaseException:
        os.rename(old, out)
        raise
    os.rename(old, tmp)


@contextmanager
def _signals_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back until the block ends, then deliver them (main thread only:
    Python handles signals there, and signal.signal may only be called there)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []

    def hold(signum: int, frame: object) -> None:
        pending.append(signum)

    held = (signal.SIGINT, signal.SIGTERM)
    before = {s: signal.signal(s, hold) for s in held}
    try:
        yield
    finally:
        for s, h in before.items():
            signal.signal(s, h)
        for s in dict.fromkeys(pending):
            signal.raise_signal(s)


def on_disk(out: str) -> str:
    """What ``--out`` holds now, for the message after an interrupt or a failure."""
    path = Path(out).expanduser().resolve()
    if path in _COMPLETED:
        return f"--out {out} holds this run's new outputs (written before the interrupt)"
    if path.is_dir() and (path / MARKER).is_file():
        return f"--out {out} holds the earlier output, unchanged"
    if path.exists():
        return f"--out {out} was left as it was"
    return f"--out {out} was not created"


#: tests only: "POINT:FLAGFILE" makes the run stop at POINT (locked, written, swapped), create
#: FLAGFILE, and wait until the test deletes it, so signals and a second run can be aimed at
#: that moment deterministically
PAUSE_ENV = "SLAMP_DEPLOY_TEST_PAUSE"


def test_pause(point: str) -> None:
    """Wait at ``point`` while the flag file named by :data:`PAUSE_ENV` exists (tests only)."""
    spec = os.environ.get(PAUSE_ENV, "")
    want, _, flag = spec.partition(":")
    if want != point or not flag:
        return
    Path(flag).write_text(f"{os.getpid()}\n")
    deadline = time.monotonic() + 60
    while os.path.exists(flag) and time.monotonic() < deadline:
        time.sleep(0.01)


test_pause.__test__ = False  # type: ignore[attr-defined]  # not a pytest test


@contextmanager
def out_lock(out: str) -> Iterator[None]:
    """Hold ``.<name>.lock`` beside ``--out`` for the run, so a second run into the same folder
    fails at once naming this one (an flock: the system drops it when a process dies)."""
    path = Path(out).expanduser().resolve()
    if path in _HELD:  # this process holds it already (the CLI locks before the library does)
        yield
        return
    made = [p for p in (path.parent, *path.parent.parents) if not p.exists()]
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = path.with_name(f".{path.name}.lock")
    fd = _acquire(lock, out)
    _HELD.add(path)
    try:
        _clean_stale(path)
        test_pause("locked")
        yield
    finally:
        _HELD.discard(path)
        with _signals_deferred():
            lock.unlink(missing_ok=True)
            os.close(fd)
            for p in made:  # folders made for the lock only, when nothing was written
                with suppress(OSError):
                    p.rmdir()


#: the --out folders whose lock this process holds
_HELD: set[Path] = set()


def _acquire(lock: Path, out: str) -> int:
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise UsageError(f"--out {out}: another slamp-deploy run (pid {pid}) is writing "
                             f"into it (lock {lock}); wait for it to finish or choose another "
                             f"--out") from None
        try:
            same = os.stat(lock).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:  # not a file the previous holder unlinked while we waited for it
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            return fd
        os.close(fd)


def _clean_stale(out: Path) -> None:
    """Remove the temporary folders of earlier runs into ``out`` that were killed outright
    (SIGKILL, power loss); we hold the lock, so none of them is in use."""
    for p in out.parent.glob(f".{glob.escape(out.name)}.*-*"):
        kind = p.name[len(out.name) + 2:].split("-", 1)[0]
        if kind in ("tmp", "old") and p.is_dir():
            shutil.rmtree(p, ignore_errors=True)


def _write_into(folder: Path, report: RunReport, graph: SpikingGraph,
                extra: Mapping[str, bytes]) -> None:
    (folder / "report.json").write_text(report_json(report))
    (folder / "report.md").write_text(render_markdown(report))
    (folder / MARKER).write_text("This folder is a slamp-deploy output: a later run with the same "
                                 "--out replaces it whole.\n")
    state = {k: v.detach().cpu() for k, v in graph.model.state_dict().items()
             if k.rsplit(".", 1)[-1] not in ("mem", "syn")}
    torch.save(state, folder / "pruned.pt")
    for name, data in extra.items():
        dest = folder / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(data)
