"""--out is checked before any work starts: the run replaces the folder whole, so it refuses one
that is not an earlier slamp-deploy output, and leaves whatever was there untouched."""

from __future__ import annotations

import json

import pytest

from slamp_deploy.cli import main
from slamp_deploy.errors import UsageError
from slamp_deploy.pipeline.outputs import MARKER, check_out_dir

#: a model that would fail when loaded: an --out error must come first, before any work
LATER_FAILURE = ["--model", "nowhere/x.py:build", "--epochs", "0"]


def _refused(capsys, out: str, message: str) -> None:
    assert main([*LATER_FAILURE, "--out", out]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --out") and "\n" not in err, err
    assert message in err, err


def test_a_folder_of_other_files_is_refused_and_kept(tmp_path, capsys) -> None:
    out = tmp_path / "results"
    out.mkdir()
    (out / "thesis.tex").write_text("mine")
    _refused(capsys, str(out), "holds files slamp-deploy did not write (thesis.tex)")
    assert (out / "thesis.tex").read_text() == "mine"


def test_a_file_is_refused_and_kept(tmp_path, capsys) -> None:
    f = tmp_path / "afile.txt"
    f.write_text("data")
    _refused(capsys, str(f), "is a file, not a folder")
    assert f.read_text() == "data"


def test_a_file_as_parent_is_refused(tmp_path, capsys) -> None:
    f = tmp_path / "afile.txt"
    f.write_text("data")
    _refused(capsys, str(f / "out"), "is a file, so no folder can be made under it")


@pytest.mark.parametrize(("where", "message"), [(".", "is the working folder"),
                                               ("..", "is the working folder (or above it)"),
                                               ("", "name a folder for the outputs")])
def test_the_working_folder_is_refused(tmp_path, monkeypatch, capsys, where, message) -> None:
    work = tmp_path / "work"
    work.mkdir()
    (work / MARKER).write_text("")  # even an earlier output: the run cannot replace its own cwd
    monkeypatch.chdir(work)
    _refused(capsys, where, message)
    assert (work / MARKER).is_file()


@pytest.mark.parametrize("content", [
    {MARKER: ""},  # written by this version
    {"report.json": json.dumps({"schema": "slamp-deploy/report", "schema_version": 1})},  # older
    {},  # empty
])
def test_an_earlier_output_or_an_empty_folder_may_be_replaced(tmp_path, content) -> None:
    out = tmp_path / "slamp-out"
    out.mkdir()
    for name, text in content.items():
        (out / name).write_text(text)
    check_out_dir(str(out))  # no error
    check_out_dir(str(tmp_path / "new" / "folder"))  # absent: made at the end


def test_a_foreign_report_json_is_not_an_output(tmp_path) -> None:
    out = tmp_path / "o"
    out.mkdir()
    (out / "report.json").write_text("[1, 2]")
    with pytest.raises(UsageError, match="holds files slamp-deploy did not write"):
        check_out_dir(str(out))


@pytest.mark.slow
def test_every_output_carries_the_marker_and_can_be_rerun_into(tmp_path, tiny_model_file,
                                                                tiny_weights, digits_npz) -> None:
    out = tmp_path / "o"
    argv = ["--model", f"{tiny_model_file}:build", "--weights", str(tiny_weights), "--data",
            str(digits_npz), "--timesteps", "2", "--epochs", "0", "--target", "truenorth",
            "--out", str(out)]
    assert main(argv) == 0
    assert (out / MARKER).is_file() and (out / "report.json").is_file()
    assert main(argv) == 0  # the earlier output is replaced
    assert (out / MARKER).is_file()
