"""Data sets, encoders and the seeded split into retraining, calibration and evaluation parts.

A data set is a pair of arrays: ``x`` holds either static samples ``[N, ...]`` (encoded over time
by :func:`encode`) or ready-made sequences ``[T, N, ...]`` (spikes or currents), and ``y`` holds
integer labels ``[N]``. Which one ``x`` is follows from ``y``: ``x.shape[0] == len(y)`` is static,
``x.shape[1] == len(y)`` is a sequence.
"""

from __future__ import annotations

import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from slamp_deploy.errors import DataError, UsageError

ENCODINGS = ("direct", "rate", "latency")


@dataclass(frozen=True, eq=False)
class Dataset:
    """Samples and labels, with where they came from."""

    x: torch.Tensor  # [N, ...] static, or [T, N, ...] when ``sequence``
    y: torch.Tensor  # [N] int64 labels
    source: str  # human-readable origin, e.g. "sklearn digits" or a file path
    sequence: bool = False  # True: x is [T, N, ...]
    indices: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    def __post_init__(self) -> None:
        if self.indices.size == 0:
            object.__setattr__(self, "indices", np.arange(len(self.y), dtype=np.int64))

    def __len__(self) -> int:
        return int(self.y.shape[0])

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """Per-sample shape of one time step (no batch, no time)."""
        return tuple(self.x.shape[2:] if self.sequence else self.x.shape[1:])

    @property
    def n_classes(self) -> int:
        return int(self.y.max().item()) + 1 if len(self) else 0

    def subset(self, idx: np.ndarray) -> Dataset:
        """The samples at positions ``idx`` (positions into this set, not original indices)."""
        t = torch.as_tensor(idx, dtype=torch.long)
        x = self.x[:, t] if self.sequence else self.x[t]
        return Dataset(x=x, y=self.y[t], source=self.source, sequence=self.sequence,
                       indices=self.indices[idx])

    def batches(self, batch_size: int, *, shuffle: bool = False,
                generator: torch.Generator | None = None):
        """Yield ``(x, y)`` mini-batches; ``x`` keeps this set's layout."""
        n = len(self)
        order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
        for start in range(0, n, batch_size):
            t = order[start:start + batch_size]
            yield (self.x[:, t] if self.sequence else self.x[t]), self.y[t]


def load_digits() -> Dataset:
    """scikit-learn's 8x8 handwritten digits (ships inside scikit-learn; no download).

    Returns 1797 images ``[N, 1, 8, 8]`` scaled to [0, 1] and labels 0-9.
    """
    from sklearn.datasets import load_digits as _load

    d = _load()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(d.target, dtype=torch.long)
    return Dataset(x=x, y=y, source="scikit-learn digits (8x8, 1797 samples)")


def load_npz(path: str | Path) -> Dataset:
    """Load arrays ``x`` and ``y`` from an ``.npz`` file, checking them on the way."""
    p = Path(path)
    if p.is_dir():
        raise DataError(f"{p}: is a folder, not a data file; pass an .npz file with arrays 'x' "
                        f"and 'y' (or cifar10:PATH etc. for a data set folder)")
    if not p.is_file():
        raise DataError(f"{p}: data file not found; pass an .npz file with arrays 'x' and 'y'")
    if p.stat().st_size == 0:
        raise DataError(f"{p}: the file is empty; save the data with numpy.savez(path, x=..., "
                        f"y=...)")
    try:
        with p.open("rb") as fh:
            zipped = fh.read(4) == b"PK\x03\x04"
        if not zipped:  # np.load would read an .npy or a pickle here: neither is an .npz
            raise ValueError("not a zip archive (an .npz is one)")
        with np.load(p, allow_pickle=False) as f:
            missing = [k for k in ("x", "y") if k not in f.files]
            if missing:
                raise DataError(f"{p}: missing array(s) {', '.join(missing)}; the file has "
                                f"{', '.join(f.files) or 'no arrays'} (need 'x' and 'y')")
            x, y = np.asarray(f["x"]), np.asarray(f["y"])
    except DataError:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error, KeyError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DataError(f"{p}: cannot read as .npz ({first}; truncated or not an .npz?); save "
                        f"with numpy.savez(path, x=..., y=...)") from None
    return from_arrays(x, y, source=str(p))


def from_arrays(x: np.ndarray, y: np.ndarray, *, source: str) -> Dataset:
    """Validate raw arrays and decide whether ``x`` is static or a ``[T, N, ...]`` sequence."""
    if y.ndim != 1:
        raise DataError(f"{source}: labels 'y' must be 1-D [N], got shape {tuple(y.shape)}")
    if len(y) == 0:
        raise DataError(f"{source}: the data set is empty (0 labels)")
    if not np.issubdtype(y.dtype, np.integer):
        if np.issubdtype(y.dtype, np.floating) and np.all(np.mod(y, 1) == 0):
            y = y.astype(np.int64)
        else:
            raise DataError(f"{source}: labels 'y' must be integers, got dtype {y.dtype}")
    if y.min() < 0:
        raise DataError(f"{source}: label {int(y.min())} is negative; labels must be 0..C-1")
    if not np.issubdtype(x.dtype, np.number) and x.dtype != np.bool_:
        raise DataError(f"{source}: 'x' must be numeric, got dtype {x.dtype}")
    xf = x.astype(np.float32)
    if not np.all(np.isfinite(xf)):
        raise DataError(f"{source}: 'x' contains NaN or inf values")
    n = len(y)
    if x.ndim >= 2 and x.shape[0] == n:
        sequence = False
    elif x.ndim >= 3 and x.shape[1] == n:
        sequence = True
    else:
        raise DataError(f"{source}: 'x' has shape {tuple(x.shape)} but there are {n} labels; "
                        f"expected [N, ...] static samples or [T, N, ...] sequences with N = {n}")
    return Dataset(x=torch.from_numpy(xf), y=torch.from_numpy(y.astype(np.int64)),
                   source=source, sequence=sequence)


