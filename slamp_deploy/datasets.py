"""The paper's data sets from local copies: CIFAR-10, CIFAR-100 and CIFAR10-DVS.

``--data`` names a data set with a spec string (see :func:`parse_spec` and docs/datasets.md)::

    cifar10:PATH                  CIFAR-10, "python version" folder (or its parent)
    cifar100:PATH?labels=coarse   CIFAR-100, the 20 coarse labels instead of the 100 fine ones
    cifar10-dvs:PATH?frames=10&bin=count&size=48
    data.npz                      arrays x and y (slamp_deploy.data.load_npz)

:func:`load_data_spec` returns ``(pool, test)``: the pool is what the pipeline splits into its
retraining and calibration parts, and ``test`` is the data set's fixed test set (None for .npz),
which the pipeline uses as its evaluation part. Nothing is ever downloaded: a missing or
incomplete folder is a one-line :class:`~slamp_deploy.errors.DataError` that names the missing
file and the expected layout.
"""

from __future__ import annotations

import os
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from slamp_deploy.data import Dataset, load_npz
from slamp_deploy.errors import DataError, UsageError

#: per-channel mean and standard deviation of the 50,000 training images, in [0, 1] units,
#: over every pixel (``train.reshape(-1, 3).mean(0)``, ``.std(0)``). CIFAR-10: the values
#: commonly used with torchvision (0.2470 is the true std; the often-copied 0.2023, 0.1994,
#: 0.2010 are per-image stds). CIFAR-100: as in weiaicunzai/pytorch-cifar100, rounded to 4 places.
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)

CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR10_FILES = ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5",
                 "test_batch")
CIFAR100_FOLDER = "cifar-100-python"
CIFAR100_FILES = ("train", "test")
LABEL_SETS = ("fine", "coarse")
NORMS = ("mean-std", "none")

#: CIFAR10-DVS as tonic's ``CIFAR10DVS`` lays it out: ``CIFAR10DVS/<class>/*.aedat4``.
DVS_FOLDER = "CIFAR10DVS"
DVS_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
               "truck")
DVS_SENSOR = 128  # the DVS128 sensor: 128 x 128 pixels, two polarities
DVS_SIZES = (128, 64, 48)
BINNINGS = ("count", "time")
#: the fixed split: the first 90% of each class's recordings (in natural file-name order) train,
#: the rest test; 900 + 100 per class for the full 1000-recording set.
DVS_TRAIN_FRACTION = 0.9
DVS_DEFAULT_FRAMES = 10

KINDS = ("cifar10", "cifar100", "cifar10-dvs")
_COMMON = ("max", "max_test")
OPTIONS: dict[str, tuple[str, ...]] = {
    "cifar10": (*_COMMON, "norm"),
    "cifar100": (*_COMMON, "norm", "labels"),
    "cifar10-dvs": (*_COMMON, "frames", "bin", "size"),
    "npz": ("max",),
}


@dataclass(frozen=True)
class DataSpec:
    """A parsed ``--data`` value: which kind of data set, where, and its options (raw strings)."""

    kind: str  # one of KINDS, or "npz"
    path: Path
    options: dict[str, str] = field(default_factory=dict)


