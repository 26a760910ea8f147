"""``miue grid``: the order of the runs (listed order inline, waves by dependency in parallel), failures reported,
and concurrent grids over one store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from miue import experiments as ex
from miue import grid
from miue.chapters import chapter_specs
from miue.grid import cli as grid_cli
from miue.grid import costs, dispatcher, executors
from miue.profiles import profile
from miue.runs import RunStore, compute_seconds


def test_waves_put_each_run_after_what_it_depends_on(tmp_path):
    p = profile("smoke")
    specs = chapter_specs("grid_check", p)
    w = grid.waves(specs, RunStore(tmp_path / "runs", tmp_path / "cache"))
    first = {s.address for s in w[0]}
    assert ex.poison_spec(p, "random").address in first
    assert {s.address for s in w[1]} == {ex.victim_spec(p, "random", s).address for s in (0, 1)}
    assert sum(len(x) for x in w) == len(specs) == 5


def test_one_process_works_in_the_order_listed_each_run_after_the_inputs_it_reads(tmp_path, monkeypatch):
    # a background queue of Table 2 on CIFAR ran every poison (about 19 h) before any victim; cut short by a
    # session's end it had finished no row. Inline, each listed victim now follows its own poison.
    p = profile("smoke")
    store = RunStore(tmp_path / "runs", tmp_path / "cache")
    specs = [ex.victim_spec(p, m, 0) for m in ("clean", "em", "random")] + [ex.victim_spec(p, "em", 1)]
    order = [s.address for s in grid.in_order(specs, store)]
    assert order == [specs[0].address, ex.poison_spec(p, "em").address, specs[1].address,
                     ex.poison_spec(p, "random").address, specs[2].address, specs[3].address]
    started = []

    def fake(spec, *a, **k):
        started.append(spec.address)
        return {"address": spec.address, "computed": [spec.address], "seconds": 0.0}
    monkeypatch.setattr(dispatcher, "run_job", fake)
    grid.dispatch(specs, store=store, log=lambda *_: None)
    assert started == order
    from miue.chapters import _with_deps  # a chapter's list holds the inputs too
    assert [len(w) for w in grid.waves(_with_deps(specs), store)] == [3, 3]  # parallel jobs still go in waves
    assert [s.address for s in grid.in_order(_with_deps(specs), store)] == order


def test_a_failed_run_skips_its_dependents_and_the_grid_goes_on(tmp_path, monkeypatch):
    p = profile("smoke")
    store = RunStore(tmp_path / "runs", tmp_path / "cache")
    poison = ex.poison_spec(p, "random")
    real = grid.run_job

    def flaky(spec, *a, **k):
        if spec.address == poison.address:
            raise RuntimeError("node lost")
        return {"address": spec.address, "computed": [spec.address], "seconds": 0.0}

    monkeypatch.setattr(dispatcher, "run_job", flaky)
    out = {o.address: o for o in grid.dispatch(chapter_specs("grid_check", p), store=store, log=lambda *_: None)}
    assert out[poison.address].state == "FAILED" and "node lost" in out[poison.address].detail
    for s in (0, 1):
        assert out[ex.victim_spec(p, "random", s).address].state == "SKIPPED"
        assert out[ex.victim_spec(p, "clean", s).address].state == "COMPLETED"
    assert real is not flaky


def test_runs_that_would_end_after_the_deadline_are_deferred_with_their_dependents(tmp_path, monkeypatch, capsys):
    p = profile("smoke")
    store = RunStore(tmp_path / "runs", tmp_path / "cache")
    poison = ex.poison_spec(p, "random")
    started = []

    def fake(spec, *a, **k):
        started.append(spec.address)
        return {"address": spec.address, "computed": [spec.address], "seconds": 0.0}

    monkeypatch.setattr(dispatcher, "run_job", fake)

    def estimate(spec):  # an hour for the poison, no estimate (counts as 0) for the others
        return 3600.0 if spec.address == poison.address else None

    out = {o.address: o for o in grid.dispatch(chapter_specs("grid_check", p), store=store, log=lambda *_: None,
                                               deadline=time.time() + 600, estimate=estimate)}
    assert out[poison.address].state == "DEFERRED" and "estimated 60.0 min" in out[poison.address].detail
    for s in (0, 1):
        assert out[ex.victim_spec(p, "random", s).address].state == "DEFERRED"  # needs the deferred poison
        assert out[ex.victim_spec(p, "clean", s).address].state == "COMPLETED"
    assert poison.address not in started and ex.victim_spec(p, "random", 0).address not in started
    # past the deadline nothing starts, even a run without an estimate
    late = grid.dispatch(chapter_specs("grid_check", p), store=store, log=lambda *_: None, deadline=time.time() - 1,
                         estimate=lambda s: None)
    assert {o.state for o in late} == {"DEFERRED"}
    assert grid.main(["grid_check", "--profile", "smoke", "--within", "0"]) == 2
    assert "--within must be a positive number of minutes" in capsys.readouterr().err


def test_a_queue_of_chapters_runs_one_after_another_each_at_its_profile(tmp_path, monkeypatch, capsys):
    """``miue grid A B@full``: each chapter in turn at its own profile; a failure does not stop the next."""
    seen = []

    def fake_run_job(spec, *a, **k):
        seen.append(spec.address)
        if len(seen) == 1:
            raise RuntimeError("node lost")
        return {"address": spec.address, "computed": [spec.address], "seconds": 0.0}

    monkeypatch.setattr(dispatcher, "run_job", fake_run_job)
    args = ["grid_check", "grid_check@cpu", "--profile", "smoke", "--runs", str(tmp_path / "runs"),
            "--cache", str(tmp_path / "cache"), "--json", str(tmp_path / "out.json"), "--no-progress"]
    assert grid.main(args) == 1  # one run failed
    out = capsys.readouterr().out
    assert "=== grid_check at profile smoke" in out and "=== grid_check at profile cpu" in out
    smoke, cpu = ({s.address for s in chapter_specs("grid_check", profile(n))} for n in ("smoke", "cpu"))
    assert smoke.isdisjoint(cpu) and cpu <= set(seen)  # the cpu chapter ran after the smoke one's failure
    states = {o["address"]: o["state"] for o in json.loads((tmp_path / "out.json").read_text())}
    assert set(states) == smoke | cpu and list(states.values()).count("FAILED") == 1
    (tmp_path / "out.json").unlink()
    assert grid.main(["grid_check", "--profile", "smoke", "--dry-run", "--json", str(tmp_path / "out.json"),
                      "--runs", str(tmp_path / "runs"), "--cache", str(tmp_path / "cache")]) == 0
    assert not (tmp_path / "out.json").exists()  # a dry run writes no outcomes
    real_specs = chapter_specs

    def broken(chapter, p):
        if p.name == "smoke":
            raise RuntimeError("submitit missing")
        return real_specs(chapter, p)

    monkeypatch.setattr(grid_cli, "chapter_specs", broken)
    seen.clear()
    assert grid.main(args) == 1
    states = json.loads((tmp_path / "out.json").read_text())
    assert any(o["state"] == "FAILED" and "submitit missing" in o["detail"] for o in states)
    assert cpu <= set(seen)  # the next chapter still ran
    with pytest.raises(SystemExit):
        grid.main(["no_such_chapter", "--dry-run"])
    assert "unknown chapter 'no_such_chapter'" in capsys.readouterr().err
    assert grid.main(["grid_check@nope", "--dry-run"]) == 2


@pytest.mark.slow
def test_two_concurrent_local_grids_compute_every_run_exactly_once(tmp_path):
    runs, cache = tmp_path / "runs", tmp_path / "cache"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    procs = [subprocess.Popen([sys.executable, "-m", "miue.cli", "grid", "grid_check", "--profile", "smoke",
                               "--cluster", "local", "--jobs", "2", "--runs", str(runs), "--cache", str(cache),
                               "--folder", str(tmp_path / f"jobs{i}"), "--json", str(tmp_path / f"out{i}.json")],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
             for i in range(2)]
    logs = [p.communicate(timeout=900)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), logs
    computed = [a for i in range(2) for o in json.loads((tmp_path / f"out{i}.json").read_text())
                for a in o["computed"]]
    expected = {s.address for s in chapter_specs("grid_check", profile("smoke"))}
    assert sorted(computed) == sorted(expected), logs  # each of the 5 runs computed once, by one of the grids
    store = RunStore(runs, cache)
    assert all(store.get(s.kind, s.config()) is not None for s in chapter_specs("grid_check", profile("smoke")))
    again = subprocess.run([sys.executable, "-m", "miue.cli", "grid", "grid_check", "--profile", "smoke",
                            "--runs", str(runs), "--cache", str(cache), "--dry-run"], capture_output=True, text=True)
    assert "5 runs, 0 missing" in again.stdout


@pytest.mark.slow
def test_audit_sample_reruns_a_recorded_run_and_finds_the_same_numbers(tmp_path):
    from miue import audit
    p = profile("smoke")
    store = RunStore(tmp_path / "runs", tmp_path / "cache")
    with pytest.raises(LookupError, match="no recorded run of the smoke profile"):
        audit.sample_audit(p, 1, seed=0, store=store)
    ex.run(ex.victim_spec(p, "clean", 0), store, progress=False, device="cpu")
    rec = audit.sample_audit(p, 1, seed=0, store=store)
    m = rec["metrics"]
    assert [r["address"] for r in m["runs"]] == [ex.victim_spec(p, "clean", 0).address]
    assert m["all_hold"] and any(r["metric"] == "test_acc" for r in m["rows"])
    # a record that no longer matches what the code computes is caught
    bad = dict(rec["metrics"]["rows"][0])
    rows = audit.compare({"metrics": {"test_acc": 0.9}}, {"metrics": {"test_acc": 0.5}}, {"victim_acc": 0.005,
                                                                                        "relative": 0.01})
    assert rows[0]["holds"] is False and bad
    assert "NO" in audit.audit_table({"metrics": {"rows": [{"address": "a", **rows[0]}],
                                                  "runs": [{"address": "a", "what": "x"}]}}).to_string()


def test_each_run_counts_as_new_in_the_first_chapter_that_lists_it():
    """The Reproduce page's "new to this chapter" columns: a run shared by chapters is counted once."""
    from miue.chapters import CHAPTERS, chapter_runs
    from miue.profiles import profile
    seen, listed = [], set()
    for chapter, specs, new in chapter_runs(profile("cpu")):
        addresses = {s.address for s in specs}
        assert new == addresses - listed  # new: listed by no earlier chapter
        seen.append(new)
        listed |= addresses
    assert len(seen) == len(CHAPTERS) and set().union(*seen) == listed


