"""Hostile input, table-driven: every bad option, model file, checkpoint, data file, profile and
``--out`` target below must end the run with its exit code and one ``error:`` line that names
the culprit and says what to do, with no traceback, nothing on stdout, an earlier output folder
byte-identical, no temporary folder left, and no pickle payload run.

The cases run in-process through ``slamp_deploy.cli.main`` and fail at validation or loading,
each in well under a second. Signals and a concurrent second run need real processes
(``test_hostile_signals.py``); they aim at their moment with the test-only pause hook.
"""

from __future__ import annotations

import fcntl
import os
import pickle
import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from slamp_deploy.cli import main
from slamp_deploy.pipeline.outputs import MARKER

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Case:
    id: str
    argv: tuple[str, ...]  # "{d}" is the case folder, "{model}"/"{weights}"/"{data}" the good ones
    message: str  # a regular expression the error line must match
    code: int = 1
    out: str | None = None  # the --out to use; None: the earlier output folder


class _Canary:
    """Unpickling this creates the canary file: proof that a payload ran."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (Path.touch, (Path(self.path),))


GOOD_MODEL = textwrap.dedent('''
    import snntorch as snn
    from torch import nn

    def build():
        return nn.Sequential(
            nn.Linear(64, 16), snn.Leaky(beta=0.8, init_hidden=True),
            nn.Linear(16, 10), snn.Leaky(beta=0.9, init_hidden=True, output=True))
''')

#: model files: name -> source; the factory is build unless the case says else
_HEAD = "import torch\nimport snntorch as snn\nfrom torch import nn\n"
_NET = _HEAD + textwrap.dedent('''
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = nn.Linear(64, 16)
            self.lif1 = snn.Leaky(beta=0.8, init_hidden=True)
            self.fc2 = nn.Linear(16, 10)
            self.lif2 = snn.Leaky(beta=0.9, init_hidden=True, output=True)

        def forward(self, x):
            h = self.lif1(self.fc1(x))
            BODY
            return self.lif2(self.fc2(h))

    def build():
        return Net()
''')


def _net(body: str, ret: str | None = None) -> str:
    src = _NET.replace("BODY", body)
    if ret is not None:
        src = src.replace("return self.lif2(self.fc2(h))", ret)
    return src


MODEL_FILES = {
    "syntax.py": "def build(:\n",
    "raises.py": "raise RuntimeError('no GPU found')\n",
    "exit0.py": "import sys\nsys.exit(0)\n",
    "exit3.py": "import sys\nsys.exit(3)\n",
    "argparse_required.py": "import argparse\np = argparse.ArgumentParser()\n"
                            "p.add_argument('--lr', required=True)\nargs = p.parse_args()\n",
    "argparse_positional.py": "import argparse\np = argparse.ArgumentParser()\n"
                              "p.add_argument('data')\nargs = p.parse_args()\n",
    "prints.py": "print('hello from the model file')\nprint('x' * 500)\n",
    "keyboard.py": GOOD_MODEL + "\ndef exits():\n    raise SystemExit('bye')\n",
    "factory_raises.py": "def build():\n    raise ValueError('bad config')\n",
    "import_missing.py": "import no_such_package_xyz\n",
    "single.py": "from torch import nn\ndef build():\n    return nn.Linear(64, 10)\n",
    "relu.py": _HEAD + "def build():\n    return nn.Sequential(nn.Linear(64, 10), nn.ReLU(),"
                       " nn.Linear(10, 10), snn.Leaky(beta=0.9, init_hidden=True))\n",
    "rleaky.py": _HEAD + "def build():\n    return nn.Sequential(nn.Linear(64, 10), "
                         "snn.RLeaky(beta=0.9, linear_features=10, init_hidden=True), "
                         "nn.Linear(10, 10), snn.Leaky(beta=0.9, init_hidden=True))\n",
    "lapicque.py": _HEAD + "def build():\n    return nn.Sequential(nn.Linear(64, 10), "
                           "snn.Lapicque(beta=0.9, init_hidden=True))\n",
    "mul_.py": _net("h.mul_(0)"),
    "relu_.py": _net("torch.relu_(h)"),
    "setitem.py": _net("h[:, 0] = 1.0"),
    "imul.py": _net("h *= 2"),
    "clamp_.py": _net("h.clamp_(0, 0.5)"),
    "add_scalar_.py": _net("h.add_(1.0)"),
    "permute.py": _net("h = h.view(-1, 4, 4).permute(0, 2, 1).reshape(-1, 16)"),
    "transpose.py": _net("h = h.view(-1, 4, 4).transpose(1, 2)",
                         "return self.lif2(self.fc2(h.flatten(1)))"),
    "twice.py": _net("h = self.lif1(h)"),
    "fc_twice.py": _HEAD + textwrap.dedent('''
        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = nn.Linear(64, 64)
                self.lif = snn.Leaky(beta=0.8, init_hidden=True)
                self.out = nn.Linear(64, 10)
                self.lif2 = snn.Leaky(beta=0.9, init_hidden=True, output=True)
            def forward(self, x):
                h = self.lif(self.fc(x))
                h = self.fc(h)
                return self.lif2(self.out(h))
        def build():
            return Net()
    '''),
    "post.py": _net("", "spk, mem = self.lif2(self.fc2(h))\n        return 1 - spk, mem"),
    "noise.py": _net("", "spk, mem = self.lif2(self.fc2(h))\n"
                         "        return spk * torch.ones_like(spk).bernoulli_(0.5), mem"),
    "scale.py": _net("h = h * 2"),
    "slice.py": _net("h = h[:, :8]", "return self.lif2(self.fc2(torch.cat([h, h], 1)))"),
    "good.py": GOOD_MODEL + "\nnot_callable = 3\n\ndef returns_int():\n    return 3\n",
}


def _make_files(d: Path) -> dict[str, str]:
    """Write every hostile file into ``d``; the good model, weights and data paths."""
    for name, src in MODEL_FILES.items():
        (d / name).write_text(src)
    (d / "folder.py").mkdir()
    (d / "empty.py").write_text("")
    from slamp_deploy.model.loader import load_model

    model = load_model(f"{d / 'good.py'}:build", None).model
    torch.save(model.state_dict(), d / "good.pt")
    _checkpoints(d, model)
    _data_files(d)
    _profiles(d)
    return {"model": f"{d / 'good.py'}:build", "weights": str(d / "good.pt"),
            "data": str(d / "data.npz")}


def _checkpoints(d: Path, model: torch.nn.Module) -> None:
    canary = str(d / "CANARY")
    good = (d / "good.pt").read_bytes()
    (d / "empty.pt").write_bytes(b"")
    (d / "random.pt").write_bytes(np.random.default_rng(0).bytes(4096))
    (d / "text.pt").write_text("this is not a checkpoint\n")
    (d / "truncated.pt").write_bytes(good[: len(good) // 2])
    (d / "weights_dir").mkdir()
    torch.save({"net": _Canary(canary)}, d / "payload_zip.pt")  # zip with a pickle payload
    (d / "payload_legacy.pt").write_bytes(pickle.dumps(_Canary(canary), protocol=2))
    torch.save([torch.zeros(2)], d / "list.pt")
    torch.save(torch.zeros(3), d / "tensor.pt")
    torch.save({"fc.weight": torch.zeros(2, 2)}, d / "keys.pt")
    sd = model.state_dict()
    shapes = dict(sd)
    shapes["0.weight"] = torch.zeros(16, 63)
    torch.save(shapes, d / "shapes.pt")
    nan = {k: v.clone() for k, v in sd.items()}
    nan["0.weight"][0, 0] = float("nan")
    torch.save(nan, d / "nan.pt")
    inf = {k: v.clone() for k, v in sd.items()}
    inf["2.bias"][3] = float("inf")
    torch.save(inf, d / "inf.pt")


def _data_files(d: Path) -> None:
    rng = np.random.default_rng(0)
    x, y = rng.random((60, 64), dtype=np.float32), np.arange(60) % 10
    np.savez(d / "data.npz", x=x, y=y)
    good = (d / "data.npz").read_bytes()
    (d / "empty.npz").write_bytes(b"")
    (d / "truncated.npz").write_bytes(good[: len(good) // 3])
    (d / "random.npz").write_bytes(rng.bytes(2048))
    np.save(d / "array.npy", x)
    (d / "array.npy").rename(d / "npy.npz")
    (d / "data_dir").mkdir()
    np.savez(d / "no_y.npz", x=x)
    np.savez(d / "objects.npz", x=np.array([_Canary(str(d / "CANARY"))] * 60, dtype=object), y=y)
    bad_x = x.copy()
    bad_x[3, 5] = np.nan
    np.savez(d / "nan.npz", x=bad_x, y=y)
    np.savez(d / "neg.npz", x=x, y=y - 1)
    np.savez(d / "float_y.npz", x=x, y=y.astype(np.float32) + 0.5)
    np.savez(d / "mismatch.npz", x=x[:50], y=y)
    np.savez(d / "zero.npz", x=x[:0], y=y[:0])
    np.savez(d / "range.npz", x=x, y=y + 10)
    np.savez(d / "shape.npz", x=rng.random((60, 1, 8, 8), dtype=np.float32), y=y)
    np.savez(d / "strings.npz", x=np.array(["a"] * 60), y=y)
    np.savez(d / "eval_shape.npz", x=rng.random((20, 32), dtype=np.float32), y=y[:20])
    (d / "cifar.tar.gz").write_bytes(b"\x1f\x8b")


def _profiles(d: Path) -> None:
    tn = (REPO / "hardware_profiles" / "truenorth.toml").read_text()
    synop = re.search(r"synop_pj = \{ value = [0-9.]+,", tn)
    assert synop, "truenorth.toml has no synop_pj figure"
    for name, value in (("huge", "1e308"), ("inf", "inf"), ("nan", "nan"), ("neg", "-2.5")):
        (d / f"{name}.toml").write_text(tn.replace(synop.group(0),
                                                   f"synop_pj = {{ value = {value},"))
    (d / "big_count.toml").write_text(tn.replace("cores = { value = 4096,",
                                                 "cores = { value = 10000000000000000000,"))
    (d / "empty.toml").write_text("")
    (d / "broken.toml").write_text("name = 'x\n[[[")
    (d / "unknown_key.toml").write_text(tn.replace("[chip]", "[chip]\ncolour = 3", 1))
    (d / "profile_dir.toml").mkdir()


M = ("--model", "{model}")
MW = (*M, "--weights", "{weights}")
MWD = (*MW, "--data", "{data}")
NEEDS = "must be"

OPTIONS = [
    Case("sparsity-negative", (*MWD, "--sparsity", "-0.1"), r"--sparsity -0\.1: must be in"),
    Case("sparsity-one", (*MWD, "--sparsity", "1"), r"--sparsity 1\.0: must be in \[0, 1\)"),
    Case("sparsity-nan", (*MWD, "--sparsity", "nan"), r"--sparsity nan: must be in"),
    Case("sparsity-inf", (*MWD, "--sparsity", "inf"), r"--sparsity inf: must be in"),
    Case("lr-zero", (*MWD, "--lr", "0"), r"--lr 0\.0: must be positive"),
    Case("lr-negative", (*MWD, "--lr", "-1"), r"--lr -1\.0: must be positive"),
    Case("lr-inf", (*MWD, "--lr", "inf"), r"--lr inf: must be a finite positive number"),
    Case("lr-nan", (*MWD, "--lr", "nan"), r"--lr nan: must be positive"),
    Case("seed-negative", (*MWD, "--seed", "-1"), r"--seed -1: must be in 0\.\.4294967295"),
    Case("seed-huge", (*MWD, "--seed", str(2**32)), r"--seed 4294967296: must be in 0\.\."),
    Case("seed-enormous", (*MWD, "--seed", "9" * 40), r"--seed 9{40}: must be in 0\.\."),
    Case("split-seed-negative", (*MWD, "--split-seed", "-5"), r"--split-seed -5: must be in"),
    Case("split-seed-huge", (*MWD, "--split-seed", str(2**40)), r"--split-seed \d+: must be in"),
    Case("lava-timeout-negative", (*MWD, "--lava-timeout", "-1"),
         r"--lava-timeout -1\.0: must be a number of seconds in \(0, 1e\+07\]"),
    Case("lava-timeout-zero", (*MWD, "--lava-timeout", "0"), r"--lava-timeout 0\.0: must be"),
    Case("lava-timeout-nan", (*MWD, "--lava-timeout", "nan"), r"--lava-timeout nan: must be"),
    Case("lava-timeout-inf", (*MWD, "--lava-timeout", "inf"), r"--lava-timeout inf: must be"),
    Case("lava-timeout-huge", (*MWD, "--lava-timeout", "1e300"), r"--lava-timeout 1e\+300"),
    Case("dist-timeout-nan", (*MWD, "--dist-timeout", "nan"), r"--dist-timeout nan: must be"),
    Case("dist-timeout-negative", (*MWD, "--dist-timeout", "-3"), r"--dist-timeout -3\.0"),
    Case("dist-timeout-inf", (*MWD, "--dist-timeout", "inf"), r"--dist-timeout inf: must be"),
    Case("cores-zero", (*MWD, "--fit", "--cores", "0"), r"--cores 0: must be at least 1"),
    Case("cores-negative", (*MWD, "--cores", "-4"), r"--cores -4: must be at least 1"),
    Case("chips-zero", (*MWD, "--chips", "0"), r"--chips 0: must be at least 1"),
    Case("epochs-negative", (*MWD, "--epochs", "-1"), r"--epochs -1: must be at least 0"),
    Case("rounds-zero", (*MWD, "--rounds", "0"), r"--rounds 0: must be at least 1"),
    Case("batch-zero", (*MWD, "--batch-size", "0"), r"--batch-size 0: must be at least 1"),
    Case("batch-negative", (*MWD, "--batch-size", "-64"), r"--batch-size -64: must be at least"),
    Case("calib-zero", (*MWD, "--calib-samples", "0"), r"--calib-samples 0: must be at least"),
    Case("verify-zero", (*MWD, "--verify-samples", "0"), r"--verify-samples 0: must be at"),
    Case("timesteps-zero", (*MWD, "--timesteps", "0"), r"--timesteps 0: must be at least 1"),
    Case("timesteps-negative", (*MWD, "--timesteps", "-2"), r"--timesteps -2: must be at least"),
    Case("eval-fraction-zero", (*MWD, "--eval-fraction", "0"), r"--eval-fraction 0\.0: must be"),
    Case("eval-fraction-one", (*MWD, "--eval-fraction", "1"), r"--eval-fraction 1\.0: must be"),
    Case("eval-fraction-nan", (*MWD, "--eval-fraction", "nan"), r"--eval-fraction nan: must"),
    Case("eval-fraction-big", (*MWD, "--eval-fraction", "1.5"), r"--eval-fraction 1\.5: must"),
    Case("method-unknown", (*MWD, "--method", "magic"), r"--method 'magic': unknown; choose"),
    Case("method-empty", (*MWD, "--method", ""), r"--method '': unknown; choose one of"),
    Case("target-unknown", (*MWD, "--target", "loihi9"), r"unknown target 'loihi9'.*known"),
    Case("epochs-text", (*MWD, "--epochs", "three"), r"argument --epochs: invalid int", 2),
    Case("lr-text", (*MWD, "--lr", "fast"), r"argument --lr: invalid float value", 2),
    Case("seed-float", (*MWD, "--seed", "1.5"), r"argument --seed: invalid int value", 2),
    Case("encoding-unknown", (*MWD, "--encoding", "morse"), r"argument --encoding: invalid", 2),
    Case("readout-unknown", (*MWD, "--readout", "vote"), r"argument --readout: invalid", 2),
    Case("unknown-option", (*MWD, "--sparsty", "0.5"), r"unrecognized arguments: --sparsty", 2),
]

OUT_TARGETS = [
    Case("out-empty", MWD, r"--out '': name a folder for the outputs", out=""),
    Case("out-cwd", MWD, r"--out \.: is the working folder", out="."),
    Case("out-parent", MWD, r"--out \.\.: is the working folder \(or above it\)", out=".."),
    Case("out-root", MWD, r"--out /: is the working folder \(or above it\)", out="/"),
    Case("out-file", MWD, r"--out .*afile\.txt: is a file, not a folder", out="{d}/afile.txt"),
    Case("out-under-file", MWD, r"afile\.txt is a file, so no folder can be made under it",
         out="{d}/afile.txt/out"),
    Case("out-foreign", MWD, r"holds files slamp-deploy did not write \(thesis\.tex\); choose "
                             r"another folder or empty it", out="{d}/thesis"),
    Case("out-foreign-report", MWD, r"holds files slamp-deploy did not write \(report\.json\)",
         out="{d}/foreign_report"),
    Case("out-proc", MWD, r"/proc is on the kernel's proc file system", out="/proc/slamp-out"),
    Case("out-sys", MWD, r"/sys is on the kernel's sysfs file system", out="/sys/slamp-out"),
    Case("out-long-name", MWD, r"the path is too long for the file system \(a name of 300",
         out="{d}/" + "n" * 300),
    Case("out-long-path", MWD, r"the path is too long for the file system",
         out="{d}/" + "/".join(["p" * 200] * 25)),
]

MODELS = [
    Case("model-missing", ("--model", "{d}/nowhere.py:build"), r"--model .*nowhere\.py: file "
                                                               r"not found"),
    Case("model-folder", ("--model", "{d}/folder.py:build"), r"folder\.py: is a folder, not a "
                                                             r"file"),
    Case("model-empty", ("--model", "{d}/empty.py:build"), r"empty\.py: the file is empty"),
    Case("model-no-colon", ("--model", "models"), r"--model 'models': expected "
                                                  r"'path/to/file\.py:factory'"),
    Case("model-no-module", ("--model", "no_such_pkg_q.sub:build"), r"cannot import module "
                                                                    r"'no_such_pkg_q\.sub'"),
    Case("model-syntax", ("--model", "{d}/syntax.py:build"), r"importing .*syntax\.py failed: "
                                                             r"SyntaxError"),
    Case("model-raises", ("--model", "{d}/raises.py:build"), r"importing .*raises\.py failed: "
                                                             r"RuntimeError: no GPU found"),
    Case("model-exit0", ("--model", "{d}/exit0.py:build"), r"importing .*exit0\.py called "
                                                           r"sys\.exit\(0\).*__main__"),
    Case("model-exit3", ("--model", "{d}/exit3.py:build"), r"importing .*exit3\.py called "
                                                           r"sys\.exit\(3\)"),
    Case("model-argparse", ("--model", "{d}/argparse_required.py:build"),
         r"called sys\.exit\(2\) after printing .*the following arguments are required: --lr"),
    Case("model-argparse-positional", ("--model", "{d}/argparse_positional.py:build"),
         r"argparse_positional\.py called sys\.exit\(2\).*argparse"),
    Case("model-prints", ("--model", "{d}/prints.py:build"), r"prints\.py has no attribute "
                                                             r"'build'"),  # and stdout is clean
    Case("model-import-missing", ("--model", "{d}/import_missing.py:build"),
         r"ModuleNotFoundError: No module named 'no_such_package_xyz'"),
    Case("factory-missing", ("--model", "{d}/good.py:nothing"), r"has no attribute 'nothing'"),
    Case("factory-not-callable", ("--model", "{d}/good.py:not_callable"),
         r"'not_callable' is a int, not a callable factory"),
    Case("factory-int", ("--model", "{d}/good.py:returns_int"), r"returned a int, not a torch"),
    Case("factory-raises", ("--model", "{d}/factory_raises.py:build"),
         r"calling build\(\) failed: ValueError: bad config"),
    Case("factory-exits", ("--model", "{d}/keyboard.py:exits"), r"calling exits\(\) called "
                                                                r"sys\.exit\('bye'\)"),
    Case("model-single-layer", ("--model", "{d}/single.py:build"), r"returned a single Linear"),
    Case("model-relu", ("--model", "{d}/relu.py:build", "--data", "{data}"),
         r"layer '1' has unsupported type torch\.nn\.modules\.activation\.ReLU"),
    Case("model-rleaky", ("--model", "{d}/rleaky.py:build", "--data", "{data}"),
         r"layer '1' is a recurrent snn\.RLeaky: recurrent layers are not supported"),
    Case("model-lapicque", ("--model", "{d}/lapicque.py:build", "--data", "{data}"),
         r"layer '1' has unsupported type snn\.Lapicque"),
    Case("model-mul_", ("--model", "{d}/mul_.py:build", "--data", "{data}"),
         r"changes a tensor in place with Tensor\.mul_ \(after layer 'lif1'\)"),
    Case("model-relu_", ("--model", "{d}/relu_.py:build", "--data", "{data}"),
         r"changes a tensor in place with torch\.relu_"),
    Case("model-setitem", ("--model", "{d}/setitem.py:build", "--data", "{data}"),
         r"changes a tensor in place with Tensor\.__setitem__"),
    Case("model-imul", ("--model", "{d}/imul.py:build", "--data", "{data}"),
         r"changes a tensor in place with Tensor\.(__imul__|mul_)"),
    Case("model-clamp_", ("--model", "{d}/clamp_.py:build", "--data", "{data}"),
         r"changes a tensor in place with Tensor\.clamp_"),
    Case("model-add-scalar_", ("--model", "{d}/add_scalar_.py:build", "--data", "{data}"),
         r"changes a tensor in place with Tensor\.add_"),
    Case("model-permute", ("--model", "{d}/permute.py:build", "--data", "{data}"),
         r"layer 'fc2' takes its input from the result of Tensor\.reshape of a Tensor\.permute"),
    Case("model-transpose", ("--model", "{d}/transpose.py:build", "--data", "{data}"),
         r"Tensor\.flatten of a Tensor\.transpose"),
    Case("model-layer-twice", ("--model", "{d}/twice.py:build", "--data", "{data}"),
         r"layer 'lif1' is called twice in one time step.*its own module"),
    Case("model-fc-twice", ("--model", "{d}/fc_twice.py:build", "--data", "{data}"),
         r"layer 'fc' is called again after 'lif', but the forward then calls 'out' instead "
         r"of repeating the step: a layer called twice in one time step"),
    Case("model-post-processing", ("--model", "{d}/post.py:build", "--data", "{data}"),
         r"the traced model differs from the model's own forward at step 0"),
    Case("model-noise", ("--model", "{d}/noise.py:build", "--data", "{data}"),
         r"the traced model differs from the model's own forward|in place with "
         r"Tensor\.bernoulli_"),
    Case("model-scale", ("--model", "{d}/scale.py:build", "--data", "{data}"),
         r"layer 'fc2' takes its input from the result of Tensor\.mul"),
    Case("model-slice", ("--model", "{d}/slice.py:build", "--data", "{data}"),
         r"torch\.cat|slices are not supported"),
]

CHECKPOINTS = [
    Case("weights-missing", (*M, "--weights", "{d}/nowhere.pt"), r"--weights .*nowhere\.pt: "
                                                                 r"file not found"),
    Case("weights-folder", (*M, "--weights", "{d}/weights_dir"), r"weights_dir: is a folder"),
    Case("weights-empty", (*M, "--weights", "{d}/empty.pt"), r"empty\.pt: the file is empty"),
    Case("weights-random", (*M, "--weights", "{d}/random.pt"), r"random\.pt: not a checkpoint"),
    Case("weights-text", (*M, "--weights", "{d}/text.pt"), r"text\.pt: not a checkpoint"),
    Case("weights-truncated", (*M, "--weights", "{d}/truncated.pt"), r"truncated\.pt: cannot "
                                                                     r"read checkpoint"),
    Case("weights-payload-zip", (*M, "--weights", "{d}/payload_zip.pt"),
         r"needs unpickling of arbitrary Python objects, which can run code, so it is refused"),
    Case("weights-payload-legacy", (*M, "--weights", "{d}/payload_legacy.pt"),
         r"payload_legacy\.pt: (the checkpoint needs unpickling|cannot read checkpoint)"),
    Case("weights-list", (*M, "--weights", "{d}/list.pt"), r"expected a state_dict .* got list"),
    Case("weights-tensor", (*M, "--weights", "{d}/tensor.pt"), r"expected a state_dict .*"
                                                               r"got Tensor"),
    Case("weights-keys", (*M, "--weights", "{d}/keys.pt"), r"keys do not match the model: "
                                                           r"missing 0\.bias"),
    Case("weights-shapes", (*M, "--weights", "{d}/shapes.pt"), r"'0\.weight' has shape "
                                                               r"\(16, 63\), the model expects"),
    Case("weights-nan", (*M, "--weights", "{d}/nan.pt"), r"'0\.weight' has 1 NaN/inf value"),
    Case("weights-inf", (*M, "--weights", "{d}/inf.pt"), r"'2\.bias' has 1 NaN/inf value"),
]

DATA = [
    Case("data-missing", (*MW, "--data", "{d}/nowhere.npz"), r"--data .*nowhere\.npz: file not "
                                                             r"found"),
    Case("data-folder", (*MW, "--data", "{d}/data_dir"), r"data_dir: is a folder, not a file"),
    Case("data-empty", (*MW, "--data", "{d}/empty.npz"), r"empty\.npz: the file is empty"),
    Case("data-truncated", (*MW, "--data", "{d}/truncated.npz"), r"truncated\.npz: cannot read "
                                                                 r"as \.npz"),
    Case("data-random", (*MW, "--data", "{d}/random.npz"), r"random\.npz: cannot read as \.npz "
                                                           r"\(not a zip archive"),
    Case("data-npy", (*MW, "--data", "{d}/npy.npz"), r"npy\.npz: cannot read as \.npz"),
    Case("data-no-y", (*MW, "--data", "{d}/no_y.npz"), r"no_y\.npz: missing array\(s\) y"),
    Case("data-objects", (*MW, "--data", "{d}/objects.npz"), r"objects\.npz: cannot read as "
                                                             r"\.npz \(Object arrays"),
    Case("data-nan", (*MW, "--data", "{d}/nan.npz"), r"'x' contains NaN or inf values"),
    Case("data-negative-label", (*MW, "--data", "{d}/neg.npz"), r"label -1 is negative"),
    Case("data-float-label", (*MW, "--data", "{d}/float_y.npz"), r"labels 'y' must be integers"),
    Case("data-mismatch", (*MW, "--data", "{d}/mismatch.npz"), r"'x' has shape \(50, 64\) but "
                                                               r"there are 60 labels"),
    Case("data-zero", (*MW, "--data", "{d}/zero.npz"), r"the data set is empty"),
    Case("data-label-range", (*MW, "--data", "{d}/range.npz"), r"label 19 is out of range for a "
                                                               r"model with 10 outputs"),
    Case("data-shape", (*MW, "--data", "{d}/shape.npz"), r"forward failed on one time step of "
                                                         r"shape \[N, 1, 8, 8\]"),
    Case("data-strings", (*MW, "--data", "{d}/strings.npz"), r"'x' must be numeric"),
    Case("data-kind", (*MW, "--data", "imagenet:/data"), r"unknown data set 'imagenet'"),
    Case("data-url", (*MW, "--data", "https://example.org/d.npz"), r"URLs are not read"),
    Case("data-cifar-missing", (*MW, "--data", "cifar10:{d}/nowhere"), r"nowhere: no such "
                                                                       r"folder"),
    Case("data-cifar-archive", (*MW, "--data", "cifar10:{d}/cifar.tar.gz"),
         r"cifar\.tar\.gz: is a file \(an archive: extract it first"),
    Case("data-empty-spec", (*MW, "--data", ""), r"--data '': empty"),
    Case("eval-missing", (*MWD, "--eval-data", "{d}/nowhere.npz"), r"--eval-data .*nowhere\.npz"
                                                                   r": file not found"),
    Case("eval-folder", (*MWD, "--eval-data", "{d}/data_dir"), r"--eval-data .*: is a folder"),
    Case("eval-truncated", (*MWD, "--eval-data", "{d}/truncated.npz"), r"cannot read as \.npz"),
    Case("eval-shape", (*MWD, "--eval-data", "{d}/eval_shape.npz"), r"--eval-data .*per-sample "
                                                                    r"shape \(32,\) differs"),
]

PROFILES = [
    Case("profile-missing", (*MWD, "--target", "{d}/nowhere.toml"), r"--target .*nowhere\.toml"
                                                                     r": file not found"),
    Case("profile-folder", (*MWD, "--target", "{d}/profile_dir.toml"), r"is a folder"),
    Case("profile-empty", (*MWD, "--target", "{d}/empty.toml"), r"empty\.toml: the file is empty"),
    Case("profile-broken", (*MWD, "--target", "{d}/broken.toml"), r"broken\.toml: not valid TOML"),
    Case("profile-huge", (*MWD, "--target", "{d}/huge.toml"), r"huge\.toml: energy\.synop_pj\."
                                                              r"value = 1e\+308: out of range"),
    Case("profile-inf", (*MWD, "--target", "{d}/inf.toml"), r"inf\.toml: energy\.synop_pj\.value"
                                                            r" = inf: out of range"),
    Case("profile-nan", (*MWD, "--target", "{d}/nan.toml"), r"nan\.toml: energy\.synop_pj\.value"
                                                            r" = nan: out of range"),
    Case("profile-negative", (*MWD, "--target", "{d}/neg.toml"), r"neg\.toml: .*synop_pj.*must "
                                                                 r"be a non-negative number"),
    Case("profile-big-count", (*MWD, "--target", "{d}/big_count.toml"), r"big_count\.toml: "
                                                                        r"chip\.cores\.value"),
    Case("profile-unknown-key", (*MWD, "--target", "{d}/unknown_key.toml"),
         r"unknown_key\.toml: unknown key chip\.colour"),
]

CASES = OPTIONS + OUT_TARGETS + MODELS + CHECKPOINTS + DATA + PROFILES


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("hostile")
    paths = _make_files(d)
    (d / "afile.txt").write_text("keep me")
    (d / "work").mkdir()
    (d / "work" / "notes.txt").write_text("the user's working folder")
    (d / "thesis").mkdir()
    (d / "thesis" / "thesis.tex").write_text("mine")
    (d / "foreign_report").mkdir()
    (d / "foreign_report" / "report.json").write_text('{"mine": true}')
    earlier = d / "earlier"
    earlier.mkdir()
    (earlier / MARKER).write_text("an earlier output\n")
    (earlier / "report.json").write_text('{"earlier": true}\n')
    (earlier / "pruned.pt").write_bytes(b"PK\x03\x04 earlier bytes")
    (earlier / "plots").mkdir()
    (earlier / "plots" / "a.png").write_bytes(b"\x89PNG earlier")
    return {"d": str(d), "earlier": str(earlier), **paths}


def _snapshot(root: Path) -> dict[str, bytes] | None:
    try:
        if not root.exists():
            return None
    except OSError:  # a name too long to look up
        return None
    if root.is_file():
        return {"": root.read_bytes()}
    return {str(p.relative_to(root)): p.read_bytes() if p.is_file() else b"<dir>"
            for p in sorted(root.rglob("*"))}


def _expand(s: str, world: dict[str, str]) -> str:
    return s.format(**world)


def _run_case(case: Case, world: dict[str, str], capsys) -> tuple[int, str, str]:
    argv = [_expand(a, world) for a in case.argv]
    out = world["earlier"] if case.out is None else _expand(case.out, world)
    argv = ["--epochs", "0", "--no-lava", *argv, "--out", out]  # the case's own options win
    try:
        rc = main(argv)
    except SystemExit as e:  # argparse: usage errors
        rc = int(e.code or 0)
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_input(case: Case, world, capsys, monkeypatch) -> None:
    d = Path(world["d"])
    monkeypatch.chdir(d / "work")  # "." and ".." are folders the run must not touch
    out = Path(world["earlier"] if case.out is None else _expand(case.out, world) or ".")
    target = (out if out.is_absolute() else Path.cwd() / out).resolve()
    earlier = _snapshot(Path(world["earlier"]))
    before = _snapshot(target) if target in (d / "work", d) or d in target.parents else None
    siblings = sorted(os.listdir(d))
    rc, stdout, stderr = _run_case(case, world, capsys)
    assert rc == case.code, (rc, stderr)
    assert "Traceback" not in stderr and "Traceback" not in stdout, stderr
    lines = stderr.strip().splitlines()
    if case.code == 2:  # argparse: its usage line, then one error line
        assert lines and "error: " in lines[-1], stderr
        assert re.search(case.message, lines[-1]), (case.message, stderr)
    else:
        assert len(lines) == 1 and lines[0].startswith("error: "), stderr
        assert re.search(case.message, lines[0]), (case.message, lines[0])
        assert stdout == "", stdout
    assert _snapshot(Path(world["earlier"])) == earlier, "the earlier output changed"
    if before is not None:
        assert _snapshot(target) == before, f"{target} changed"
    assert sorted(os.listdir(d)) == siblings, "a file or folder was left beside the outputs"
    assert not (d / "CANARY").exists(), "a pickle payload ran"


def test_the_table_is_large_and_every_id_unique() -> None:
    assert len(CASES) >= 100
    assert len({c.id for c in CASES}) == len(CASES)


def test_a_locked_out_is_refused_naming_the_other_run(world, capsys) -> None:
    """A second run into an --out whose lock another process holds (an flock, as out_lock
    takes it) fails at once, naming that run's pid, and leaves everything as it was."""
    earlier = Path(world["earlier"])
    lock = earlier.with_name(f".{earlier.name}.lock")
    before = _snapshot(earlier)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.write(fd, b"424242\n")
        rc, stdout, stderr = _run_case(Case("locked", MWD, ""), world, capsys)
    finally:
        os.close(fd)
        lock.unlink()
    assert rc == 1 and stdout == ""
    assert re.fullmatch(r"error: --out .*earlier: another slamp-deploy run \(pid 424242\) is "
                        r"writing into it \(lock .*\.earlier\.lock\); wait for it to finish or "
                        r"choose another --out\n", stderr), stderr
    assert _snapshot(earlier) == before


