"""Load the user's model (a factory plus a state_dict) or the built-in example."""

from __future__ import annotations

import importlib
import importlib.util
import io
import pickle
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from slamp_deploy.errors import ModelError, SlampWarning

BUILTIN = "builtin:digits"


@dataclass(frozen=True, eq=False)
class LoadedModel:
    """A model ready for tracing, and where it came from."""

    model: nn.Module
    spec: str  # the --model value (or "builtin:digits")
    weights: str | None  # the checkpoint path, if any
    # a NIR file's: what the reader assumed (nir_import.ReadAssumption) and its warnings
    nir_assumptions: tuple = ()
    warnings: tuple[str, ...] = ()


def load_model(spec: str | None, weights: str | None, *, device: str = "cpu",
               nir_dt: float | None = None) -> LoadedModel:
    """Build the model from ``spec`` and load ``weights`` into it.

    ``spec`` is ``path/to/file.py:factory`` or ``package.module:factory`` (a function returning
    the ``nn.Module``), or ``graph.nir`` (a NIR file written by any framework, read at step
    ``nir_dt`` unless it records its own); None means the built-in digits example with its
    shipped weights.
    """
    read = None
    if spec is None or spec == BUILTIN:
        from slamp_deploy.examples.digits import build_model, weights_path

        model = build_model()
        weights = weights or str(weights_path())
        spec = BUILTIN
    elif spec.endswith(".nir"):
        from slamp_deploy.model.nir_import import read_nir

        if weights is not None:
            raise ModelError(f"--weights {weights}: a NIR file carries its own weights; drop "
                             f"--weights when --model is a .nir file")
        read = read_nir(spec, dt=nir_dt)
        model = read.model
    else:
        model = _call_factory(spec)
    if weights is not None:
        load_weights(model, weights)
    check_finite(model, weights or spec)
    if read is None:
        return LoadedModel(model=model.to(device), spec=spec, weights=weights)
    return LoadedModel(model=model.to(device), spec=spec, weights=weights,
                       nir_assumptions=read.assumptions, warnings=read.warnings)


def _call_factory(spec: str) -> nn.Module:
    if ":" not in spec:
        raise ModelError(f"--model {spec!r}: expected 'path/to/file.py:factory' or "
                         f"'package.module:factory'")
    where, _, attr = spec.rpartition(":")
    if where.endswith(".py") or "/" in where or "\\" in where:
        path = Path(where)
        if not path.is_file():
            raise ModelError(f"--model {spec!r}: file {path} does not exist")
        name = f"_slamp_user_model_{abs(hash(str(path.resolve())))}"
        loader_spec = importlib.util.spec_from_file_location(name, path)
        if loader_spec is None or loader_spec.loader is None:
            raise ModelError(f"--model {spec!r}: cannot import {path} as a Python file")
        module = importlib.util.module_from_spec(loader_spec)
        sys.modules[name] = module
        with _guarded(spec, f"importing {path}", str(path)):
            loader_spec.loader.exec_module(module)
    else:
        with _guarded(spec, f"importing {where}", where):
            try:
                module = importlib.import_module(where)
            except ImportError as e:
                raise ModelError(f"--model {spec!r}: cannot import module {where!r} ({e}); "
                                 f"check the name or pass a file path") from e
    factory = getattr(module, attr, None)
    if factory is None:
        raise ModelError(f"--model {spec!r}: {where} has no attribute {attr!r}")
    if not callable(factory):
        raise ModelError(f"--model {spec!r}: {attr!r} is a {type(factory).__name__}, not a "
                         f"callable factory returning an nn.Module")
    with _guarded(spec, f"calling {attr}()", where):
        model = factory()
    if not isinstance(model, nn.Module):
        raise ModelError(f"--model {spec!r}: {attr}() returned a {type(model).__name__}, "
                         f"not a torch.nn.Module")
    if not list(model.children()):
        raise ModelError(f"--model {spec!r}: {attr}() returned a single "
                         f"{type(model).__name__}; wrap the layers in nn.Sequential or a module")
    return model