def test_every_kind_the_defense_chapter_lists_has_a_unit_of_work_to_estimate_from():
    """Purifiers, the denoiser, MI estimates and SAL runs scale with their size like victims and poisons."""
    from miue import sal
    p = profile("cpu")
    kinds = {}
    for s in chapter_specs("12_augmentations_and_purifications", p) + chapter_specs("05_sal_under_defenses", p):
        w = costs._work(s.config(), s.kind)
        assert w is not None and w[1] > 0, s.describe()
        kinds.setdefault(s.kind, set()).add(w[0].split("/")[0])
    assert set(kinds) == {"victim", "poison", "purifier", "denoiser", "mi", "sal"}
    mi = ex.mi_spec(p, "em", 0)
    assert costs._work(ex.mi_spec(p.override(mi_slices=2 * p.mi_slices), "em", 0).config(), "mi")[1] == \
        2 * costs._work(mi.config(), "mi")[1]
    at = sal.sal_spec(p, "em", 0, defense="mixup")
    assert costs._work(at.config(), "sal") == ("sal/resnet18", costs._work(at.victim.config(), "victim")[1])


def test_local_jobs_see_a_gpu_only_when_they_ask_for_one_and_take_turns_over_the_gpus(tmp_path):
    # submitit's local executor sets CUDA_VISIBLE_DEVICES from gpus_per_node: a job that asks for none sees
    # none and trains on the CPU (a lent H200 ran a whole lease of local jobs on its CPUs that way)
    assert grid.job_gpus("local", "auto", cuda_here=True) == 1
    assert grid.job_gpus("local", "auto", cuda_here=False) == 0
    assert grid.job_gpus("slurm", "cuda") == 1 and grid.job_gpus("local", "cuda:0") == 1
    assert grid.job_gpus("slurm", "auto") == 0 and grid.job_gpus("inline", "cuda") == 0
    assert grid.job_gpus("slurm", "auto", requested=2) == 2
    with pytest.raises(ValueError, match="--gpus"):
        grid.job_gpus("local", "auto", requested=-1)
    assert [executors._gpu_turn(k, 1, count=2) for k in range(3)] == [(0,), (1,), (0,)]
    assert executors._gpu_turn(1, 2, count=4) == (2, 3)
    seen = {}
    for gpus in (0, 1):
        executor = executors._executor("local", tmp_path / f"jobs{gpus}", 1, 1, 5, None, None, gpus=gpus)
        if gpus:
            executor.update_parameters(visible_gpus=executors._gpu_turn(0, gpus, count=1))
        seen[gpus] = executor.submit(os.getenv, "CUDA_VISIBLE_DEVICES").result()
    assert seen == {0: "", 1: "0"}