def test_a_dead_runs_lock_and_temp_folders_are_cleaned(world, capsys) -> None:
    """A lock file no process holds (its run was killed) does not block, and the temporary
    folders such a run left beside --out are removed by the next run into it."""
    earlier = Path(world["earlier"])
    lock = earlier.with_name(f".{earlier.name}.lock")
    lock.write_text("999999\n")
    stale = [earlier.with_name(f".{earlier.name}.tmp-999999-abc"),
             earlier.with_name(f".{earlier.name}.old-999999")]
    for p in stale:
        p.mkdir()
        (p / "report.json").write_text("{}")
    before = _snapshot(earlier)
    # the run gets past the lock and fails loading the checkpoint, inside the lock
    rc, _, stderr = _run_case(Case("stale", (*M, "--weights", "{d}/random.pt"), ""), world,
                              capsys)
    assert rc == 1 and "random.pt: not a checkpoint" in stderr, stderr
    assert not lock.exists() and not any(p.exists() for p in stale)
    assert _snapshot(earlier) == before


def test_report_json_writes_no_nan_or_infinity() -> None:
    """report.json is strict JSON: a non-finite number becomes null, and a warning names it."""
    import json

    from slamp_deploy.report.model import report_json

    class Report:  # report_json reads only to_dict()
        def to_dict(self) -> dict:
            return {"energy": {"pj": float("inf")}, "rates": [0.5, float("nan")],
                    "warnings": ["earlier"]}

    def refuse(name: str) -> None:
        raise AssertionError(f"{name} in report.json")

    d = json.loads(report_json(Report()), parse_constant=refuse)
    assert d["energy"] == {"pj": None} and d["rates"] == [0.5, None]
    assert d["warnings"] == ["earlier", "report.json: 2 non-finite number(s) written as null: "
                                        "energy.pj, rates[1]; check the inputs they came from"]


