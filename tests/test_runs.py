import json
import multiprocessing as mp
import time

import numpy as np
import pytest

from miue.runs import RecordVersionError, RunStore, config_hash


def test_get_or_compute_computes_once_and_records_provenance(store):
    calls = []

    def compute(ctx):
        calls.append(1)
        (ctx.artifacts / "a.txt").write_text("x")
        return {"metrics": {"acc": 0.5}, "history": [{"epoch": 1}]}

    r1 = store.get_or_compute("toy", {"seed": 3, "n": (1, 2)}, compute)
    r2 = store.get_or_compute("toy", {"seed": 3, "n": [1, 2]}, compute)
    assert calls == [1] and r1 == r2 and r1["metrics"]["acc"] == 0.5
    pv = r1["provenance"]
    assert pv["seed"] == 3 and pv["versions"]["torch"] and pv["wall_time_s"] >= 0 and "device" in pv
    assert (store.root / "toy" / f"{r1['hash']}.json").exists()
    assert r1["hash"] == config_hash("toy", {"seed": 3, "n": [1, 2]})


def test_corrupt_or_edited_records_are_not_trusted(store):
    cfg = {"seed": 0}
    r = store.get_or_compute("toy", cfg, lambda ctx: {"metrics": {"v": 1}})
    path = store.root / "toy" / f"{r['hash']}.json"
    text = path.read_text()
    path.write_text(text.replace('"v": 1', '"v": 2'))
    with pytest.warns(UserWarning, match="checksum"):
        assert store.get("toy", cfg) is None
    path.write_text(text[: len(text) // 2])
    with pytest.warns(UserWarning, match="not valid JSON"):
        r2 = store.get_or_compute("toy", cfg, lambda ctx: {"metrics": {"v": 3}})
    assert r2["metrics"]["v"] == 3


def test_incompatible_record_version_gives_one_clear_message(store):
    from miue.runs.records import _checksum
    cfg = {"seed": 0}
    r = store.get_or_compute("toy", cfg, lambda ctx: {"metrics": {}})
    r["schema"] = 0
    r["checksum"] = _checksum(r)
    (store.root / "toy" / f"{r['hash']}.json").write_text(json.dumps(r))
    with pytest.raises(RecordVersionError, match="delete it"):
        store.get("toy", cfg)


def test_failed_compute_leaves_no_record_and_resumes_from_checkpoint(store):
    import torch
    cfg = {"seed": 1}

    def compute(ctx, fail_at=None):
        ck = ctx.checkpoint()
        state = ck.load()
        start, total = (state[0], state[1]["total"]) if state else (0, torch.zeros(1))
        for step in range(start, 5):
            if step == fail_at:
                raise RuntimeError("interrupted")
            total += step
            ck.save(step + 1, tensors={"total": total})
        return {"metrics": {"total": total.item(), "resumed_from": start}}

    with pytest.raises(RuntimeError):
        store.get_or_compute("toy", cfg, lambda ctx: compute(ctx, fail_at=3))
    assert store.get("toy", cfg) is None and not list((store.root / "toy").glob("*.json"))
    r = store.get_or_compute("toy", cfg, compute)
    assert r["metrics"] == {"total": 10.0, "resumed_from": 3}


def _worker(root, cache, seed, out):
    store = RunStore(root, cache, poll_seconds=0.05)

    def compute(ctx):
        (ctx.artifacts / f"by-{mp.current_process().pid}").write_text("")
        time.sleep(0.5)
        return {"metrics": {"seed": seed}}

    r = store.get_or_compute("grid", {"seed": seed}, compute)
    out.put((seed, r["hash"], r["metrics"]["seed"]))


@pytest.mark.slow
def test_two_processes_fill_one_store_without_clobbering(tmp_path):
    root, cache = tmp_path / "runs", tmp_path / "cache"
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(root, cache, s, q)) for s in (0, 1, 0, 1)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    results = [q.get(timeout=5) for _ in procs]
    assert all(seed == got for seed, _, got in results)
    assert len(list((root / "grid").glob("*.json"))) == 2
    for seed in (0, 1):  # each run computed by exactly one process
        h = config_hash("grid", {"seed": seed})
        assert len(list((cache / "grid" / h).glob("by-*"))) == 1


@pytest.mark.slow
def test_a_record_names_the_commit_its_process_imported_not_a_later_one(tmp_path):
    """A background run outlasts commits made meanwhile: its provenance is the code it started with."""
    import os
    import shutil
    import subprocess
    import sys
    from pathlib import Path
    import miue
    repo = tmp_path / "repo"
    shutil.copytree(Path(miue.__file__).parent, repo / "miue", ignore=shutil.ignore_patterns("__pycache__"))
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run(git + ["add", "-A"], check=True)
    subprocess.run(git + ["commit", "-qm", "start"], check=True)
    first = subprocess.run(git + ["rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    script = ("import subprocess, sys; import miue.runs as r; "
              f"subprocess.run({git + ['commit', '-q', '--allow-empty', '-m', 'later']!r}, check=True); "
              "p = r.provenance(); print(p['git_commit'], p['git_dirty'])")
    env = {k: v for k, v in os.environ.items() if k != "MIUE_GIT_COMMIT"}
    out = subprocess.run([sys.executable, "-c", script], cwd=repo, env={**env, "PYTHONPATH": str(repo)},
                         capture_output=True, text=True, check=True).stdout.split()
    later = subprocess.run(git + ["rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    assert later != first and out == [first, "False"]


def test_lookup_reads_a_specs_record_and_never_computes(store):
    from miue import book
    from miue import experiments as ex
    from miue.profiles import profile
    p = profile("cifar")
    specs = [ex.victim_spec(p, "em", s) for s in p.seeds]
    assert [store.lookup(s) for s in specs] == [None, None, None]
    assert not (store.root / "victim").exists()  # nothing computed, nothing written
    store.get_or_compute("victim", specs[1].config(), lambda ctx: {"metrics": {"test_acc": 0.25}})
    records = [store.lookup(s) for s in specs]
    assert records[0] is None and records[2] is None and records[1]["metrics"]["test_acc"] == 0.25
    assert book.fmt_recorded(records, p.seeds) == "25.00 (seed 1); seeds 0, 2 not run yet"
    assert book.fmt_recorded([None] * 3, p.seeds) == "not run yet"


def test_a_caption_number_is_text_that_shows_nothing_when_it_ends_a_cell(capsys):
    """``cap.figure(...)`` returns its number for later text ("from Figure 3.1"), and IPython displays
    nothing for it when it ends a cell (no stray 'Figure 3.1' result under the caption)."""
    from IPython.core.formatters import DisplayFormatter
    from miue.book import Captions
    cap = Captions(3)
    first, second = cap.figure("one"), cap.table("two")
    assert (first, second) == ("Figure 3.1", "Table 3.1") and f"from {first}" == "from Figure 3.1"
    assert DisplayFormatter().format(first) == ({}, {})  # the display hook sends nothing
    assert DisplayFormatter().format(str(first))[0]  # a plain string would show


def test_one_spearman_and_one_single_seed_rule():
    from miue import book, paper, stats
    assert book.mean_std is stats.mean_std and paper.spearman is stats.spearman
    assert stats.spearman([1, 2, 3, 4], [10, 20, 40, 30]) == pytest.approx(0.8)
    assert np.isnan(stats.spearman([1, 2], [2, 1]))  # two points say nothing about an order
    with pytest.raises(ValueError, match="one length"):
        stats.spearman([1, 2, 3], [1, 2])
    assert stats.mean_std([3.0])[0] == 3.0 and np.isnan(stats.mean_std([3.0])[1])
    assert stats.mean_std([1.0, 3.0]) == (2.0, pytest.approx(2 ** 0.5))
    assert stats.finite(1.5) and not stats.finite(float("nan")) and not stats.finite(True) and not stats.finite("1")