def test_a_run_recorded_on_a_gpu_counts_as_recorded_and_its_cost_is_estimated_for_the_cpu(tmp_path):
    # the Reproduce page's recompute times are on 2 CPU cores: a GPU's wall time must not stand in for them
    p = profile("smoke")
    store = RunStore(tmp_path / "runs", tmp_path / "cache")
    on_cpu, on_gpu = ex.victim_spec(p, "clean", 0), ex.victim_spec(p, "clean", 1)

    def busy(ctx):
        t = time.perf_counter()
        while time.perf_counter() - t < 0.3:
            pass
        return {"metrics": {"test_acc": 0.5}}
    store.get_or_compute(on_cpu.kind, on_cpu.config(), busy, device="cpu")
    store.get_or_compute(on_gpu.kind, on_gpu.config(), lambda ctx: {"metrics": {"test_acc": 0.5}}, device="cuda")
    cpu_s, cpu_how = grid.estimate_seconds(on_cpu, store)
    gpu_s, gpu_how = grid.estimate_seconds(on_gpu, store)
    assert cpu_how == "recorded" and cpu_s > 0.05
    assert gpu_how.startswith("recorded on cuda") and "estimated from 1 records" in gpu_how
    assert gpu_s == pytest.approx(cpu_s, rel=1e-6)  # same work at the CPU record's rate, not the GPU's ~0 s
    assert grid.missing_specs([on_cpu, on_gpu], store) == []