@pytest.mark.parametrize("fail", [False, True])
def test_the_swap_without_an_atomic_exchange_is_undone_on_failure(tmp_path, monkeypatch,
                                                                  fail) -> None:
    """Where renameat2 cannot exchange, the swap is two renames; a failing second rename puts
    the earlier output back, and a good one leaves the earlier output in tmp for deletion."""
    from slamp_deploy.pipeline import outputs

    out, tmp = tmp_path / "o", tmp_path / ".o.tmp-1-x"
    for folder, text in ((out, "old"), (tmp, "new")):
        folder.mkdir()
        (folder / "a").write_text(text)
    monkeypatch.setattr(outputs, "_exchange", lambda a, b: False)
    real = os.rename

    def rename(src, dst) -> None:
        if fail and Path(src) == tmp:
            raise OSError("disk full")
        real(src, dst)

    monkeypatch.setattr(outputs.os, "rename", rename)
    if fail:
        with pytest.raises(OSError, match="disk full"):
            outputs._swap_in(tmp, out)
        assert (out / "a").read_text() == "old" and (tmp / "a").read_text() == "new"
    else:
        outputs._swap_in(tmp, out)
        assert (out / "a").read_text() == "new" and (tmp / "a").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".o.tmp-1-x", "o"]


def test_the_exchange_swaps_two_folders_in_one_step(tmp_path) -> None:
    from slamp_deploy.pipeline import outputs

    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "x").write_text("A")
    (b / "x").write_text("B")
    if not outputs._exchange(a, b):
        pytest.skip("no renameat2 RENAME_EXCHANGE on this system or file system")
    assert (a / "x").read_text() == "B" and (b / "x").read_text() == "A"