def parse_spec(spec: str) -> DataSpec:
    """Parse ``KIND:PATH[?key=value&key=value]`` or ``PATH.npz[?max=N]``.

    An existing file is always taken as an .npz path as a whole (even with ':' or '?' in its
    name). Options are split off at the last '?'; each key must be one of :data:`OPTIONS` for the
    kind.
    """
    if not spec:
        raise UsageError("--data '': empty; pass cifar10:PATH, cifar100:PATH, cifar10-dvs:PATH "
                         "or an .npz file")
    try:
        if Path(spec).is_file():
            return DataSpec(kind="npz", path=Path(spec))
    except OSError:  # e.g. a name too long for the file system: parse it as a spec
        pass
    m = re.match(r"^([A-Za-z][A-Za-z0-9_-]+):(?![\\/]{2})(.*)$", spec)
    if m and len(m.group(1)) > 1:  # one letter is a Windows drive, "x://" a URL (refused below)
        kind, rest = m.group(1).lower(), m.group(2)
        if kind not in KINDS:
            raise UsageError(f"--data {spec!r}: unknown data set {kind!r}; use one of "
                             f"{', '.join(k + ':PATH' for k in KINDS)} or an .npz file")
    elif re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", spec):
        raise UsageError(f"--data {spec!r}: URLs are not read (nothing is downloaded); pass a "
                         f"local folder or file")
    else:
        kind, rest = "npz", spec
    path_s, _, query = rest.rpartition("?") if "?" in rest else (rest, "", "")
    if not path_s:
        raise UsageError(f"--data {spec!r}: no path; write {kind}:PATH")
    options: dict[str, str] = {}
    for item in filter(None, query.split("&")):
        key, eq, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not eq or not value.strip():
            raise UsageError(f"--data {spec!r}: option {item!r} needs a value (key=value)")
        if key not in OPTIONS[kind]:
            raise UsageError(f"--data {spec!r}: unknown option {key!r} for {kind}; valid: "
                             f"{', '.join(OPTIONS[kind])}")
        if key in options:
            raise UsageError(f"--data {spec!r}: option {key!r} given twice")
        options[key] = value.strip()
    return DataSpec(kind=kind, path=Path(os.path.expanduser(path_s)), options=options)


def load_data_spec(spec: str, *, labels: str | None = None, normalize: bool | None = None,
                   frames: int | None = None, bin_by: str | None = None,
                   size: int | None = None, max_samples: int | None = None,
                   max_test_samples: int | None = None) -> tuple[Dataset, Dataset | None]:
    """Load the data set ``spec`` names: ``(training/calibration pool, fixed test set or None)``.

    Keyword arguments are the same settings as the spec's options (``labels``, ``norm``,
    ``frames``, ``bin``, ``size``, ``max``, ``max_test``); None leaves the spec's value (or the
    default). A keyword that does not apply to the spec's kind is ignored (so a caller may pass
    ``frames=cfg.timesteps`` whatever the data), one that contradicts the spec is a UsageError.

    Raises:
        UsageError: a malformed spec or option value.
        DataError: a missing, incomplete or unreadable data set (names the file and the layout).
    """
    ds = parse_spec(spec)
    o = ds.options

    def pick(key: str, given: Any, conv: Any, default: Any) -> Any:
        from_spec = _convert(spec, key, o[key], conv) if key in o else None
        if given is not None and from_spec is not None and given != from_spec:
            raise UsageError(f"--data {spec!r}: {key}={o[key]} contradicts {given!r} given "
                             f"elsewhere (e.g. --timesteps); drop one of them")
        if given is not None:
            return given
        return from_spec if from_spec is not None else default

    norm = pick("norm", None if normalize is None else ("mean-std" if normalize else "none"),
                NORMS, "mean-std")
    max_n = pick("max", max_samples, int, None)
    max_t = pick("max_test", max_test_samples, int, None)
    for name, v in (("max", max_n), ("max_test", max_t)):
        if v is not None and v < 1:
            raise UsageError(f"--data {spec!r}: {name}={v}: must be at least 1")
    if ds.kind == "npz":
        data = load_npz(ds.path)
        return (data if max_n is None else data.subset(balanced_subset(data.y, max_n))), None
    if ds.kind in ("cifar10", "cifar100"):
        kw = {"normalize": norm == "mean-std", "max_samples": max_n, "max_test_samples": max_t}
        if ds.kind == "cifar10":
            return load_cifar10(ds.path, **kw)
        return load_cifar100(ds.path, labels=pick("labels", labels, LABEL_SETS, "fine"), **kw)
    n_frames = pick("frames", frames, int, DVS_DEFAULT_FRAMES)
    if n_frames < 1:
        raise UsageError(f"--data {spec!r}: frames={n_frames}: must be at least 1")
    return load_cifar10_dvs(ds.path, frames=n_frames, bin_by=pick("bin", bin_by, BINNINGS, "count"),
                            size=pick("size", size, int, DVS_SENSOR), max_samples=max_n,
                            max_test_samples=max_t)


def _convert(spec: str, key: str, value: str, conv: Any) -> Any:
    if isinstance(conv, tuple):
        if value not in conv:
            raise UsageError(f"--data {spec!r}: {key}={value}: choose one of {', '.join(conv)}")
        return value
    try:
        return conv(value)
    except ValueError:
        raise UsageError(f"--data {spec!r}: {key}={value}: expected an integer") from None