def test_a_gpu_record_regenerated_here_is_costed_by_that_measurement_and_stays_as_it_was(tmp_path):
    # poisons recorded on a lent GPU and regenerated on this CPU were estimated at 2-3x what their regeneration
    # took: a regeneration's time is kept beside the record, and the estimate takes it
    import shutil
    import torch
    p = profile("smoke")
    store = RunStore(tmp_path / "runs", tmp_path / "cache")
    spec = ex.poison_spec(p, "random")
    rec = store.get_or_compute(spec.kind, spec.config(),  # a record that says a GPU made it
                               lambda ctx: spec.compute(ctx, store, False, torch.device("cpu")), device="cuda")
    path = store.record_path(spec.kind, rec["hash"])
    committed = path.read_bytes()
    assert store.regenerations(spec.kind, rec["hash"]) == []
    assert "regenerated" not in grid.estimate_seconds(spec, store)[1]
    shutil.rmtree(store.cache / spec.kind / rec["hash"])  # a fresh clone: records only
    ex.artifact(spec, ex.POISON_FILE, store, progress=False, device="cpu")
    ex.artifact(spec, ex.POISON_FILE, store, progress=False, device="cpu")  # cached now: nothing recomputed
    regs = store.regenerations(spec.kind, rec["hash"])
    assert len(regs) == 1 and regs[0]["device"] == "cpu" and isinstance(regs[0]["artifacts_match"], bool)
    assert path.read_bytes() == committed and store.get(spec.kind, spec.config()) == rec
    sec, how = grid.estimate_seconds(spec, store)
    assert how.startswith("recorded on cuda") and "regenerated on the CPU" in how
    assert sec == pytest.approx(compute_seconds({"provenance": regs[0]})) and sec > 0
    # and it is a rate for the runs of its class that have no record yet
    other = ex.poison_spec(p, "random", seed=5)
    assert grid.estimate_seconds(other, RunStore(store.root, store.cache))[0] == pytest.approx(sec)
    store.regeneration_path(spec.kind, rec["hash"]).write_text("{not json")  # damaged: ignored, not fatal
    assert store.regenerations(spec.kind, rec["hash"]) == []


