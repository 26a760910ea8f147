"""``miue.bench``: its JSON line, and the committed measurements the Reproduce page reads."""

from __future__ import annotations

import json

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
    assert (rows["training (img/s)"] > 0).all()
