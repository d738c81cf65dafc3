"""Proof with the real frameworks (norse, sinabs, rockpool, spyx, snnTorch in
``.venv-interop``): every row of ``results.json``, the README's interop table, is measured again
here, both directions, and must come out the same. ``tests/interop/harness.py`` says how each
row is measured; ``python scripts/interop_results.py`` rewrites results.json after a deliberate
change. Two runs of the interop interpreter, about a minute in all."""

from __future__ import annotations

import json

import pytest

from tests.interop import harness

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(harness.interop_python() is None,
                       reason="no .venv-interop: run `make interop-env`"),
]


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    return harness.measure(tmp_path_factory.mktemp("interop"))


def _key(row):
    return row["direction"], row["case"], row["framework"]


def test_every_row_of_the_table_is_measured_again(measured):
    recorded = json.loads(harness.RESULTS.read_text())
    assert [_key(r) for r in measured] == [_key(r) for r in recorded]
    for got, want in zip(measured, recorded, strict=True):
        if want["verdict"].endswith("fails"):
            # a failing importer's message can vary between runs (nirtorch's graph walk in
            # norse's from_nir); the failure itself must not
            assert got["verdict"] == want["verdict"] and got["note"], _key(want)
            got, want = dict(got, note=""), dict(want, note="")
        assert got == want, _key(want)


def test_exact_reads_of_foreign_exports(measured):
    """snnTorch's LIF, norse's LIF exported at dt = 1 and sinabs' IF conv net with a sum pool
    are read with identical output spikes at the producer's dt."""
    exact = {r["case"] for r in measured
             if r["direction"] == "into slamp-deploy" and r["verdict"] == "exact"}
    assert {"snntorch-lif", "norse-lif-dt1", "sinabs-if-conv-sumpool"} <= exact


def test_each_documented_departure_is_the_whole_difference(measured):
    """Undo the producer's one departure from NIR (norse's dt*tau, spyx's r, snnTorch's late
    CubaLIF reset) and the read agrees exactly: the difference is theirs, not our reading."""
    rows = [r for r in measured if "corrected" in r and r["direction"] == "into slamp-deploy"]
    assert {r["case"] for r in rows} == {"snntorch-cubalif", "norse-lif-dt1e-3",
                                         "spyx-li-threshold"}
    for r in rows:
        assert r["verdict"] != "exact" and r["corrected"]["verdict"] == "exact", r["case"]


def test_norse_default_export_is_refused_naming_the_convention(measured):
    row = next(r for r in measured if r["case"] == "norse-lif-dt1e-3")
    assert row["verdict"] == "refused" and "norse 1.1.0's to_nir writes dt*tau" in row["note"]


def _ours(measured):
    return {(r["case"], r["framework"]): r for r in measured
            if r["direction"] == "from slamp-deploy"}


def test_our_export_is_read_exactly_by_snntorch(measured):
    """snnTorch reads the default export exactly, the conv net's SumPool2d included (nirtorch's
    default map, which snnTorch's importer falls back to); norse reads IF and CubaLIF exactly."""
    ours = _ours(measured)
    assert ours[("slamp-mlp", "snnTorch 1.0.0")]["verdict"] == "exact"
    assert ours[("slamp-conv", "snnTorch 1.0.0")]["verdict"] == "exact"
    assert ours[("slamp-mlp-if", "norse 1.1.0")]["verdict"] == "exact"  # norse's IF is NIR's
    for fw in ("snnTorch 1.0.0", "norse 1.1.0"):  # CubaLIF, reset right after the spike
        assert ours[("slamp-mlp-cubalif", fw)]["verdict"] == "exact", fw


def test_the_norse_form_is_read_exactly_by_norse(measured):
    """norse ignores r; the norse form (r = 1, the gain in the weights) is the same NIR graph
    and norse reads it exactly, MLP and conv net (which runs since pools are SumPool2d)."""
    ours = _ours(measured)
    for case in ("slamp-mlp", "slamp-conv"):
        assert ours[(case, "norse 1.1.0")]["verdict"] == "approximate", case
        assert ours[(f"{case}-norse", "norse 1.1.0")]["verdict"] == "exact", case


def test_each_consumer_departure_is_the_whole_difference(measured):
    """sinabs and spyx import our LIF and IF nodes by their own equations, snnTorch our IF
    (each documented with file and line); with those undone on their side, they read the MLPs
    and the conv net exactly: the rest of their reading (weights, layout, pools) is ours."""
    rows = [r for r in measured if r["direction"] == "from slamp-deploy" and "corrected" in r]
    assert {(r["case"], r["framework"]) for r in rows} == {
        (c, f) for c in ("slamp-mlp", "slamp-mlp-if", "slamp-conv")
        for f in ("sinabs 3.1.3", "spyx 1.0.0")} | {("slamp-mlp-if", "snnTorch 1.0.0"),
                                                    ("slamp-mlp-cubalif", "spyx 1.0.0")}
    for r in rows:
        assert r["verdict"] != "exact" and r["corrected"]["verdict"] == "exact", r["case"]
        assert ".py:" in r["departure"], r["framework"]  # names the consumer's source line
