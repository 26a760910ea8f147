"""``miue.bench``: its JSON line, and the committed measurements the Reproduce page reads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from miue import bench


def test_the_bench_reports_what_it_measured_and_its_results_read_back_as_one_row_each(tmp_path, capsys):
    out = bench.main(["--device", "cpu", "--width", "0.125", "--shape", "1,8,8", "--batch", "8",
                      "--skip", "miue,mi"])
    assert out["train_img_per_s"] > 0 and out["device"] == "cpu" and out["compiled"] is False
    assert json.loads(capsys.readouterr().out)["width"] == 0.125
    (tmp_path / "here.json").write_text(json.dumps({"machine": "test", "measured": out["measured"],
                                                    "results": [out, {**out, "compiled": True}]}))
    rows = bench.recorded(tmp_path)
    assert len(rows) == 2 and list(rows["torch.compile"]) == ["no", "yes"]
    assert rows["input"].iloc[0] == "1×8×8" and rows["MI-UE generation (img/s)"].isna().all()


def test_the_committed_measurements_name_their_machine_and_read_back():
    rows = bench.recorded()
    assert len(rows) >= 2 and rows["machine"].str.len().min() > 0
    measured = rows[["training (img/s)", "MI-UE generation (img/s)", "sliced MI (s)"]]
    assert measured.notna().any(axis=1).all()  # every row measured something
    assert (rows["training (img/s)"].dropna() > 0).all()
    compared = rows[rows["against"].notna()]  # before/after rows: a commit and at least one speed-up
    assert len(compared) and compared[["training speed-up", "generation speed-up", "sliced MI speed-up"]].notna().any(
        axis=1).all()


@pytest.mark.slow
def test_baseline_runs_another_checkout_and_divides(tmp_path, capsys):
    """``--baseline DIR`` measures DIR's package in a subprocess first; here DIR is this checkout itself, so the
    ratio is about 1 (timing noise aside) and both sides name their commit. ``--save`` appends to a record."""
    import json
    root = str(Path(bench.__file__).resolve().parent.parent)
    args = ["--device", "cpu", "--width", "0.0625", "--shape", "1,16,16", "--batch", "16", "--skip", "miue,mi"]
    out = bench.main(args + ["--baseline", root, "--save", str(tmp_path / "b.json"), "--machine", "test box"])
    assert out["baseline"]["train_img_per_s"] > 0 and out["ratio"]["train_img_per_s"] > 0
    assert out["baseline"]["git_commit"] == out["git_commit"]
    saved = json.loads((tmp_path / "b.json").read_text())
    assert saved["machine"] == "test box" and saved["results"][0]["ratio"] == out["ratio"]
    rows = bench.recorded(tmp_path)
    assert rows["against"].iloc[0] == out["git_commit"][:7] and rows["training speed-up"].iloc[0] > 0
    with pytest.raises(SystemExit, match="no miue/bench.py"):
        bench.main(args + ["--baseline", str(tmp_path)])
    assert bench._speedup("sliced_mi_seconds", 10.0, 5.0) == 2.0 and bench._speedup("train_img_per_s", 5.0, 10.0) == 2.0