def balanced_subset(y: torch.Tensor | np.ndarray, n: int, *, seed: int = 0) -> np.ndarray:
    """Sorted positions of ``n`` samples, as even over the classes as the data allows.

    Seeded and deterministic: classes take turns in a seeded order, each giving its samples in a
    seeded order, so the same ``n`` always gives the same slice and a larger ``n`` contains it.
    """
    labels = np.asarray(y)
    if n >= len(labels):
        return np.arange(len(labels))
    perm = np.random.default_rng(seed).permutation(len(labels))
    rank = np.empty(len(labels), dtype=np.int64)  # position of each sample within its class
    for c in np.unique(labels):
        members = perm[labels[perm] == c]
        rank[members] = np.arange(len(members))
    order = np.lexsort((np.argsort(perm), rank))  # by rank within class, then by seeded order
    return np.sort(order[:n])


# --------------------------------------------------------------------------------------------
# CIFAR-10 / CIFAR-100 ("python version")


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles only what the CIFAR files hold (dicts, lists, bytes, numpy arrays): a pickle
    naming any other class or function is refused instead of run."""

    _ALLOWED = frozenset({("numpy.core.multiarray", "_reconstruct"),
                          ("numpy._core.multiarray", "_reconstruct"),
                          ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
                          ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")})

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        if module.endswith("multiarray"):
            core = getattr(np, "_core", None) or np.core
            return getattr(core.multiarray, name)
        return super().find_class(module, name)


def _read_pickle(path: Path, keys: tuple[bytes, ...], what: str) -> dict[bytes, Any]:
    try:
        with open(path, "rb") as f:
            d = _ArrayUnpickler(f, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
            ImportError, IndexError, OSError) as e:
        raise DataError(f"{path}: cannot read as a {what} python-version pickle "
                        f"({type(e).__name__}: {e}); re-extract the original archive") from e
    if not isinstance(d, dict):
        raise DataError(f"{path}: holds a {type(d).__name__}, not the dict of a {what} "
                        f"python-version batch; re-extract the original archive")
    missing = [k for k in keys if k not in d]
    if missing:
        raise DataError(f"{path}: missing key(s) {', '.join(map(repr, missing))}; a {what} "
                        f"python-version batch has {', '.join(map(repr, keys))}")
    return d


def _images(path: Path, d: dict[bytes, Any]) -> np.ndarray:
    data = np.asarray(d[b"data"])
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or data.dtype != np.uint8:
        raise DataError(f"{path}: b'data' is {data.dtype} {tuple(data.shape)}; expected uint8 "
                        f"[N, 3072] (32x32 RGB, channel planes)")
    return data.reshape(-1, 3, 32, 32)


def _labels(path: Path, d: dict[bytes, Any], key: bytes, n: int, n_classes: int) -> np.ndarray:
    y = np.asarray(d[key], dtype=np.int64)
    if y.shape != (n,):
        raise DataError(f"{path}: {key!r} has {y.size} labels for {n} images")
    if n and (y.min() < 0 or y.max() >= n_classes):
        raise DataError(f"{path}: {key!r} holds labels outside 0..{n_classes - 1}")
    return y


def _find_folder(path: Path, folder: str, files: tuple[str, ...], what: str,
                 spec: str) -> Path:
    """``path`` itself if it holds the data files, else ``path/folder``; missing files named."""
    layout = f"{folder}/{{{','.join(files)}}}"
    if path.is_file():
        hint = (" (an archive: extract it first with `tar xzf`)"
                if path.name.endswith((".tar.gz", ".tgz")) else "")
        raise DataError(f"{path}: is a file{hint}; {spec}:PATH takes the folder {folder} "
                        f"or its parent (expected layout: PATH/{layout})")
    if not path.is_dir():
        raise DataError(f"{path}: no such folder; {spec}:PATH takes the extracted {what} "
                        f"folder {folder} or its parent (expected layout: PATH/{layout})")
    here = path if any((path / f).is_file() for f in files) else path / folder
    if not here.is_dir():
        other = {CIFAR10_FOLDER: "cifar10", CIFAR100_FOLDER: "cifar100"}
        for other_folder, other_kind in other.items():
            if other_folder != folder and (
                    (path / other_folder).is_dir() or path.name == other_folder):
                raise DataError(f"{path}: holds {other_folder}, not {what}; use "
                                f"--data {other_kind}:{path}")
        raise DataError(f"{path}: no {folder} folder here and no {what} batch files; expected "
                        f"PATH/{layout} (the extracted python version)")
    for f in files:
        if not (here / f).is_file():
            raise DataError(f"{here}: missing {f}; expected {layout} (the extracted python "
                            f"version of {what})")
    return here


def _finish(x: np.ndarray, y: np.ndarray, source: str, mean: tuple[float, ...],
            std: tuple[float, ...], normalize: bool, cap: int | None) -> Dataset:
    """Scale (and normalise) the images; ``indices`` are positions in the whole part."""
    keep = np.arange(len(y))
    if cap is not None and cap < len(y):
        keep = balanced_subset(y, cap)
        x, y = x[keep], y[keep]
        source = f"{source[:-1]}, balanced slice of {len(y)})"
    xf = x.astype(np.float32) / np.float32(255.0)
    if normalize:
        xf -= np.asarray(mean, dtype=np.float32).reshape(1, 3, 1, 1)
        xf /= np.asarray(std, dtype=np.float32).reshape(1, 3, 1, 1)
    return Dataset(x=torch.from_numpy(xf), y=torch.from_numpy(y.astype(np.int64)), source=source,
                   indices=keep.astype(np.int64))


def load_cifar10(path: str | Path, *, normalize: bool = True, max_samples: int | None = None,
                 max_test_samples: int | None = None) -> tuple[Dataset, Dataset]:
    """CIFAR-10 from ``cifar-10-batches-py`` (``path`` is that folder or its parent).

    Returns ``(train, test)``: images ``[N, 3, 32, 32]`` float32, scaled to [0, 1] and then, with
    ``normalize``, shifted and scaled per channel by :data:`CIFAR10_MEAN` / :data:`CIFAR10_STD`;
    labels 0-9. ``max_samples`` / ``max_test_samples`` keep a class-balanced seeded slice.
    """
    here = _find_folder(Path(path), CIFAR10_FOLDER, CIFAR10_FILES, "CIFAR-10", "cifar10")
    xs, ys = [], []
    for f in CIFAR10_FILES:
        d = _read_pickle(here / f, (b"data", b"labels"), "CIFAR-10")
        x = _images(here / f, d)
        xs.append(x)
        ys.append(_labels(here / f, d, b"labels", len(x), 10))
    norm = "" if normalize else ", not normalised"
    train = _finish(np.concatenate(xs[:5]), np.concatenate(ys[:5]),
                    f"CIFAR-10 train ({here}{norm})", CIFAR10_MEAN, CIFAR10_STD, normalize,
                    max_samples)
    test = _finish(xs[5], ys[5], f"CIFAR-10 test ({here}{norm})", CIFAR10_MEAN, CIFAR10_STD,
                   normalize, max_test_samples)
    return train, test


def load_cifar100(path: str | Path, *, labels: str = "fine", normalize: bool = True,
                  max_samples: int | None = None,
                  max_test_samples: int | None = None) -> tuple[Dataset, Dataset]:
    """CIFAR-100 from ``cifar-100-python`` (``path`` is that folder or its parent).

    Like :func:`load_cifar10`, with :data:`CIFAR100_MEAN` / :data:`CIFAR100_STD`; ``labels`` is
    ``"fine"`` (100 classes, the default) or ``"coarse"`` (the 20 superclasses).
    """
    if labels not in LABEL_SETS:
        raise UsageError(f"labels={labels!r}: choose one of {', '.join(LABEL_SETS)}")
    here = _find_folder(Path(path), CIFAR100_FOLDER, CIFAR100_FILES, "CIFAR-100", "cifar100")
    key = b"fine_labels" if labels == "fine" else b"coarse_labels"
    n_classes = 100 if labels == "fine" else 20
    norm = "" if normalize else ", not normalised"
    out = []
    for f in CIFAR100_FILES:
        d = _read_pickle(here / f, (b"data", b"fine_labels", b"coarse_labels"), "CIFAR-100")
        x = _images(here / f, d)
        out.append(_finish(x, _labels(here / f, d, key, len(x), n_classes),
                           f"CIFAR-100 {f} ({here}, {labels} labels{norm})", CIFAR100_MEAN,
                           CIFAR100_STD, normalize,
                           max_samples if f == "train" else max_test_samples))
    return out[0], out[1]


# --------------------------------------------------------------------------------------------
# CIFAR10-DVS (tonic)


def _natural_key(name: str) -> list[object]:
    """``rec_2`` before ``rec_10``: digit runs compare as numbers."""
    return [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.split(r"(\d+)", name)]


def _find_dvs_folder(path: Path) -> Path:
    """The folder holding the ten class folders: ``path`` itself or ``path/CIFAR10DVS``."""
    layout = (f"PATH/{DVS_FOLDER}/<class>/*.aedat4 for the classes {', '.join(DVS_CLASSES)} "
              f"(tonic's CIFAR10DVS layout; PATH may also be the {DVS_FOLDER} folder itself)")
    if not path.is_dir():
        raise DataError(f"{path}: no such folder; expected {layout}")
    here = path
    if not any((path / c).is_dir() or (path / f"{c}.zip").is_file() for c in DVS_CLASSES):
        here = path / DVS_FOLDER
        if not here.is_dir():
            zipped = " (CIFAR10DVS.zip is here: extract it, then each class zip)" if (
                path / "CIFAR10DVS.zip").is_file() else ""
            raise DataError(f"{path}: no {DVS_FOLDER} folder and no class folders{zipped}; "
                            f"expected {layout}")
    for c in DVS_CLASSES:
        if not (here / c).is_dir():
            zipped = (here / f"{c}.zip").is_file()
            hint = f" ({c}.zip is there: unzip it in place)" if zipped else ""
            raise DataError(f"{here}: missing folder {c}/{hint}; expected {layout}")
        if not any((here / c).glob("*.aedat4")):
            raise DataError(f"{here / c}: no .aedat4 recordings; expected {layout}")
    return here


def _tonic_dataset(folder: Path, transform: Any) -> Any:
    """tonic's CIFAR10DVS reading ``folder`` as it is; it cannot download.

    tonic looks in ``save_to/CIFAR10DVS`` and downloads (then extracts) when that folder lacks
    ``CIFAR10DVS.zip`` or holds fewer than 1000 .aedat4 files. This subclass points it at the
    folder :func:`_find_dvs_folder` has checked, reports the data present, and turns
    ``download`` into an error, so no code path can reach the network.
    """
    try:
        from tonic.datasets import CIFAR10DVS
    except ImportError as e:
        raise DataError(f"cifar10-dvs:{folder}: reading CIFAR10-DVS needs tonic and aedat "
                        f"({e}); install them: pip install tonic==1.7.0 aedat==2.3.0") from e

    class LocalCIFAR10DVS(CIFAR10DVS):
        def __init__(self) -> None:
            super().__init__(str(folder.parent), transform=transform)

        def _check_exists(self) -> bool:  # called after tonic set location_on_system
            self.location_on_system = str(folder)
            return True

        def download(self) -> None:
            raise DataError(f"{folder}: CIFAR10-DVS is read from local files only and is "
                            f"never downloaded; extract it into {folder}")

    try:
        return LocalCIFAR10DVS()
    except KeyError as e:  # tonic labels a recording by its folder's name
        raise DataError(f"{folder}: .aedat4 recordings in a folder named {e}, which is not a "
                        f"class; keep only {', '.join(DVS_CLASSES)} there") from e


def _dvs_split(files: list[str], targets: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Positions of the training and the test recordings: per class, in natural file-name
    order, the first :data:`DVS_TRAIN_FRACTION` train and the rest test."""
    train: list[int] = []
    test: list[int] = []
    for c in range(len(DVS_CLASSES)):
        members = sorted((i for i, t in enumerate(targets) if t == c),
                         key=lambda i: _natural_key(os.path.basename(files[i])))
        n_train = int(len(members) * DVS_TRAIN_FRACTION)
        train += members[:n_train]
        test += members[n_train:]
    return np.asarray(train, dtype=np.int64), np.asarray(test, dtype=np.int64)