def test_a_missing_run_is_estimated_with_regenerating_the_cached_inputs_it_reads(tmp_path):
    # every session here starts without the cache: a victim whose poison is recorded but not cached costs
    # the poison's regeneration too, and --within must know it
    from miue.runs import file_sha256
    p = profile("smoke")
    store = RunStore(tmp_path / "runs", tmp_path / "cache")
    poison, victim = ex.poison_spec(p, "em"), ex.victim_spec(p, "em", 0)

    def make_poison(ctx):
        t = time.perf_counter()
        while time.perf_counter() - t < 0.3:
            pass
        f = ctx.artifacts / ex.POISON_FILE
        f.write_bytes(b"delta")
        return {"metrics": {"linf": 0.03}, "artifacts": {ex.POISON_FILE: file_sha256(f)}}
    rec = store.get_or_compute(poison.kind, poison.config(), make_poison, device="cpu")
    poison_s = grid.estimate_seconds(poison, store)[0]
    assert grid.regeneration_seconds(victim, store) == 0.0  # cached: nothing to regenerate
    assert grid.regeneration_seconds(victim, store, fresh_clone=True) == pytest.approx(poison_s)  # the book's
    store.artifact_path(poison.kind, rec["hash"], ex.POISON_FILE).unlink()
    assert grid.regeneration_seconds(victim, store) == pytest.approx(poison_s)
    seen: set = set()
    assert grid.regeneration_seconds(victim, store, _seen=seen) > 0
    assert grid.regeneration_seconds(ex.victim_spec(p, "em", 1), store, _seen=seen) == 0.0  # counted once


def test_the_studies_of_chapter_8_are_costed_at_their_own_profiles(tmp_path):
    from miue.chapters import PAGE_STUDIES, chapter_specs
    empty = grid.study_estimates(profile("cpu"), RunStore(tmp_path / "runs", tmp_path / "cache"))
    studies = [(page, s) for page, ss in PAGE_STUDIES.items() for s, _ in ss]
    assert list(empty.index) == studies
    assert empty.loc[("08_at_the_paper_sample_size", "paper_sample_size"), "profile"] == "full"
    assert empty.loc[("08_at_the_paper_sample_size", "size_curve"), "profile"] == "cpu"  # the book's own
    assert (empty["recorded"] == 0).all() and (empty["runs without an estimate"] == empty["runs"]).all()
    assert empty.loc[("08_at_the_paper_sample_size", "width_curve"), "runs"] == len(
        chapter_specs("width_curve", profile("cpu")))
    committed = grid.study_estimates(profile("cpu"))  # the committed records: the full profile's victims
    row = committed.loc[("08_at_the_paper_sample_size", "paper_sample_size")]
    assert row["recorded"] >= 5 and row["from scratch (hours)"] >= row[grid.left_column(True)] >= 0
    hours, unknown = grid.study_hours("paper_sample_size", profile("full"))
    assert unknown == 0 and hours == pytest.approx(row["from scratch (hours)"], abs=0.05)
    bigger = profile("full").override(width=0.25)
    wide, _ = grid.study_hours("paper_sample_size", bigger)
    assert wide > hours  # a victim's and a poison's unit of work scale with width squared; the rate they are
    for a, b in zip(chapter_specs("paper_sample_size", profile("full")), chapter_specs("paper_sample_size", bigger)):
        if a.kind in ("victim", "poison") and a.method != "random":  # taken at is each size's own
            assert costs._work(b.config(), b.kind)[1] == pytest.approx(4 * costs._work(a.config(), a.kind)[1])
    one = grid.study_estimates(profile("cpu"), RunStore(tmp_path / "runs", tmp_path / "cache"),
                               page="08_at_the_paper_sample_size")
    assert list(one.index) == [i for i in studies if i[0] == "08_at_the_paper_sample_size"]
    with pytest.raises(ValueError, match="lists no studies"):
        grid.study_estimates(profile("cpu"), page="01_at_a_glance")