@contextmanager
def _guarded(spec: str, doing: str, where: str) -> Iterator[None]:
    """Run the user's code (an import, a factory call) so that nothing it does at import ends
    the run by itself or writes on our stdout: ``sys.exit`` and argparse (which exits on a
    command line it does not know: ours) and any exception become one ModelError naming the
    file; what it prints goes to stderr; it sees ``sys.argv`` as ``[FILE]``."""
    argv, said = sys.argv, io.StringIO()
    sys.argv = [where]
    failed = True
    try:
        with redirect_stdout(said), redirect_stderr(said):
            yield
        failed = False
    except ModelError:
        raise
    except SystemExit as e:
        last = next((ln.strip() for ln in reversed(said.getvalue().splitlines()) if ln.strip()),
                    "")
        raise ModelError(f"--model {spec!r}: {doing} called sys.exit({e.code!r})"
                         f"{f' after printing {last[:120]!r}' if last else ''} (argparse "
                         f"parsing the command line does this); put the script part of the "
                         f"file under `if __name__ == \"__main__\":`") from None
    except Exception as e:
        first = str(e).splitlines()[0] if str(e) else ""
        raise ModelError(f"--model {spec!r}: {doing} failed: {type(e).__name__}: {first}; "
                         f"fix the file or its factory") from None
    finally:
        sys.argv = argv
        lines = [ln for ln in said.getvalue().splitlines() if ln.strip()]
        if not failed and lines:  # stdout is ours (the summary): say what it printed, once
            warnings.warn(f"--model {spec!r}: {doing} printed {len(lines)} line(s), not shown "
                          f"(the first: {lines[0][:80]!r})", SlampWarning, stacklevel=3)


def load_weights(model: nn.Module, path: str) -> None:
    """Load a state_dict with ``weights_only=True``; refuse pickled objects and key mismatches."""
    p = Path(path)
    if p.is_dir():
        raise ModelError(f"--weights {p}: is a folder, not a checkpoint file; pass the .pt "
                         f"file written by torch.save(model.state_dict(), path)")
    if not p.is_file():
        raise ModelError(f"--weights {p}: file not found")
    _check_checkpoint_magic(p)
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise ModelError(f"--weights {p}: the checkpoint needs unpickling of arbitrary Python "
                         f"objects, which can run code, so it is refused; save "
                         f"model.state_dict() instead of the model object") from e
    except Exception as e:
        raise ModelError(f"--weights {p}: cannot read checkpoint ({type(e).__name__}: "
                         f"{str(e).splitlines()[0] if str(e) else ''})") from e
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(f"--weights {p}: expected a state_dict (names -> tensors), got "
                         f"{type(state).__name__}")
    own = model.state_dict()
    # snnTorch's hidden-state buffers (mem, syn) take the shape of the last input: skip them
    state = {k: v for k, v in state.items() if not _is_state_buffer(k)}
    wanted = {k for k in own if not _is_state_buffer(k)}
    params = {k for k, _ in model.named_parameters()}
    # parameters first: a missing weight matters more than a missing neuron buffer
    missing = sorted(wanted - set(state), key=lambda k: (k not in params, k))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise ModelError(f"--weights {p}: keys do not match the model: missing "
                         f"{_few(missing)}; unexpected {_few(unexpected)}")
    for k, v in state.items():
        if own[k].shape != v.shape:
            raise ModelError(f"--weights {p}: '{k}' has shape {tuple(v.shape)}, the model "
                             f"expects {tuple(own[k].shape)}")
    model.load_state_dict(state, strict=False)


#: how a torch.save file begins: a zip archive (torch >= 1.6), or the legacy format's pickle
_CHECKPOINT_MAGIC = (b"PK\x03\x04", b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")


def _check_checkpoint_magic(p: Path) -> None:
    """Refuse, before torch reads it, a file that is no torch.save checkpoint at all."""
    with p.open("rb") as f:
        head = f.read(4)
    if not head:
        raise ModelError(f"--weights {p}: the file is empty; pass the .pt file written by "
                         f"torch.save(model.state_dict(), path)")
    if not head.startswith(_CHECKPOINT_MAGIC):
        raise ModelError(f"--weights {p}: not a checkpoint (torch.save writes a zip archive; "
                         f"this file begins {head!r}); pass the .pt file written by "
                         f"torch.save(model.state_dict(), path)")


def _is_state_buffer(key: str) -> bool:
    return key.rsplit(".", 1)[-1] in ("mem", "syn", "spk", "reset")


def _few(keys: list[str]) -> str:
    if not keys:
        return "none"
    shown = ", ".join(keys[:6])
    return shown + (f" (+{len(keys) - 6} more)" if len(keys) > 6 else "")


def check_finite(model: nn.Module, where: str) -> None:
    """Refuse NaN or inf in any parameter or buffer (hidden states excluded)."""
    for name, t in list(model.named_parameters()) + list(model.named_buffers()):
        if _is_state_buffer(name) or not t.is_floating_point() or t.numel() == 0:
            continue
        if not torch.isfinite(t).all():
            bad = int((~torch.isfinite(t)).sum())
            raise ModelError(f"{where}: '{name}' has {bad} NaN/inf value(s) of {t.numel()}; "
                             f"retrain or fix the checkpoint")
