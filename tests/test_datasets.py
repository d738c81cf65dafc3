"""CIFAR-10 / CIFAR-100 / CIFAR10-DVS loaders on tiny files in the real on-disk formats.

The writers below produce the formats bit for bit as the loaders meet them in the wild: the
CIFAR "python version" pickles (dicts with bytes keys b"data", b"labels" / b"fine_labels",
b"coarse_labels"), and CIFAR10-DVS as tonic's CIFAR10DVS finds it after extraction:
``CIFAR10DVS/<class>/*.aedat4``, each an uncompressed AEDAT4 file (magic line, size-prefixed
IOHE flatbuffer header with the DV XML description of one 128x128 EVTS stream, then
size-prefixed EVTS event packets) that tonic reads with the aedat package.
"""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import flatbuffers
import numpy as np
import pytest
import torch
from slamp_deploy.examples import cifar_vgg

from slamp_deploy import datasets as D
from slamp_deploy.data import split
from slamp_deploy.errors import DataError, UsageError
from slamp_deploy.model.graph import trace
from slamp_deploy.model.runner import run

# ----------------------------------------------------------------------------- writers


def _pickle(path: Path, d: dict[bytes, object]) -> None:
    with open(path, "wb") as f:
        pickle.dump(d, f, protocol=2)


def _images(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)