def test_an_estimate_scales_from_the_records_of_a_similar_size(tmp_path, monkeypatch):
    # the per-image rate of a 4,000-image victim understated a 60,000-image one's by 1.4x: records of the same
    # size decide where there are enough of them
    p = profile("smoke")
    store = RunStore(tmp_path / "runs", tmp_path / "cache")
    monkeypatch.setattr(costs, "compute_seconds", lambda r: r["metrics"]["seconds"])

    def record(n, seed, per_unit):
        spec = ex.victim_spec(p.override(n_train=n), "clean", seed)
        units = costs._work(spec.config(), "victim")[1]
        store.get_or_compute(spec.kind, spec.config(), lambda ctx: {"metrics": {"seconds": per_unit * units}},
                             device="cpu")
        return units
    for s in range(3):
        record(500, s, 1.0)
    big = [record(8000, s, 2.0) for s in range(grid.NEAR_RECORDS)]
    target = ex.victim_spec(p.override(n_train=8000), "clean", 9)
    sec, how = grid.estimate_seconds(target, store)
    assert sec == pytest.approx(2.0 * big[0]) and "of the same size" in how
    small = ex.victim_spec(p.override(n_train=500), "clean", 9)
    assert grid.estimate_seconds(small, store)[0] == pytest.approx(1.0 * costs._work(small.config(), "victim")[1])
    middle = ex.victim_spec(p.override(n_train=2000), "clean", 9)  # no record of its size: all of them
    sec, how = grid.estimate_seconds(middle, store)
    assert "of the same size" not in how and sec == pytest.approx(1.5 * costs._work(middle.config(), "victim")[1])


def test_an_estimate_at_a_width_without_records_of_its_size_takes_that_width_s_records(tmp_path, monkeypatch):
    # a 16,000-image victim at width 1/4 was estimated at 15.3 min from the rate of all victims (mostly width
    # 1/8, where time is overhead more than width² FLOPs) and took 5: the records of its width decide next
    p = profile("smoke")
    store = RunStore(tmp_path / "runs", tmp_path / "cache")
    monkeypatch.setattr(costs, "compute_seconds", lambda r: r["metrics"]["seconds"])

    def record(n, width, seed, per_unit):
        spec = ex.victim_spec(p.override(n_train=n, width=width), "clean", seed)
        units = costs._work(spec.config(), "victim")[1]
        store.get_or_compute(spec.kind, spec.config(), lambda ctx: {"metrics": {"seconds": per_unit * units}},
                             device="cpu")
    narrow, wide = p.width, 2 * p.width
    for s in range(4):
        record(500, narrow, s, 1.0)
    record(500, wide, 0, 0.25)
    for s in range(grid.NEAR_RECORDS - 1):
        record(8000, wide, s, 0.25)
    target = ex.victim_spec(p.override(n_train=2000, width=wide), "clean", 9)
    sec, how = grid.estimate_seconds(target, store)
    assert sec == pytest.approx(0.25 * costs._work(target.config(), "victim")[1]) and "same width" in how
    other = ex.victim_spec(p.override(n_train=2000, width=4 * p.width), "clean", 9)  # no record of its width
    sec, how = grid.estimate_seconds(other, store)
    assert "same" not in how and sec == pytest.approx(1.0 * costs._work(other.config(), "victim")[1])