def load_cifar10_dvs(path: str | Path, *, frames: int = DVS_DEFAULT_FRAMES, bin_by: str = "count",
                     size: int = DVS_SENSOR, max_samples: int | None = None,
                     max_test_samples: int | None = None) -> tuple[Dataset, Dataset]:
    """CIFAR10-DVS event recordings as ``[T, N, 2, size, size]`` float32 frame sequences.

    Read with tonic's ``CIFAR10DVS`` from the local folder (never downloaded). Each recording is
    cut into ``frames`` slices, each with the same number of events (``bin_by="count"``) or the
    same duration (``"time"``), and each slice's events are counted per pixel and polarity
    (channel 0 OFF, 1 ON; tonic's ``ToFrame``). ``size`` 64 or 48 first scales the event
    coordinates down from 128 (tonic's ``Downsample``). Returns ``(train, test)`` by the fixed
    9:1 split of :func:`_dvs_split`; ``max_samples`` / ``max_test_samples`` read only a
    class-balanced seeded slice of each.
    """
    if bin_by not in BINNINGS:
        raise UsageError(f"bin={bin_by!r}: choose one of {', '.join(BINNINGS)}")
    if size not in DVS_SIZES:
        raise UsageError(f"size={size}: choose one of {', '.join(map(str, DVS_SIZES))}")
    if frames < 1:
        raise UsageError(f"frames={frames}: must be at least 1")
    here = _find_dvs_folder(Path(path))
    from tonic import transforms as tt

    sensor = (DVS_SENSOR, DVS_SENSOR, 2)
    to_frame = tt.ToFrame(sensor_size=(size, size, 2),
                          **({"n_event_bins": frames} if bin_by == "count"
                             else {"n_time_bins": frames}))
    steps: list[Any] = [to_frame]
    if size != DVS_SENSOR:
        steps.insert(0, tt.Downsample(sensor_size=sensor, target_size=(size, size)))
    tds = _tonic_dataset(here, tt.Compose(steps))
    files, targets = list(tds.data), list(tds.targets)
    train_idx, test_idx = _dvs_split(files, targets)
    desc = f"{frames} frames by {bin_by}, {size}x{size}"
    parts = []
    for name, idx, cap in (("train", train_idx, max_samples), ("test", test_idx,
                                                               max_test_samples)):
        if len(idx) == 0:
            raise DataError(f"{here}: no {name} recordings under the 9:1 split (each class "
                            f"needs at least 2 recordings)")
        y = np.asarray([targets[i] for i in idx], dtype=np.int64)
        source = f"CIFAR10-DVS {name} ({here}, {desc})"
        if cap is not None and cap < len(idx):
            keep = balanced_subset(y, cap)
            y = y[keep]
            source = f"{source[:-1]}, balanced slice of {len(y)})"
        else:
            keep = np.arange(len(idx))
        idx = idx[keep]
        x = np.zeros((frames, len(idx), 2, size, size), dtype=np.float32)
        for j, i in enumerate(idx):
            x[:, j] = _read_recording(tds, int(i), files[i], frames, size)
        parts.append(Dataset(x=torch.from_numpy(x), y=torch.from_numpy(y), source=source,
                             sequence=True, indices=keep.astype(np.int64)))
    return parts[0], parts[1]


def _read_recording(tds: Any, i: int, file: str, frames: int, size: int) -> np.ndarray:
    try:
        f, _label = tds[i]
    except IndexError as e:  # tonic's ToFrame indexes the frame with the event coordinates
        raise DataError(f"{file}: events outside the {DVS_SENSOR}x{DVS_SENSOR} sensor ({e}); "
                        f"is this a CIFAR10-DVS recording?") from e
    except Exception as e:  # aedat's decoder raises RuntimeError/Exception on bad files
        raise DataError(f"{file}: cannot read as an AEDAT4 event recording "
                        f"({type(e).__name__}: {e}); re-extract the original archive") from e
    f = np.asarray(f)
    if f.shape != (frames, 2, size, size):
        raise DataError(f"{file}: binned to shape {f.shape}, expected {(frames, 2, size, size)}; "
                        f"are the event coordinates within the 128x128 sensor?")
    return f