def write_cifar10(root: Path, per_batch: int = 4, n_test: int = 6, seed: int = 0) -> Path:
    """root/cifar-10-batches-py with data_batch_1..5, test_batch, batches.meta."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for i in range(1, 6):
        _pickle(folder / f"data_batch_{i}", {
            b"batch_label": f"training batch {i} of 5".encode(), b"data": _images(rng, per_batch),
            b"labels": [int(v) for v in rng.integers(0, 10, per_batch)],
            b"filenames": [b"x.png"] * per_batch})
    _pickle(folder / "test_batch", {
        b"batch_label": b"testing batch 1 of 1", b"data": _images(rng, n_test),
        b"labels": [int(v) for v in rng.integers(0, 10, n_test)],
        b"filenames": [b"x.png"] * n_test})
    _pickle(folder / "batches.meta", {b"label_names": [b"airplane"] * 10,
                                      b"num_cases_per_batch": per_batch, b"num_vis": 3072})
    return folder


def write_cifar100(root: Path, n_train: int = 12, n_test: int = 5, seed: int = 1) -> Path:
    """root/cifar-100-python with train, test, meta."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    for name, n in (("train", n_train), ("test", n_test)):
        fine = rng.integers(0, 100, n)
        _pickle(folder / name, {
            b"filenames": [b"x.png"] * n, b"batch_label": name.encode(),
            b"fine_labels": [int(v) for v in fine],
            b"coarse_labels": [int(v) // 5 for v in fine], b"data": _images(rng, n)})
    _pickle(folder / "meta", {b"fine_label_names": [b"apple"] * 100,
                              b"coarse_label_names": [b"fish"] * 20})
    return folder


def read_raw(path: Path) -> dict[bytes, object]:
    with open(path, "rb") as f:
        return pickle.load(f, encoding="bytes")


_DESCRIPTION = """<dv version="2.0">
    <node name="outInfo">
        <node name="0">
            <attr key="compression" type="string">NONE</attr>
            <attr key="originalModuleName" type="string">dvsnoisefilter</attr>
            <attr key="originalOutputName" type="string">events</attr>
            <attr key="typeDescription" type="string">Array of events (polarity ON/OFF).</attr>
            <attr key="typeIdentifier" type="string">EVTS</attr>
            <node name="info">
                <attr key="sizeX" type="int">128</attr>
                <attr key="sizeY" type="int">128</attr>
                <attr key="source" type="string">DVS128</attr>
            </node>
        </node>
    </node>
</dv>
"""


def _ioheader() -> bytes:
    b = flatbuffers.Builder(1024)
    desc = b.CreateString(_DESCRIPTION)
    b.StartObject(3)  # table Ioheader {compression; file_data_position = -1; description}
    b.PrependUOffsetTRelativeSlot(2, desc, 0)
    b.FinishSizePrefixed(b.EndObject(), b"IOHE")
    return bytes(b.Output())


def _event_packet(t: np.ndarray, x: np.ndarray, y: np.ndarray, p: np.ndarray) -> bytes:
    b = flatbuffers.Builder(64 + 16 * len(t))
    b.StartVector(16, len(t), 8)  # struct Event {t: int64; x: int16; y: int16; on: bool} = 16 B
    for i in reversed(range(len(t))):
        b.Prep(8, 16)
        b.Pad(3)
        b.PrependBool(bool(p[i]))
        b.PrependInt16(int(y[i]))
        b.PrependInt16(int(x[i]))
        b.PrependInt64(int(t[i]))
    vec = b.EndVector()
    b.StartObject(1)  # table EventPacket {elements: [Event]}
    b.PrependUOffsetTRelativeSlot(0, vec, 0)
    b.FinishSizePrefixed(b.EndObject(), b"EVTS")
    payload = bytes(b.Output())
    return (0).to_bytes(4, "little") + len(payload).to_bytes(4, "little") + payload


def write_aedat4(path: Path, t, x, y, p, packet: int = 5) -> None:
    """One AEDAT4 recording, its events spread over packets of ``packet`` events."""
    t, x, y, p = (np.asarray(a) for a in (t, x, y, p))
    body = b"".join(_event_packet(t[i:i + packet], x[i:i + packet], y[i:i + packet],
                                  p[i:i + packet]) for i in range(0, len(t), packet))
    path.write_bytes(b"#!AER-DAT4.0\r\n" + _ioheader() + body)


def recording(c: int, i: int) -> tuple[np.ndarray, ...]:
    """12 events of recording ``i`` of class ``c``: 8 quick ones in the first 800 us, then 4 at
    the end of a 10 ms recording. Pixel coordinates encode (class, recording), polarity
    alternates; event 0 is at the sensor's far corner (127, 127)."""
    t = np.array([0, 100, 200, 300, 400, 500, 600, 700, 9000, 9300, 9600, 10000]) + 1000 * i
    x = np.array([127, 4, 8, 12, 16, 20, 24, 28, 100, 101, 102, 103])
    y = np.array([127, 8 + c, 8 + c, 8 + c, 9 + c, 9 + c, 9 + c, 9 + c, 50, 50, 50, 50 + i])
    p = np.arange(12) % 2
    return t, x, y, p


def write_cifar10_dvs(root: Path, per_class: tuple[int, ...] = (1, 2, 10),
                      classes: tuple[str, ...] = D.DVS_CLASSES) -> Path:
    """root/CIFAR10DVS/<class>/cifar10_<class>_<i>.aedat4 for the recording numbers given
    (1, 2, 10: natural order 1 < 2 < 10, text order 1 < 10 < 2). Written in a shuffled order so
    nothing depends on the order the file system lists them."""
    folder = root / "CIFAR10DVS"
    order = [(c, i) for c in range(len(classes)) for i in per_class]
    np.random.default_rng(0).shuffle(order)
    for c, i in order:
        (folder / classes[c]).mkdir(parents=True, exist_ok=True)
        write_aedat4(folder / classes[c] / f"cifar10_{classes[c]}_{i}.aedat4", *recording(c, i))
    return folder


@pytest.fixture(autouse=True)
def one_thread():
    """The machine is shared: one intra-op thread (restored after each test) keeps the VGG runs
    quick and the timings steady."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def cifar10_root(tmp_path: Path) -> Path:
    write_cifar10(tmp_path)
    return tmp_path


@pytest.fixture
def dvs_root(tmp_path: Path) -> Path:
    write_cifar10_dvs(tmp_path)
    return tmp_path


@pytest.fixture
def no_download(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every way tonic could fetch or unpack data raises; returns the attempted calls."""
    import urllib.request

    import tonic.dataset
    import tonic.datasets.cifar10dvs
    import tonic.download_utils

    calls: list[str] = []

    def refuse(name: str):
        def f(*a: object, **k: object) -> None:
            calls.append(name)
            raise AssertionError(f"{name} called: the loader must never download")
        return f

    monkeypatch.setattr(tonic.dataset.Dataset, "download", refuse("Dataset.download"))
    monkeypatch.setattr(tonic.dataset, "download_and_extract_archive",
                        refuse("download_and_extract_archive"))
    monkeypatch.setattr(tonic.download_utils, "download_url", refuse("download_url"))
    monkeypatch.setattr(tonic.datasets.cifar10dvs, "extract_archive", refuse("extract_archive"))
    monkeypatch.setattr(urllib.request, "urlopen", refuse("urlopen"))
    return calls


# ----------------------------------------------------------------------------- spec syntax


def test_parse_spec_forms(tmp_path: Path) -> None:
    s = D.parse_spec("cifar100:/data/c100?labels=coarse&max=50&max-test=10")
    assert (s.kind, s.path, s.options) == ("cifar100", Path("/data/c100"),
                                           {"labels": "coarse", "max": "50", "max_test": "10"})
    assert D.parse_spec("CIFAR10-DVS:rel/dir").kind == "cifar10-dvs"
    assert D.parse_spec("some/file.npz").kind == "npz"
    assert D.parse_spec("C:/data/x.npz").kind == "npz"  # a drive letter is not a kind
    weird = tmp_path / "a:b?c.npz"  # an existing file is a path as a whole
    weird.write_bytes(b"")
    assert D.parse_spec(str(weird)) == D.DataSpec(kind="npz", path=weird)


@pytest.mark.parametrize(("spec", "match"), [
    ("imagenet:/x", r"unknown data set 'imagenet'; use one of cifar10:PATH"),
    ("cifar10:/x?labels=coarse", r"unknown option 'labels' for cifar10; valid: max, max_test"),
    ("cifar10:/x?max", r"option 'max' needs a value"),
    ("cifar10:/x?max=1&max=2", r"'max' given twice"),
    ("cifar10:", r"no path; write cifar10:PATH"),
    ("https://example.org/cifar.tar.gz", r"URLs are not read \(nothing is downloaded\)"),
    ("", r"empty"),
])
def test_parse_spec_errors(spec: str, match: str) -> None:
    with pytest.raises(UsageError, match=match):
        D.parse_spec(spec)


@pytest.mark.parametrize(("spec", "match"), [
    ("cifar10:{p}?max=ten", r"max=ten: expected an integer"),
    ("cifar10:{p}?max=0", r"max=0: must be at least 1"),
    ("cifar10:{p}?norm=zscore", r"norm=zscore: choose one of mean-std, none"),
    ("cifar100:{p}?labels=medium", r"labels=medium: choose one of fine, coarse"),
])
def test_option_values_refused(cifar10_root: Path, spec: str, match: str) -> None:
    write_cifar100(cifar10_root)
    with pytest.raises(UsageError, match=match):
        D.load_data_spec(spec.format(p=cifar10_root))


# ----------------------------------------------------------------------------- CIFAR


def test_cifar10_shapes_labels_normalisation(cifar10_root: Path) -> None:
    folder = cifar10_root / "cifar-10-batches-py"
    pool, test = D.load_data_spec(f"cifar10:{cifar10_root}")
    assert test is not None
    assert pool.x.shape == (20, 3, 32, 32) and test.x.shape == (6, 3, 32, 32)
    assert pool.x.dtype == torch.float32 and pool.y.dtype == torch.int64 and not pool.sequence
    raw = [read_raw(folder / f"data_batch_{i}") for i in range(1, 6)]
    assert pool.y.tolist() == [v for r in raw for v in r[b"labels"]]
    assert test.y.tolist() == read_raw(folder / "test_batch")[b"labels"]
    # the 3072 bytes are the R, G and B planes of a row-major 32x32 image
    img = raw[0][b"data"][1]
    mean = torch.tensor(D.CIFAR10_MEAN).view(3, 1, 1)
    std = torch.tensor(D.CIFAR10_STD).view(3, 1, 1)
    unnorm = pool.x[1] * std + mean
    assert torch.allclose(unnorm[0, 0, :5], torch.tensor(img[:5] / 255.0, dtype=torch.float32),
                          atol=1e-6)
    assert float(unnorm[2, 31, 31]) == pytest.approx(img[3071] / 255.0, abs=1e-6)
    # norm=none keeps [0, 1] (for rate / latency encoding), exactly raw / 255
    plain, _ = D.load_data_spec(f"cifar10:{cifar10_root}?norm=none")
    expect = np.concatenate([r[b"data"] for r in raw]).reshape(-1, 3, 32, 32) / np.float32(255)
    assert torch.equal(plain.x, torch.from_numpy(expect.astype(np.float32)))
    assert float(plain.x.min()) >= 0.0 and float(plain.x.max()) <= 1.0
    assert torch.allclose((plain.x - mean) / std, pool.x, atol=1e-5)
    # PATH may be the folder itself; the keyword is the same setting as the option
    same, _ = D.load_data_spec(f"cifar10:{folder}", normalize=False)
    assert torch.equal(same.x, plain.x)
    assert "CIFAR-10 train" in pool.source and str(folder) in pool.source


def test_cifar10_real_normalisation_constants_on_uniform_data() -> None:
    """The constants are per-channel [0, 1] statistics, applied as (x - mean) / std."""
    x = np.full((1, 3, 32, 32), 255, dtype=np.uint8)
    ds = D._finish(x, np.zeros(1, dtype=np.int64), "t (x)", D.CIFAR10_MEAN, D.CIFAR10_STD,
                   True, None)
    want = [(1 - m) / s for m, s in zip(D.CIFAR10_MEAN, D.CIFAR10_STD, strict=True)]
    assert ds.x[0, :, 0, 0].tolist() == pytest.approx(want, rel=1e-6)


def test_cifar100_fine_and_coarse(tmp_path: Path) -> None:
    folder = write_cifar100(tmp_path)
    fine, test = D.load_data_spec(f"cifar100:{tmp_path}")
    raw = read_raw(folder / "train")
    assert fine.x.shape == (12, 3, 32, 32) and test is not None and len(test) == 5
    assert fine.y.tolist() == raw[b"fine_labels"] and "fine labels" in fine.source
    coarse, ctest = D.load_data_spec(f"cifar100:{folder}?labels=coarse")
    assert coarse.y.tolist() == raw[b"coarse_labels"] and "coarse labels" in coarse.source
    assert ctest is not None and ctest.y.tolist() == read_raw(folder / "test")[b"coarse_labels"]
    kw, _ = D.load_data_spec(f"cifar100:{folder}", labels="coarse")
    assert torch.equal(kw.y, coarse.y)
    with pytest.raises(UsageError, match=r"labels=fine contradicts 'coarse'"):
        D.load_data_spec(f"cifar100:{folder}?labels=fine", labels="coarse")
    mean = torch.tensor(D.CIFAR100_MEAN).view(3, 1, 1)
    std = torch.tensor(D.CIFAR100_STD).view(3, 1, 1)
    img = torch.tensor(raw[b"data"][0].reshape(3, 32, 32) / 255.0, dtype=torch.float32)
    assert torch.allclose(fine.x[0] * std + mean, img, atol=1e-6)


def test_balanced_slices_are_deterministic_and_nested(cifar10_root: Path) -> None:
    full, _ = D.load_data_spec(f"cifar10:{cifar10_root}")
    a, ta = D.load_data_spec(f"cifar10:{cifar10_root}?max=7&max_test=3")
    b, _ = D.load_data_spec(f"cifar10:{cifar10_root}", max_samples=7, max_test_samples=3)
    assert len(a) == 7 and ta is not None and len(ta) == 3 and "balanced slice of 7" in a.source
    assert torch.equal(a.x, b.x) and np.array_equal(a.indices, b.indices)
    # indices are positions in the whole training set, and the samples are those
    assert torch.equal(full.x[torch.as_tensor(a.indices)], a.x)
    assert np.array_equal(a.indices, np.sort(a.indices))
    bigger, _ = D.load_data_spec(f"cifar10:{cifar10_root}?max=12")
    assert set(a.indices) <= set(bigger.indices)
    # as even over the classes as the data allows
    y = np.repeat(np.arange(4), [10, 10, 10, 2])
    counts = np.bincount(y[D.balanced_subset(y, 14)], minlength=4)
    assert counts.tolist() == [4, 4, 4, 2]
    assert np.array_equal(D.balanced_subset(y, 40), np.arange(32))


def test_fixed_test_set_is_the_pipelines_evaluation_part(cifar10_root: Path) -> None:
    pool, test = D.load_data_spec(f"cifar10:{cifar10_root}")
    parts = split(pool, calib_samples=5, eval_ds=test)
    assert parts.eval is test and len(parts.train) == 20 and len(parts.calib) == 5
    assert set(parts.calib.indices) <= set(parts.train.indices)


def test_npz_delegates_to_load_npz(tmp_path: Path) -> None:
    p = tmp_path / "d.npz"
    np.savez(p, x=np.random.default_rng(0).random((30, 4)).astype(np.float32),
             y=np.arange(30) % 3)
    ds, test = D.load_data_spec(str(p))
    assert test is None and ds.x.shape == (30, 4) and ds.source == str(p)
    small, _ = D.load_data_spec(f"{p}?max=6")
    assert len(small) == 6 and np.bincount(small.y.numpy()).tolist() == [2, 2, 2]
    with pytest.raises(DataError, match=r"missing\.npz: data file not found"):
        D.load_data_spec(str(tmp_path / "missing.npz"))


# ----------------------------------------------------------------------------- CIFAR errors


def test_cifar10_missing_batch_named(cifar10_root: Path) -> None:
    (cifar10_root / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(DataError, match=r"cifar-10-batches-py: missing data_batch_3; expected "
                       r"cifar-10-batches-py/\{data_batch_1,.*,test_batch\}"):
        D.load_data_spec(f"cifar10:{cifar10_root}")


def test_cifar100_missing_test_named(tmp_path: Path) -> None:
    folder = write_cifar100(tmp_path)
    (folder / "test").unlink()
    with pytest.raises(DataError, match=r"cifar-100-python: missing test; expected "
                       r"cifar-100-python/\{train,test\}"):
        D.load_data_spec(f"cifar100:{folder}")


@pytest.mark.parametrize(("setup", "match"), [
    ("empty", r"no cifar-10-batches-py folder here and no CIFAR-10 batch files; expected "
              r"PATH/cifar-10-batches-py/\{data_batch_1"),
    ("absent", r"no such folder; cifar10:PATH takes the extracted CIFAR-10 folder"),
    ("archive", r"is a file \(an archive: extract it first with `tar xzf`\)"),
    ("cifar100", r"holds cifar-100-python, not CIFAR-10; use --data cifar100:"),
])
def test_cifar10_wrong_folder(tmp_path: Path, setup: str, match: str) -> None:
    target = tmp_path / "data"
    if setup == "empty":
        target.mkdir()
    elif setup == "archive":
        target = tmp_path / "cifar-10-python.tar.gz"
        target.write_bytes(b"\x1f\x8b")
    elif setup == "cifar100":
        write_cifar100(target)
    with pytest.raises(DataError, match=match) as e:
        D.load_data_spec(f"cifar10:{target}")
    assert "\n" not in str(e.value)


def test_cifar_bad_contents(cifar10_root: Path) -> None:
    folder = cifar10_root / "cifar-10-batches-py"
    _pickle(folder / "data_batch_2", {b"data": np.zeros((2, 3072), np.uint8), b"lbls": [0, 1]})
    with pytest.raises(DataError, match=r"data_batch_2: missing key\(s\) b'labels'"):
        D.load_data_spec(f"cifar10:{cifar10_root}")
    _pickle(folder / "data_batch_2", {b"data": np.zeros((2, 1024), np.uint8), b"labels": [0, 1]})
    with pytest.raises(DataError, match=r"data_batch_2: b'data' is uint8 \(2, 1024\); expected"):
        D.load_data_spec(f"cifar10:{cifar10_root}")
    _pickle(folder / "data_batch_2", {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]})
    with pytest.raises(DataError, match=r"data_batch_2: b'labels' holds labels outside 0\.\.9"):
        D.load_data_spec(f"cifar10:{cifar10_root}")
    (folder / "data_batch_2").write_bytes(b"not a pickle")
    with pytest.raises(DataError, match=r"data_batch_2: cannot read as a CIFAR-10 python-version"):
        D.load_data_spec(f"cifar10:{cifar10_root}")


class _Evil:
    def __reduce__(self):
        return (shutil.rmtree, ("/nonexistent-slamp-test",))


def test_cifar_pickle_with_code_is_refused_not_run(cifar10_root: Path) -> None:
    path = cifar10_root / "cifar-10-batches-py" / "data_batch_1"
    _pickle(path, {b"data": _Evil(), b"labels": []})
    with pytest.raises(DataError, match=r"refusing to load shutil\.rmtree"):
        D.load_data_spec(f"cifar10:{cifar10_root}")


# ----------------------------------------------------------------------------- CIFAR10-DVS


def test_dvs_shapes_split_and_labels(dvs_root: Path, no_download: list[str]) -> None:
    pool, test = D.load_data_spec(f"cifar10-dvs:{dvs_root}?frames=4")
    assert test is not None and no_download == []
    assert pool.sequence and test.sequence
    assert pool.x.shape == (4, 20, 2, 128, 128) and test.x.shape == (4, 10, 2, 128, 128)
    assert pool.x.dtype == torch.float32 and pool.sample_shape == (2, 128, 128)
    # 3 recordings per class: int(3 * 0.9) = 2 train, 1 test, in natural file-name order, so
    # recording 10 (the last of 1, 2, 10) is each class's test recording, never recording 2
    assert pool.y.tolist() == [c for c in range(10) for _ in range(2)]
    assert test.y.tolist() == list(range(10))
    for ds, recs in ((pool, [1, 2]), (test, [10])):
        for j, c in enumerate(ds.y.tolist()):
            i = recs[j % len(recs)]
            # the last event (index 11: ON) is at x 103, y 50 + i: it identifies the recording
            assert ds.x[:, j, 1, 50 + i, 103].sum() == 1, (c, i)
    # every event lands in exactly one frame: 12 events, 4 bins of 3
    assert pool.x.sum(dim=(0, 2, 3, 4)).tolist() == [12.0] * 20
    assert str(dvs_root / "CIFAR10DVS") in pool.source and "4 frames by count" in pool.source


def test_dvs_binning_by_count_and_by_time(dvs_root: Path) -> None:
    spec = f"cifar10-dvs:{dvs_root / 'CIFAR10DVS'}?max=1&max_test=1"
    by_count, _ = D.load_data_spec(spec + "&bin=count", frames=2)
    by_time, _ = D.load_data_spec(spec + "&bin=time", frames=2)
    # recording: 8 events in the first 800 us, 4 in the last ~1 ms of 10 ms
    assert by_count.x[:, 0].sum(dim=(1, 2, 3)).tolist() == [6.0, 6.0]
    # by time: two 5 ms bins; the first holds the 8 early events, the second the late ones but
    # the very last (t = end, excluded by tonic's half-open bins)
    assert by_time.x[:, 0].sum(dim=(1, 2, 3)).tolist() == [8.0, 3.0]
    # polarity channels: event k has polarity k % 2 -> channel 1 for odd k
    f = by_count.x[0, 0]  # events 0..5
    assert f[0, 127, 127] == 1  # event 0, OFF, at the far corner
    assert f[1, 8 + int(by_count.y[0]), 4] == 1  # event 1, ON
    assert f.sum(dim=(1, 2)).tolist() == [3.0, 3.0]


@pytest.mark.parametrize("size", [64, 48])
def test_dvs_downsampling(dvs_root: Path, size: int) -> None:
    ds, _ = D.load_data_spec(f"cifar10-dvs:{dvs_root}?size={size}&frames=1&max=10&max_test=1")
    assert ds.x.shape == (1, 10, 2, size, size)
    assert ds.x.sum(dim=(0, 2, 3, 4)).tolist() == [12.0] * 10  # no event is lost
    f = ds.x[0, 0]
    # coordinates scale by size/128 and round down: 127 -> size - 1, (4, 8 + c) -> ...
    assert f[0, size - 1, size - 1] == 1
    scale = size / 128
    c = int(ds.y[0])
    assert f[1, int((8 + c) * scale), int(4 * scale)] >= 1
    model = cifar_vgg.vgg11_dvs(size)
    assert trace(model, ds.sample_shape).input_shape == (2, size, size)


def test_dvs_is_deterministic(dvs_root: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    a, ta = D.load_data_spec(f"cifar10-dvs:{dvs_root}?frames=3&size=48")
    b, tb = D.load_data_spec(f"cifar10-dvs:{dvs_root}", frames=3, size=48)
    assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y) and torch.equal(ta.x, tb.x)
    # the same recordings written in another order (so listed in another order) load the same
    other = tmp_path_factory.mktemp("dvs_again")
    folder = other / "renamed_dvs"  # any folder name works when PATH is the folder itself
    shutil.copytree(dvs_root / "CIFAR10DVS", folder)
    c, tc = D.load_data_spec(f"cifar10-dvs:{folder}?frames=3&size=48")
    assert torch.equal(a.x, c.x) and torch.equal(ta.x, tc.x)
    assert np.array_equal(a.indices, np.arange(20))


def test_dvs_max_reads_a_balanced_slice(dvs_root: Path) -> None:
    full, _ = D.load_data_spec(f"cifar10-dvs:{dvs_root}?frames=2")
    part, test = D.load_data_spec(f"cifar10-dvs:{dvs_root}?frames=2&max=10&max_test=4")
    assert len(part) == 10 and sorted(part.y.tolist()) == list(range(10))
    assert test is not None and len(test) == 4
    assert torch.equal(full.x[:, torch.as_tensor(part.indices)], part.x)
    assert "balanced slice of 10" in part.source


def test_frames_keyword_and_spec_must_agree(dvs_root: Path) -> None:
    with pytest.raises(UsageError, match=r"frames=4 contradicts 8 given elsewhere"):
        D.load_data_spec(f"cifar10-dvs:{dvs_root}?frames=4", frames=8)
    with pytest.raises(UsageError, match=r"size=32: choose one of 128, 64, 48"):
        D.load_data_spec(f"cifar10-dvs:{dvs_root}?size=32")
    with pytest.raises(UsageError, match=r"bin=random: choose one of count, time"):
        D.load_data_spec(f"cifar10-dvs:{dvs_root}?bin=random")


def test_frames_keyword_is_ignored_for_static_data(cifar10_root: Path) -> None:
    pool, _ = D.load_data_spec(f"cifar10:{cifar10_root}", frames=8, size=48, bin_by="time")
    assert pool.x.shape == (20, 3, 32, 32)


def test_plain_tonic_would_download_but_the_loader_does_not(dvs_root: Path,
                                                            no_download: list[str]) -> None:
    """tonic's own check wants CIFAR10DVS.zip and 1000 recordings, so on a partial local copy
    it downloads; the loader's subclass never does."""
    from tonic.datasets import CIFAR10DVS

    with pytest.raises(AssertionError, match="must never download"):
        CIFAR10DVS(save_to=str(dvs_root))
    assert no_download == ["Dataset.download"]
    no_download.clear()
    pool, _ = D.load_data_spec(f"cifar10-dvs:{dvs_root}?frames=1&max=2&max_test=1")
    assert len(pool) == 2 and no_download == []
    tds = D._tonic_dataset(dvs_root / "CIFAR10DVS", None)
    assert len(tds) == 30 and no_download == []
    with pytest.raises(DataError, match=r"never downloaded"):
        tds.download()


@pytest.mark.parametrize(("setup", "match"), [
    ("no_class", r"CIFAR10DVS: missing folder cat/; expected PATH/CIFAR10DVS/<class>/\*\.aedat4 "
                 r"for the classes airplane, automobile"),
    ("zipped", r"missing folder cat/ \(cat\.zip is there: unzip it in place\)"),
    ("empty_class", r"cat: no \.aedat4 recordings; expected PATH/CIFAR10DVS/<class>"),
    ("nothing", r"no CIFAR10DVS folder and no class folders; expected PATH/CIFAR10DVS/"),
    ("outer_zip", r"\(CIFAR10DVS\.zip is here: extract it, then each class zip\)"),
    ("absent", r"no such folder; expected PATH/CIFAR10DVS/<class>/\*\.aedat4"),
    ("stray", r"\.aedat4 recordings in a folder named 'extra', which is not a class"),
    ("corrupt", r"cifar10_cat_2\.aedat4: cannot read as an AEDAT4 event recording"),
    ("off_sensor", r"cifar10_cat_2\.aedat4: events outside the 128x128 sensor"),
])
def test_dvs_wrong_or_incomplete_folder(tmp_path: Path, no_download: list[str], setup: str,
                                        match: str) -> None:
    folder = write_cifar10_dvs(tmp_path, per_class=(1, 2))
    cat = folder / "cat"
    path = tmp_path
    if setup in ("no_class", "zipped"):
        shutil.rmtree(cat)
        if setup == "zipped":
            (folder / "cat.zip").write_bytes(b"PK")
    elif setup == "empty_class":
        for f in cat.iterdir():
            f.unlink()
    elif setup in ("nothing", "outer_zip"):
        shutil.rmtree(folder)
        if setup == "outer_zip":
            (tmp_path / "CIFAR10DVS.zip").write_bytes(b"PK")
    elif setup == "absent":
        path = tmp_path / "nowhere"
    elif setup == "stray":
        (folder / "extra").mkdir()
        shutil.copy(cat / "cifar10_cat_1.aedat4", folder / "extra" / "x.aedat4")
    elif setup == "corrupt":
        (cat / "cifar10_cat_2.aedat4").write_bytes(b"#!AER-DAT4.0\r\n\x00")
    elif setup == "off_sensor":
        t, x, y, p = recording(3, 2)
        write_aedat4(cat / "cifar10_cat_2.aedat4", t, x + 200, y, p)
    with pytest.raises(DataError, match=match) as e:
        D.load_data_spec(f"cifar10-dvs:{path}?frames=2")
    assert "\n" not in str(e.value) and no_download == []


# ----------------------------------------------------------------------------- models


@pytest.mark.parametrize(("factory", "shape", "n_out"), [
    ("vgg11_cifar10", (3, 32, 32), 10), ("vgg16_cifar10", (3, 32, 32), 10),
    ("vgg11_cifar100", (3, 32, 32), 100), ("vgg16_cifar100", (3, 32, 32), 100),
    ("vgg11_dvs48", (2, 48, 48), 10), ("vgg11_dvs64", (2, 64, 64), 10),
])
def test_vgg_factories_trace_and_run(factory: str, shape: tuple[int, ...], n_out: int) -> None:
    model = getattr(cifar_vgg, factory)()
    graph = trace(model, shape)
    assert graph.n_outputs == n_out
    kinds = [op.kind for op in graph.ops]
    assert "maxpool" not in kinds and "avgpool" in kinds and "batchnorm" in kinds
    n_conv = sum(k == "conv2d" for k in kinds)
    assert n_conv == (8 if factory.startswith("vgg11") else 13) and kinds[-2:] == ["linear",
                                                                                   "leaky"]
    out = run(graph, torch.rand(2, 2, *shape))
    assert out.spikes is not None and out.spikes.shape == (2, 2, n_out)
    assert cifar_vgg.vgg11_dvs(48)[0].in_channels == 2


def test_vgg_refuses_unknown_config_and_tiny_inputs() -> None:
    with pytest.raises(ValueError, match="config 'vgg19'"):
        cifar_vgg.vgg("vgg19", n_classes=10)
    with pytest.raises(ValueError, match="size 16: too small"):
        cifar_vgg.vgg("vgg11", n_classes=10, size=16)


# ----------------------------------------------------------------------------- train.py


def _train_main():
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "examples" / "train.py"
    spec = importlib.util.spec_from_file_location("_slamp_train_example", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def test_train_script_one_epoch_on_tiny_cifar10(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    from slamp_deploy.model.loader import load_model

    write_cifar10(tmp_path, per_batch=2, n_test=4)
    out = tmp_path / "ckpt" / "vgg11.pt"
    meta = _train_main()(["--data", f"cifar10:{tmp_path}?max_test=4", "--model", "vgg11",
                          "--epochs", "1", "--timesteps", "2", "--batch-size", "5",
                          "--device", "cpu", "--out", str(out)])
    printed = capsys.readouterr().out
    saved = json.loads(out.with_suffix(".json").read_text())
    assert saved == meta
    assert saved["model"] == "slamp_deploy.examples.cifar_vgg:vgg11_cifar10"
    assert saved["train_samples"] == 10 and saved["test_samples"] == 4
    assert saved["timesteps"] == 2 and saved["epochs"] == 1
    assert 0.0 <= saved["test_accuracy"] <= 1.0
    assert "epoch    1/1" in printed
    assert (f"slamp-deploy --model slamp_deploy.examples.cifar_vgg:vgg11_cifar10 --weights {out} "
            f"--data 'cifar10:{tmp_path}?max_test=4' --timesteps 2 --encoding direct") in printed
    loaded = load_model(saved["model"], str(out))  # the checkpoint slamp-deploy will load
    state = torch.load(out, weights_only=True)
    assert torch.equal(loaded.model.state_dict()["0.weight"], state["0.weight"])


def test_train_script_rate_encoding_uses_unnormalised_images(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_cifar10(tmp_path, per_batch=1, n_test=2)
    meta = _train_main()(["--data", f"cifar10:{tmp_path}", "--encoding", "rate", "--epochs", "1",
                          "--timesteps", "1", "--device", "cpu", "--no-augment",
                          "--out", str(tmp_path / "r.pt")])
    assert meta["data"] == f"cifar10:{tmp_path}?norm=none" and meta["augment"] == "none"
    assert "not normalised" in str(meta["train_source"])
    assert f"--data 'cifar10:{tmp_path}?norm=none'" in capsys.readouterr().out


def test_train_augmentation_is_a_padded_crop_or_flip_of_each_sample() -> None:
    augment = _train_main().__globals__["augment"]
    x = torch.arange(3 * 2 * 8 * 8, dtype=torch.float32).view(3, 2, 8, 8) + 1
    out = augment(x, False, torch.Generator().manual_seed(0))
    xp = torch.nn.functional.pad(x, (4, 4, 4, 4))
    for i in range(3):
        crops = [xp[i, :, dy:dy + 8, dx:dx + 8] for dy in range(9) for dx in range(9)]
        windows = crops + [c.flip(-1) for c in crops]
        assert any(torch.equal(out[i], w) for w in windows)
    seq = torch.rand(4, 6, 2, 5, 5)
    flipped = augment(seq, True, torch.Generator().manual_seed(1))
    for j in range(6):  # one decision per sample, the same at every step
        assert torch.equal(flipped[:, j], seq[:, j]) or torch.equal(flipped[:, j],
                                                                    seq[:, j].flip(-1))


def test_train_script_refuses_npz_and_bad_models(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    main = _train_main()
    p = tmp_path / "d.npz"
    np.savez(p, x=np.zeros((4, 3, 32, 32), np.float32), y=np.arange(4))
    with pytest.raises(SystemExit):
        main(["--data", str(p), "--epochs", "1", "--device", "cpu"])
    assert "train.py trains the example VGGs on cifar10:PATH" in capsys.readouterr().err
    write_cifar10_dvs(tmp_path, per_class=(1, 2))
    with pytest.raises(SystemExit):
        main(["--data", f"cifar10-dvs:{tmp_path}?size=48&frames=2", "--model", "vgg16",
              "--device", "cpu"])
    assert ("--model vgg16: no vgg16 for cifar10-dvs in examples/cifar_vgg.py; available: "
            "vgg11\n") in capsys.readouterr().err