def test_a_poison_is_estimated_by_its_own_method_s_work_and_a_cut_one_apart(tmp_path, monkeypatch):
    # REM's 256 training steps do not grow with the set, only its final regeneration does: scaling a 4,000-image
    # record by images put REM at 60,000 images at 15x; and a one-class poison cut from a whole-set poison in
    # about a second halved the median rate the whole-set estimate was taken from (49 min estimated, 15 by work)
    cpu, full = profile("cpu"), profile("full")
    small, big = (costs._work(ex.poison_spec(q, "rem").config(), "poison")[1] for q in (cpu, full))
    a = ex.attack_config(cpu, "rem")
    du = a["pgd_steps"] * a["eot"] * (1 + a["adv_steps"])
    assert big - small == pytest.approx((60000 - 4000) * du * a["width"] ** 2 * 28 * 28)
    assert 1.5 < big / small < 4
    sem = costs._work(ex.poison_spec(cpu, "sem").config(), "poison")[1]
    assert sem < small  # SEM's δu draws δa at random instead of by PGD
    ap, ap2 = (costs._work(ex.poison_spec(cpu, "ap", restarts=r).config(), "poison")[1] for r in (1, 2))
    assert ap2 - ap == pytest.approx(4000 * ex.attack_config(cpu, "ap")["iterations"] * a["width"] ** 2 * 28 * 28)
    cut = ex.poison_spec(cpu, "rem", classes=[0])
    assert costs._work(cut.config(), "poison")[0] == "poison/cut"

    store = RunStore(tmp_path / "runs", tmp_path / "cache")
    monkeypatch.setattr(costs, "compute_seconds", lambda r: r["metrics"]["seconds"])
    whole = ex.poison_spec(cpu, "rem")
    for spec, seconds in ((whole, 400.0), (cut, 1.0)):
        store.get_or_compute(spec.kind, spec.config(), lambda ctx, s=seconds: {"metrics": {"seconds": s}},
                             device="cpu")
    sec, how = grid.estimate_seconds(ex.poison_spec(full, "rem"), store)
    assert sec == pytest.approx(400.0 * big / small) and "from 1 records" in how


def test_estimate_errors_sets_each_record_against_its_leave_one_out_estimate(tmp_path, monkeypatch):
    p = profile("smoke")
    store = RunStore(tmp_path / "runs", tmp_path / "cache")
    monkeypatch.setattr(costs, "compute_seconds", lambda r: r["metrics"]["seconds"])
    for seed, per_unit in enumerate([1.0, 1.0, 1.0, 1.0, 4.0]):  # the last recorded 4x slower than the rest
        spec = ex.victim_spec(p, "clean", seed)
        units = costs._work(spec.config(), "victim")[1]
        store.get_or_compute(spec.kind, spec.config(), lambda ctx, s=per_unit * units: {"metrics": {"seconds": s}},
                             device="cpu")
    row = grid.estimate_errors(store).loc["victim/resnet18"]
    assert row["records"] == 5 and row["median estimate / recorded"] == 1.0
    assert row["worst"] == 0.25 and row["within 1.5x"] == 0.8  # the slow one, estimated from the other four
    assert grid.estimate_errors(RunStore(tmp_path / "none", tmp_path / "cache")).empty


def test_a_run_on_another_dataset_or_precision_is_costed_from_its_own_kind_of_records_first(tmp_path):
    # the CIFAR calibration was first estimated from Fashion-MNIST float32 victims (2.40 h for 5 victims); a
    # record of the same dataset and precision, at any size or width, now comes before all of the class
    p = profile("smoke")
    store = RunStore(tmp_path / "runs", tmp_path / "cache")
    fm = [ex.victim_spec(p, "clean", s) for s in range(3)]
    cifar = p.override(dataset="cifar10-jpeg", n_train=2000, precision="bf16")
    recorded = ex.victim_spec(cifar, "clean", 0)
    asked = ex.victim_spec(cifar.override(n_train=4000, width=0.25), "clean", 0)
    bigger = ex.victim_spec(cifar.override(n_train=4000), "clean", 0)

    def busy(seconds):
        def compute(ctx):
            t = time.process_time()
            while time.process_time() - t < seconds:
                pass
            return {"metrics": {"test_acc": 0.5}}
        return compute
    for s in fm:
        store.get_or_compute(s.kind, s.config(), busy(0.05), device="cpu")
    sec, how = grid.estimate_seconds(asked, store)
    assert "estimated from 3 records" in how  # nothing of its own kind yet: all of the class
    store.get_or_compute(recorded.kind, recorded.config(), busy(0.4), device="cpu")
    sec, how = grid.estimate_seconds(asked, store)
    assert how == "estimated from 1 records on cifar10-jpeg at bf16 precision (any size or width)"
    assert sec == pytest.approx(8 * grid.estimate_seconds(recorded, store)[0], rel=1e-6)  # 2x images, 2x width
    # one record of the same width beats the dataset's records of other widths, and 3 of the same size beat it
    assert grid.estimate_seconds(bigger, store)[1] == "estimated from 1 records of the same width (any size)"
    assert "cifar10-jpeg, 4,000 images" in asked.describe() and "bf16" in asked.describe()