def check_labels(ds: Dataset, n_outputs: int) -> None:
    """Refuse labels the model's output layer cannot represent."""
    top = int(ds.y.max().item())
    if top >= n_outputs:
        raise DataError(f"{ds.source}: label {top} is out of range for a model with {n_outputs} "
                        f"outputs; labels must be 0..{n_outputs - 1}")


@dataclass(frozen=True)
class Split:
    """Which samples each stage uses (original indices into the loaded data set)."""

    train: Dataset
    calib: Dataset
    eval: Dataset
    seed: int
    split_seed: int = 0

    def describe(self) -> dict[str, object]:
        return {
            "seed": self.seed,
            "split_seed": self.split_seed,
            "retrain": {"count": len(self.train), "source": self.train.source},
            "calibration": {"count": len(self.calib), "source": self.calib.source,
                            "indices": self.calib.indices.tolist()},
            "evaluation": {"count": len(self.eval), "source": self.eval.source,
                           "indices": self.eval.indices.tolist()},
        }


def split(ds: Dataset, *, eval_fraction: float = 0.2, calib_samples: int = 256, seed: int = 0,
          eval_ds: Dataset | None = None, split_seed: int = 0) -> Split:
    """Seeded split: evaluation part (unless ``eval_ds``), retraining part, calibration subset.

    The evaluation part depends on ``split_seed`` only, so runs with different ``seed`` are
    scored on the same held-out samples (and a model trained on one split is never evaluated on
    its own training data). The calibration set is a ``seed``-dependent subset of the retraining
    part, never of the evaluation part.
    """
    if not 0.0 < eval_fraction < 1.0 and eval_ds is None:
        raise UsageError(f"--eval-fraction {eval_fraction}: must be in (0, 1)")
    if calib_samples < 1:
        raise UsageError(f"--calib-samples {calib_samples}: must be at least 1")
    rng = np.random.default_rng(split_seed)
    perm = rng.permutation(len(ds))
    if eval_ds is None:
        n_eval = max(1, round(len(ds) * eval_fraction))
        if n_eval >= len(ds):
            raise DataError(f"{ds.source}: {len(ds)} samples are too few to split off an "
                            f"evaluation part; pass --eval-data or more samples")
        ev, tr = ds.subset(np.sort(perm[:n_eval])), ds.subset(np.sort(perm[n_eval:]))
    else:
        ev, tr = eval_ds, ds.subset(np.sort(perm))
    cperm = np.random.default_rng(seed + 1).permutation(len(tr))
    calib = tr.subset(np.sort(cperm[:min(calib_samples, len(tr))]))
    return Split(train=tr, calib=calib, eval=ev, seed=seed, split_seed=split_seed)


def encode(x: torch.Tensor, timesteps: int, encoding: str, *, sequence: bool = False,
           generator: torch.Generator | None = None) -> torch.Tensor:
    """Turn a batch into a ``[T, N, ...]`` input sequence.

    ``direct`` repeats the analog sample at every step; ``rate`` draws Bernoulli spikes with
    probability ``clamp(x, 0, 1)`` per step (seeded through ``generator``); ``latency`` emits one
    spike per input at step ``round((1 - clamp(x, 0, 1)) * (T - 1))`` (brighter fires earlier,
    zero never fires). Sequences pass through.
    """
    if sequence:
        return x
    if encoding == "direct":
        return x.unsqueeze(0).expand(timesteps, *x.shape)
    if encoding == "rate":
        p = x.clamp(0.0, 1.0).unsqueeze(0).expand(timesteps, *x.shape)
        if generator is not None and generator.device != x.device:
            # a CPU generator (seeded the same everywhere) draws on the CPU, then moves
            return torch.bernoulli(p.cpu(), generator=generator).to(x.device)
        return torch.bernoulli(p, generator=generator)
    if encoding == "latency":
        xc = x.clamp(0.0, 1.0)
        when = torch.round((1.0 - xc) * (timesteps - 1)).long()
        steps = torch.arange(timesteps, device=x.device).view(-1, *([1] * x.dim()))
        return ((steps == when.unsqueeze(0)) & (xc > 0).unsqueeze(0)).to(x.dtype)
    raise UsageError(f"--encoding {encoding!r}: unknown; choose one of {', '.join(ENCODINGS)}")
