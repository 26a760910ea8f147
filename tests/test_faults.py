"""Fault injection and bad inputs: stale and foreign locks, killed holders, damaged records, artifacts,
checkpoints and datasets, and settings out of range. Everything is observed for real at a tiny scale
(toy computes in a temporary run store; the bundled 8×8 digits where a real poison is needed).

No assertion is about durations: timeouts only keep a broken lock from hanging the suite.
"""

import gzip
import json
import math
import multiprocessing as mp
import os
import pickle
import signal
import socket
import subprocess
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from miue import data as mdata
from miue.checkpoint import Checkpoint, load_tensors, save_tensors
from miue.poisons import InvalidPoisonError, NotAPoisonFile, Poison
from miue.runs import ComputeForbidden, Lock, RecordVersionError, RunStore, config_hash
from miue.runs.lock import _process_start
from miue.runs.records import _checksum

HOST = socket.gethostname()
HANG = 60  # seconds after which a waiter is declared stuck (a bug), never a measured duration


# ------------------------------------------------------------------------------------------------ helpers

def bounded(fn, timeout=HANG):
    """Run ``fn`` in a thread and fail (instead of hanging) if it does not return within ``timeout``."""
    out = {}

    def target():
        try:
            out["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test thread
            out["error"] = exc

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(timeout)
    assert not t.is_alive(), f"still waiting after {timeout} s: a lock that should be taken over was not"
    if "error" in out:
        raise out["error"]
    return out["value"]


def counting(calls, metrics=None, pause=0.0):
    """A toy compute that counts its calls."""
    def compute(ctx):
        calls.append(os.getpid())
        if pause:
            time.sleep(pause)
        return {"metrics": metrics or {"v": 1}}
    return compute


def lock_path(store, kind, cfg):
    folder = store.cache / kind / config_hash(kind, cfg)
    folder.mkdir(parents=True, exist_ok=True)
    return folder / ".lock"


def backdate(path, seconds=3600):
    t = time.time() - seconds
    os.utime(path, (t, t))


def dead_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def lock_json(**info):
    base = {"host": HOST, "pid": os.getpid(), "token": "0123456789abcdef", "since": "2020-01-01T00:00:00+00:00"}
    base.update(info)
    return json.dumps(base)


def wait_until(predicate, timeout=HANG, what="condition"):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def proc_state(pid):
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


# ------------------------------------------------------------------------------------------------ locks

def test_old_empty_lock_is_taken_over_at_once(tmp_path, capsys):
    store = RunStore(tmp_path / "runs", tmp_path / "cache", lease=0.5, poll_seconds=0.05)
    lock = lock_path(store, "toy", {"s": 0})
    lock.write_text("")
    backdate(lock, 10)
    calls = []
    rec = bounded(lambda: store.get_or_compute("toy", {"s": 0}, counting(calls)))
    assert calls == [os.getpid()] and rec["metrics"] == {"v": 1}
    assert "waiting for run" not in capsys.readouterr().err  # stale: no wait at all
    assert not lock.exists()  # released after the compute


def test_fresh_empty_lock_is_waited_for_then_taken_over_after_the_lease(tmp_path, capsys):
    lease = 0.5
    store = RunStore(tmp_path / "runs", tmp_path / "cache", lease=lease, poll_seconds=0.05)
    lock = lock_path(store, "toy", {"s": 0})
    lock.write_text("")
    made = lock.stat().st_mtime
    ages = []

    def compute(ctx):
        ages.append(time.time() - made)  # how old the empty lock was when it was taken over
        return {"metrics": {"v": 1}}

    bounded(lambda: store.get_or_compute("toy", {"s": 0}, compute))
    err = capsys.readouterr().err
    assert "waiting for run toy/" in err and "unreadable lock" in err
    assert len(ages) == 1 and ages[0] >= lease  # not before the lease ran out


LOCK_CONTENTS = {
    # unreadable or foreign content: taken over once the lease has run out
    "not-json": ("garbage {", False),
    "bare-pid": (str(os.getpid()), False),
    "binary": (b"\xff\xfe\x00\x81" * 8, False),
    "json-list": ("[1, 2, 3]", False),
    "missing-token": (json.dumps({"host": HOST, "pid": 1}), False),
    # readable, this host, but no live process of that identity: taken over at once
    "pid-string": (lock_json(pid="abc"), True),
    "pid-float": (lock_json(pid=1.5), True),
    "pid-null": (lock_json(pid=None), True),
    "pid-zero": (lock_json(pid=0), True),  # os.kill(0, 0) succeeds: it addresses the process group
    "pid-negative": (lock_json(pid=-1), True),  # os.kill(-1, 0) succeeds as well
    "pid-true": (lock_json(pid=True), True),  # a bool is an int: PID 1 (init) is alive
    "pid-huge": (lock_json(pid=2 ** 40), True),
    "dead-pid": (None, True),
    "reused-pid": (lock_json(pid=os.getpid(), start="0"), True),  # live PID, other start time: PID reuse
    # a live unrelated PID and no start time to compare: the heartbeat decides, one lease
    "live-pid-without-start": (lock_json(pid=1), False),
}


@pytest.mark.parametrize("case", list(LOCK_CONTENTS))
def test_unusable_lock_is_taken_over_never_waited_for_forever(tmp_path, capsys, case):
    content, at_once = LOCK_CONTENTS[case]
    if case == "dead-pid":
        content = lock_json(pid=dead_pid(), start="12345")
    store = RunStore(tmp_path / "runs", tmp_path / "cache", lease=0.5, poll_seconds=0.05)
    lock = lock_path(store, "toy", {"s": 0})
    if isinstance(content, bytes):
        lock.write_bytes(content)
    else:
        lock.write_text(content)
    calls = []
    rec = bounded(lambda: store.get_or_compute("toy", {"s": 0}, counting(calls)))
    assert calls == [os.getpid()] and rec["metrics"] == {"v": 1}
    waited = "waiting for run" in capsys.readouterr().err
    assert waited is not at_once
    assert not lock.exists() and not lock.with_name(".lock.takeover").exists()


def test_lock_of_a_zombie_holder_is_taken_over(tmp_path):
    """A holder killed but not yet reaped by its parent is a zombie: its PID answers kill(pid, 0)."""
    p = subprocess.Popen(["true"])
    try:
        wait_until(lambda: proc_state(p.pid) == "Z", what="a zombie")
        store = RunStore(tmp_path / "runs", tmp_path / "cache", lease=30, poll_seconds=0.05)
        lock = lock_path(store, "toy", {"s": 0})
        lock.write_text(lock_json(pid=p.pid, start=_process_start(p.pid)))
        assert not Lock(lock, lease=30).holder_alive(Lock.read(lock))
        calls = []
        bounded(lambda: store.get_or_compute("toy", {"s": 0}, counting(calls)))
        assert calls == [os.getpid()]
    finally:
        p.wait()


def test_live_holder_of_this_host_is_waited_for(tmp_path):
    store = RunStore(tmp_path / "runs", tmp_path / "cache", lease=0.5, poll_seconds=0.05)
    lock = lock_path(store, "toy", {"s": 0})
    lock.write_text(lock_json(pid=os.getpid(), start=_process_start(os.getpid())))
    backdate(lock)  # even with an old heartbeat: the process itself is alive and is the one named
    assert Lock(lock, lease=0.5).acquire() is False


def test_lock_of_another_host_is_trusted_while_its_heartbeat_is_fresh(tmp_path, capsys):
    lease = 2.0
    store = RunStore(tmp_path / "runs", tmp_path / "cache", lease=lease, poll_seconds=0.05)
    lock = lock_path(store, "toy", {"s": 0})
    lock.write_text(lock_json(host="elsewhere", pid=dead_pid()))
    assert Lock(lock, lease=lease).acquire() is False  # fresh: wait
    beating, stopped = threading.Event(), threading.Event()

    def remote_heartbeat():  # the other host keeps its lock fresh for a while, then dies
        beating.set()
        for _ in range(20):
            os.utime(lock)
            time.sleep(0.05)
        stopped.set()

    hb = threading.Thread(target=remote_heartbeat, daemon=True)
    hb.start()
    beating.wait(HANG)
    seen = []

    def compute(ctx):
        seen.append(stopped.is_set())
        return {"metrics": {"v": 1}}

    bounded(lambda: store.get_or_compute("toy", {"s": 0}, compute))
    hb.join(HANG)
    assert seen == [True]  # computed only after the remote heartbeat stopped
    err = capsys.readouterr().err
    assert f"waiting for run toy/{config_hash('toy', {'s': 0})}" in err and "on elsewhere" in err


def test_lock_of_another_host_with_an_old_heartbeat_is_taken_over(tmp_path, capsys):
    store = RunStore(tmp_path / "runs", tmp_path / "cache", lease=2.0, poll_seconds=0.05)
    lock = lock_path(store, "toy", {"s": 0})
    lock.write_text(lock_json(host="elsewhere", pid=os.getpid()))
    backdate(lock, 10)
    calls = []
    bounded(lambda: store.get_or_compute("toy", {"s": 0}, counting(calls)))
    assert calls == [os.getpid()] and "waiting for run" not in capsys.readouterr().err


def test_waiter_names_run_and_holder_and_takes_the_holders_record(store, capsys):
    cfg = {"s": 1}
    release, holding = threading.Event(), threading.Event()
    holder_calls, waiter_calls = [], []

    def slow(ctx):
        holder_calls.append(1)
        holding.set()
        release.wait(HANG)
        return {"metrics": {"by": "holder"}}

    holder = threading.Thread(target=lambda: store.get_or_compute("toy", cfg, slow), daemon=True)
    holder.start()
    assert holding.wait(HANG)
    waiter = {}
    t = threading.Thread(target=lambda: waiter.setdefault("rec", store.get_or_compute("toy", cfg,
                                                                                      counting(waiter_calls))),
                         daemon=True)
    t.start()
    wait_until(lambda: "waiting for run" in capsys.readouterr().err or waiter_calls, what="the waiting message")
    release.set()
    holder.join(HANG)
    t.join(HANG)
    assert not t.is_alive() and waiter["rec"]["metrics"] == {"by": "holder"}
    assert holder_calls == [1] and waiter_calls == []


def test_waiting_message_names_the_holder(tmp_path, capsys):
    store = RunStore(tmp_path / "runs", tmp_path / "cache", lease=0.5, poll_seconds=0.05)
    lock = lock_path(store, "toy", {"s": 0})
    lock.write_text(lock_json(host="elsewhere", pid=4242))
    bounded(lambda: store.get_or_compute("toy", {"s": 0}, counting([])))
    err = capsys.readouterr().err
    assert f"miue: waiting for run toy/{config_hash('toy', {'s': 0})}, held by process 4242 on elsewhere" in err


@pytest.mark.parametrize("guard", ["dead-taker", "empty-old", "empty-fresh"])
def test_takeover_file_left_by_a_dead_taker_does_not_block_forever(tmp_path, guard):
    store = RunStore(tmp_path / "runs", tmp_path / "cache", lease=0.5, poll_seconds=0.05)
    lock = lock_path(store, "toy", {"s": 0})
    lock.write_text(lock_json(pid=dead_pid(), start="1"))
    takeover = lock.with_name(".lock.takeover")
    takeover.write_text(lock_json(pid=dead_pid(), start="1") if guard == "dead-taker" else "")
    if guard == "empty-old":
        backdate(takeover)
    calls = []
    bounded(lambda: store.get_or_compute("toy", {"s": 0}, counting(calls)))
    assert calls == [os.getpid()] and not takeover.exists() and not lock.exists()


def test_release_leaves_a_lock_that_was_taken_over(tmp_path):
    path = tmp_path / ".lock"
    mine = Lock(path, lease=30)
    assert mine.acquire()
    path.unlink()
    path.write_text(lock_json(token="someone-else"))  # judged dead and taken over meanwhile
    mine.release()
    assert Lock.read(path)["token"] == "someone-else"


def test_heartbeat_keeps_a_held_lock_fresh(tmp_path):
    path = tmp_path / ".lock"
    lock = Lock(path, lease=0.2)
    assert lock.acquire()
    try:
        backdate(path)
        old = path.stat().st_mtime
        wait_until(lambda: path.stat().st_mtime > old, what="a heartbeat")
        assert Lock.read(path)["token"] == lock.token
    finally:
        lock.release()
    assert not path.exists()


def test_failed_attempt_counts_towards_the_wall_time(store):
    cfg = {"seed": 0}

    def fail(ctx):
        time.sleep(0.05)
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        store.get_or_compute("toy", cfg, fail)
    spent = json.loads((store.cache / "toy" / config_hash("toy", cfg) / "elapsed.json").read_text())["seconds"]
    rec = store.get_or_compute("toy", cfg, counting([]))
    pv = rec["provenance"]
    assert spent >= 0.05 and pv["resumed_after_s"] == round(spent, 3) and pv["wall_time_s"] >= pv["resumed_after_s"]
    assert not (store.cache / "toy" / config_hash("toy", cfg) / "elapsed.json").exists()


def busy(seconds):
    """Spend ``seconds`` of this process's CPU time (not wall time)."""
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


def test_cpu_time_counts_work_not_waiting_and_survives_a_resume(store):
    """A record's cpu_time_s is the CPU its compute used (across attempts); sleeping (a paused or contended
    run) adds wall time only."""
    cfg = {"seed": 1}

    def fail(ctx):
        busy(0.2)
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        store.get_or_compute("toy", cfg, fail)
    times = json.loads((store.cache / "toy" / config_hash("toy", cfg) / "elapsed.json").read_text())
    assert times["cpu_seconds"] >= 0.2

    def sleepy(ctx):
        time.sleep(0.4)
        busy(0.1)
        return {"metrics": {"x": 1.0}}

    pv = store.get_or_compute("toy", cfg, sleepy)["provenance"]
    assert pv["cpu_time_s"] >= 0.3  # both attempts' work
    assert pv["wall_time_s"] - pv["cpu_time_s"] >= 0.3  # the sleep is wall time only
    from miue.runs import compute_seconds
    rec = {"provenance": dict(pv, device="cpu", torch_threads=2)}
    assert compute_seconds(rec) == pytest.approx(pv["cpu_time_s"] / 2)  # the cost table's and grid's time
    assert compute_seconds({"provenance": dict(pv, device="cuda")}) == pv["wall_time_s"]  # a GPU: wall time
    assert compute_seconds({"provenance": {k: v for k, v in pv.items() if k != "cpu_time_s"}}) == pv["wall_time_s"]


def test_an_input_still_computing_counts_as_inputs_in_what_a_heartbeat_keeps(store):
    """Killed while it computes an input, a run resumes from what its last heartbeat kept: the input's time so far
    must be there as inputs, not as the run's own (a 16,000-image victim killed during its poison's regeneration
    recorded 992 s of its own compute for a 270-s training)."""
    seen = {}

    def parent(ctx):
        busy(0.1)

        def child(inner):
            busy(0.4)
            seen["beat"] = ctx._times()  # what the parent's heartbeat writes now
            return {"metrics": {"x": 1.0}}
        store.get_or_compute("input", {"seed": 3}, child)
        seen["after"] = ctx._times()
        return {"metrics": {"y": 1.0}}

    par = store.get_or_compute("toy", {"seed": 7}, parent)["provenance"]
    beat = seen["beat"]
    assert beat["inputs_cpu_seconds"] >= 0.4 and beat["inputs_seconds"] >= beat["inputs_cpu_seconds"] - 0.05
    own = beat["cpu_seconds"] - beat["inputs_cpu_seconds"]  # the run's own: the 0.1 s before the input
    assert 0.1 <= own < beat["inputs_cpu_seconds"]
    kid = store.get("input", {"seed": 3})["provenance"]
    # once the input is done it is counted once, by its record's time
    assert seen["after"]["inputs_cpu_seconds"] == pytest.approx(kid["cpu_time_s"], abs=0.01)
    assert par["inputs_cpu_time_s"] == pytest.approx(kid["cpu_time_s"], abs=0.01)


def test_inputs_computed_inside_a_run_count_in_their_own_record_only(store):
    """A run that computes a missing input (another run, or a recorded input's artifacts regenerated for a lost
    cache) records the time that took as its inputs' time, and its compute time leaves it out, so the Reproduce
    page and the grid's estimates count each run once."""
    from miue.runs import compute_seconds

    def child(ctx):
        busy(0.4)
        return {"metrics": {"x": 1.0}}

    def parent(ctx):
        busy(0.1)
        store.get_or_compute("input", {"seed": 0}, child)
        return {"metrics": {"y": 1.0}}

    par = store.get_or_compute("toy", {"seed": 5}, parent)["provenance"]
    kid = store.get("input", {"seed": 0})["provenance"]
    assert kid["inputs_cpu_time_s"] == 0.0 and kid["cpu_time_s"] >= 0.4
    assert par["inputs_cpu_time_s"] >= kid["cpu_time_s"] and par["inputs_wall_time_s"] >= kid["wall_time_s"]
    own = compute_seconds({"provenance": dict(par, device="cpu", torch_threads=1)})
    assert own == pytest.approx(par["cpu_time_s"] - par["inputs_cpu_time_s"])
    assert 0.1 <= own <= par["cpu_time_s"] - kid["cpu_time_s"]
    assert compute_seconds({"provenance": dict(par, device="cuda")}) == pytest.approx(
        par["wall_time_s"] - par["inputs_wall_time_s"])

    # a regenerated input (record kept, artifacts recomputed with write=False) and a failed one are charged too
    def parent2(ctx):
        store.get_or_compute("input", {"seed": 0}, child, force=True, write=False)
        with pytest.raises(ZeroDivisionError):
            store.get_or_compute("input", {"seed": 1}, lambda c: (busy(0.2), 1 / 0))
        return {"metrics": {"y": 2.0}}

    par2 = store.get_or_compute("toy", {"seed": 6}, parent2)["provenance"]
    assert par2["inputs_cpu_time_s"] >= 0.6  # the regenerated input's 0.4 s and the failed one's 0.2 s


def test_the_reproduce_page_counts_records_that_predate_keeping_inputs_apart(store, monkeypatch):
    """Records without ``inputs_cpu_time_s`` (made before a run's inputs were kept apart) are counted, once
    each, as the part of the recompute time that may include a regenerated input twice."""
    import miue.chapters as ch
    from miue.runs import compute_seconds
    new = store.get_or_compute("toy", {"seed": 7}, lambda ctx: {"metrics": {"x": 1.0}})
    cfg = {"seed": 8}
    old = store.get_or_compute("toy", cfg, lambda ctx: {"metrics": {"x": 2.0}})
    path = store.record_path("toy", old["hash"])
    rec = json.loads(path.read_text())
    for key in ("inputs_cpu_time_s", "inputs_wall_time_s", "checksum"):
        rec.get("provenance", {}).pop(key, None)
        rec.pop(key, None) if key == "checksum" else None
    rec["checksum"] = _checksum(rec)
    path.write_text(json.dumps(rec, indent=1, sort_keys=True) + "\n")
    specs = [ch.StoredSpec("toy", json.dumps(c, sort_keys=True)) for c in ({"seed": 7}, cfg)]
    monkeypatch.setattr(ch, "chapter_runs", lambda p: iter([("a", specs, {s.address for s in specs}),
                                                             ("b", specs, set())]))
    runs, seconds = ch.cost_without_inputs_kept_apart(None, store)
    assert runs == 1 and seconds == pytest.approx(compute_seconds(store.get("toy", cfg)))
    assert "inputs_cpu_time_s" in new["provenance"]


def test_a_resume_whose_earlier_cpu_time_was_not_kept_records_it_as_unknown(store):
    """A progress file with wall time only (written before CPU time was kept): the record's CPU time is None,
    not the last attempt's alone, and its compute time falls back to the wall time."""
    from miue.runs import compute_seconds
    cfg = {"seed": 2}
    folder = store.cache / "toy" / config_hash("toy", cfg)
    folder.mkdir(parents=True)
    (folder / "elapsed.json").write_text(json.dumps({"seconds": 100.0}))
    pv = store.get_or_compute("toy", cfg, lambda ctx: {"metrics": {"x": 1.0}})["provenance"]
    assert pv["cpu_time_s"] is None and pv["resumed_after_s"] == 100.0 and pv["wall_time_s"] >= 100.0
    assert compute_seconds({"provenance": {**pv, "torch_threads": 2, "device": "cpu"}}) == pv["wall_time_s"]


# -- several processes ------------------------------------------------------------------------------------

def _race_worker(root, cache, kind, rounds, barrier, out, inject, pause):
    """One of several processes asking for the same runs at once; ``inject`` widens the race windows:
    'slow-judge' pauses a process after it judged a lock stale and before it acts on that judgement,
    'slow-distrust' pauses it after it read a record as corrupt and before it sets the record aside."""
    import random

    import miue.runs as runs
    rng = random.Random(os.getpid())
    if inject == "slow-judge":
        judge = runs.Lock.holder_alive

        def slow_judge(self, *args, **kwargs):
            alive = judge(self, *args, **kwargs)
            if not alive:
                time.sleep(rng.uniform(0, 0.05))
            return alive

        runs.Lock.holder_alive = slow_judge
    elif inject == "slow-distrust":
        distrust = runs.RunStore._distrust

        def slow_distrust(self, *args, **kwargs):
            time.sleep(rng.uniform(0, 1.5))
            return distrust(self, *args, **kwargs)

        runs.RunStore._distrust = slow_distrust
    store = RunStore(root, cache, poll_seconds=0.05)
    for r in rounds:
        barrier.wait(HANG)

        def compute(ctx, r=r):
            (ctx.artifacts / f"by-{os.getpid()}").write_text("")
            time.sleep(pause)
            return {"metrics": {"round": r, "pid": os.getpid()}}

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rec = store.get_or_compute(kind, {"round": r}, compute)
        out.put((r, os.getpid(), rec["metrics"]["pid"]))


def _race(root, cache, kind, rounds, n, inject, pause):
    ctx = mp.get_context("spawn")
    barrier, out = ctx.Barrier(n), ctx.Queue()
    procs = [ctx.Process(target=_race_worker, args=(root, cache, kind, rounds, barrier, out, inject, pause))
             for _ in range(n)]
    for p in procs:
        p.start()
    try:
        results = [out.get(timeout=2 * HANG) for _ in range(n * len(rounds))]
    finally:
        for p in procs:
            p.join(HANG)
            if p.is_alive():
                p.kill()
    assert all(p.exitcode == 0 for p in procs), [p.exitcode for p in procs]
    return results


STALE_KINDS = ["dead-pid", "old-empty", "old-garbage", "elsewhere-old", "reused-pid",
               "dead-pid", "old-empty", "reused-pid"]


@pytest.mark.slow
def test_stale_lock_met_by_several_processes_at_once_is_computed_exactly_once(tmp_path):
    root, cache = tmp_path / "runs", tmp_path / "cache"
    store = RunStore(root, cache)
    for r, stale in enumerate(STALE_KINDS):
        lock = lock_path(store, "stale", {"round": r})
        lock.write_text({"dead-pid": lock_json(pid=dead_pid(), start="1"), "old-empty": "",
                         "old-garbage": "\x00garbage", "elsewhere-old": lock_json(host="elsewhere", pid=1),
                         "reused-pid": lock_json(pid=os.getpid(), start="0")}[stale])
        backdate(lock)
    n = 5
    results = _race(root, cache, "stale", list(range(len(STALE_KINDS))), n, "slow-judge", 0.2)
    for r, stale in enumerate(STALE_KINDS):
        markers = list((cache / "stale" / config_hash("stale", {"round": r})).glob("by-*"))
        assert len(markers) == 1, f"round {r} ({stale}): {len(markers)} processes computed"
        computed_by = {got for rr, _, got in results if rr == r}
        assert computed_by == {int(markers[0].name[3:])}  # every process got that one record
        assert len([1 for rr, _, _ in results if rr == r]) == n


@pytest.mark.slow
def test_corrupt_record_met_by_several_processes_is_recomputed_once(tmp_path):
    root, cache = tmp_path / "runs", tmp_path / "cache"
    store = RunStore(root, cache)
    rounds = [0, 1, 2, 3]
    for r in rounds:
        rec = store.get_or_compute("corrupt", {"round": r}, lambda ctx: {"metrics": {"pid": -1}})
        path = store.record_path("corrupt", rec["hash"])
        path.write_text(path.read_text()[: 60])  # truncated
    results = _race(root, cache, "corrupt", rounds, 4, "slow-distrust", 0.0)
    for r in rounds:
        h = config_hash("corrupt", {"round": r})
        markers = list((cache / "corrupt" / h).glob("by-*"))
        assert len(markers) == 1, f"round {r}: recomputed {len(markers)} times"
        assert (root / "corrupt" / f"{h}.corrupt").exists()
        good = store.get("corrupt", {"round": r})
        assert good is not None and good["metrics"]["pid"] == int(markers[0].name[3:])
        assert {got for rr, _, got in results if rr == r} == {good["metrics"]["pid"]}


# -- a holder killed mid-compute ----------------------------------------------------------------------------

STEPS = 30


def _count(ctx, pause):
    ck = ctx.checkpoint()
    state = ck.load()
    start, total = (state[0], state[1]["total"]) if state else (0, torch.zeros(1, dtype=torch.float64))
    for step in range(start, STEPS):
        time.sleep(pause)
        total = total + step
        ck.save(step + 1, tensors={"total": total})
    return {"metrics": {"total": total.item(), "resumed_from": start}}


def _killed_holder(root, cache, cfg):
    import miue.runs as runs
    import miue.runs.lock
    miue.runs.lock.HEARTBEAT_SECONDS = 0.02  # persist the elapsed time often
    runs.RunStore(root, cache, poll_seconds=0.05).get_or_compute("resume", cfg, lambda ctx: _count(ctx, 0.1))


def test_holder_killed_mid_compute_is_taken_over_and_resumed(tmp_path, capsys):
    root, cache = tmp_path / "runs", tmp_path / "cache"
    cfg = {"seed": 7}
    folder = cache / "resume" / config_hash("resume", cfg)
    ctx = mp.get_context("spawn")
    p = ctx.Process(target=_killed_holder, args=(root, cache, cfg))
    p.start()

    def progress():
        try:
            epoch = load_tensors(folder / "checkpoint.safetensors")[1]["epoch"]
            seconds = json.loads((folder / "elapsed.json").read_text())["seconds"]
        except Exception:  # noqa: BLE001 - not written yet
            return False
        return epoch >= 4 and seconds > 0

    try:
        wait_until(progress, what="the holder's checkpoints")
        os.kill(p.pid, signal.SIGKILL)
        wait_until(lambda: proc_state(p.pid) in ("Z", None), what="the kill")  # a zombie: not reaped yet
        spent = json.loads((folder / "elapsed.json").read_text())["seconds"]
        assert (folder / ".lock").exists() and Lock.read(folder / ".lock")["pid"] == p.pid
        store = RunStore(root, cache, poll_seconds=0.05)
        rec = bounded(lambda: store.get_or_compute("resume", cfg, lambda c: _count(c, 0.0)))
    finally:
        p.join(HANG)
    assert p.exitcode == -signal.SIGKILL
    assert rec["metrics"]["total"] == sum(range(STEPS)) and rec["metrics"]["resumed_from"] >= 4
    pv = rec["provenance"]
    assert pv["resumed_after_s"] > 0 and pv["resumed_after_s"] >= round(spent, 3) - 1e-3
    assert pv["wall_time_s"] >= pv["resumed_after_s"]  # wall time adds up across resumes
    assert "waiting for run" not in capsys.readouterr().err
    assert not (folder / "elapsed.json").exists() and not (folder / ".lock").exists()


# ------------------------------------------------------------------------------------------------ records

NON_FINITE = {
    "nan": {"metrics": {"acc": math.nan}},
    "inf": {"metrics": {"acc": math.inf}},
    "minus-inf": {"metrics": {"loss": -math.inf}},
    "nested": {"metrics": {"per_class": {"a": [0.5, math.nan]}}},
    "numpy-nan": {"metrics": {"acc": np.float32("nan")}},
    "history-nan": {"metrics": {"acc": 0.5}, "history": [{"epoch": 1, "loss": math.nan}]},
    "samples-inf": {"metrics": {"acc": 0.5}, "samples": {"x": [math.inf]}},
}


@pytest.mark.parametrize("case", list(NON_FINITE))
def test_non_finite_results_are_refused_and_nothing_is_written(store, case):
    with pytest.raises(ValueError, match="non-finite"):
        store.get_or_compute("toy", {"seed": 0}, lambda ctx: NON_FINITE[case])
    assert not list(store.root.rglob("*.json")) and store.get("toy", {"seed": 0}) is None


def test_numpy_scalars_in_metrics_are_stored_as_numbers(store):
    rec = store.get_or_compute("toy", {"seed": 0}, lambda ctx: {"metrics": {"acc": np.float32(0.5),
                                                                           "n": np.int64(3)}})
    assert rec["metrics"] == {"acc": 0.5, "n": 3} and store.get("toy", {"seed": 0}) == rec


def _damage_record(path, how):
    text = path.read_text()
    if how == "truncated":
        path.write_text(text[: len(text) // 2])
    elif how == "zero-length":
        path.write_bytes(b"")
    elif how == "edited":
        path.write_text(text.replace('"v": 1', '"v": 2'))
    elif how == "nan-literal":
        path.write_text(text.replace('"v": 1', '"v": NaN'))
    elif how == "binary":
        path.write_bytes(os.urandom(64) + b"\xff\xfe")
    elif how == "json-list":
        path.write_text("[1, 2]")
    elif how == "mis-addressed":  # another run's config at this address, with a consistent checksum
        record = json.loads(text)
        record["config"] = {"seed": 99}
        record["checksum"] = _checksum(record)
        path.write_text(json.dumps(record))
    else:
        raise AssertionError(how)


@pytest.mark.parametrize("how", ["truncated", "zero-length", "edited", "nan-literal", "binary", "json-list",
                                 "mis-addressed"])
def test_damaged_record_is_detected_set_aside_and_recomputed(store, how):
    cfg = {"seed": 0}
    calls = []
    rec = store.get_or_compute("toy", cfg, counting(calls, {"v": 1}))
    path = store.record_path("toy", rec["hash"])
    _damage_record(path, how)
    with pytest.warns(UserWarning, match="recomputed"):
        again = store.get_or_compute("toy", cfg, counting(calls, {"v": 3}))
    assert len(calls) == 2 and again["metrics"] == {"v": 3} and again["config"] == cfg
    assert path.with_suffix(".corrupt").exists() and store.get("toy", cfg) == again


def test_record_of_another_schema_raises_and_is_left_in_place(store):
    cfg = {"seed": 0}
    rec = store.get_or_compute("toy", cfg, lambda ctx: {"metrics": {}})
    rec["schema"] = 2
    rec["checksum"] = _checksum(rec)
    path = store.record_path("toy", rec["hash"])
    path.write_text(json.dumps(rec))
    before = path.read_bytes()
    with pytest.raises(RecordVersionError, match="schema 2"):
        store.get_or_compute("toy", cfg, lambda ctx: {"metrics": {}})
    assert path.read_bytes() == before


def test_no_compute_refuses_a_missing_run_and_serves_a_present_one(store, monkeypatch):
    calls = []
    monkeypatch.setenv("MIUE_NO_COMPUTE", "1")
    with pytest.raises(ComputeForbidden, match="MIUE_NO_COMPUTE"):
        store.get_or_compute("toy", {"seed": 0}, counting(calls))
    assert calls == [] and not list(store.root.rglob("*.json"))
    monkeypatch.delenv("MIUE_NO_COMPUTE")
    rec = store.get_or_compute("toy", {"seed": 0}, counting(calls))
    monkeypatch.setenv("MIUE_NO_COMPUTE", "1")
    assert store.get_or_compute("toy", {"seed": 0}, counting(calls)) == rec and calls == [os.getpid()]


@pytest.mark.parametrize("value", ["0", "false", ""])
def test_no_compute_switched_off_explicitly_allows_computing(store, monkeypatch, value):
    monkeypatch.setenv("MIUE_NO_COMPUTE", value)
    calls = []
    store.get_or_compute("toy", {"seed": 0}, counting(calls))
    assert calls == [os.getpid()]


def test_compute_returning_no_dict_is_refused(store):
    with pytest.raises(TypeError, match="must return a dict"):
        store.get_or_compute("toy", {"seed": 0}, lambda ctx: None)
    assert not list(store.root.rglob("*.json"))


# ------------------------------------------------------------------------------------------------ artifacts

def _profile():
    from miue import profiles
    return profiles.profile("smoke", dataset="digits", n_train=None, n_test=None, victim_epochs=1,
                            attacks={"random": {}})


def _tamper(path, how):
    if how == "random-bytes":
        path.write_bytes(os.urandom(path.stat().st_size))
        return
    tensors, meta = load_tensors(path)
    save_tensors(path, {"delta": tensors["delta"] * 4}, meta)  # a valid file with the same metadata
    if how == "times-4-without-manifest":
        (path.parent / "manifest.json").unlink()


@pytest.mark.parametrize("how", ["random-bytes", "times-4", "times-4-without-manifest"])
def test_damaged_poison_artifact_is_set_aside_and_regenerated(store, how):
    from miue import experiments as ex
    spec = ex.poison_spec(_profile(), "random")
    rec = ex.run(spec, store, progress=False, device="cpu")
    record_file = store.record_path(spec.kind, rec["hash"])
    before = record_file.read_bytes()
    path = store.artifact_path(spec.kind, rec["hash"], ex.POISON_FILE)
    good = Poison.load(path)

    _tamper(path, how)
    with pytest.warns(UserWarning, match="set aside"):
        assert store.verified_artifact(spec.kind, rec["hash"], ex.POISON_FILE) is None
    assert not path.exists() and path.with_name(path.name + ".corrupt").exists()

    pois = ex.load_poison(spec, store, progress=False, device="cpu")  # regenerated into the cache
    assert torch.equal(pois.delta, good.delta) and record_file.read_bytes() == before
    _tamper(path, how)  # once more, straight through load_poison
    with pytest.warns(UserWarning, match="tampered with or damaged"):
        pois = ex.load_poison(spec, store, progress=False, device="cpu")
    assert torch.equal(pois.delta, good.delta) and record_file.read_bytes() == before
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert store.verified_artifact(spec.kind, rec["hash"], ex.POISON_FILE) == path


def test_asking_for_the_poison_of_clean_data_says_there_is_none(store):
    from miue import experiments as ex
    for ask in (ex.poison, ex.poison_record):
        with pytest.raises(ValueError, match="clean data has no poison"):
            ask(_profile(), "clean", store, progress=False)
    with pytest.raises(TypeError, match="takes a run spec"):
        ex.run(None, store)


def _write_not_a_poison(path, how):
    delta = torch.zeros(2, 1, 4, 4)
    if how == "pickle":
        path.write_bytes(pickle.dumps({"delta": delta.numpy(), "eps": 8 / 255}))
    elif how == "torch-save":
        torch.save({"delta": delta, "eps": 8 / 255}, path)
    elif how == "random-bytes":
        path.write_bytes(os.urandom(512))
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "safetensors-without-poison-metadata":
        save_tensors(path, {"x": delta})
    elif how == "delta-without-eps":
        save_tensors(path, {"delta": delta}, {"method": "em"})
    elif how == "eps-not-a-number":
        save_tensors(path, {"delta": delta}, {"eps": "8/255"})
    elif how == "integer-delta":
        save_tensors(path, {"delta": delta.to(torch.uint8)}, {"eps": 8 / 255})
    else:
        raise AssertionError(how)


@pytest.mark.parametrize("how", ["pickle", "torch-save", "random-bytes", "empty", "safetensors-without-poison-metadata",
                                 "delta-without-eps", "eps-not-a-number", "integer-delta"])
def test_loading_what_is_not_a_poison_says_so(tmp_path, how):
    path = tmp_path / "p.safetensors"
    _write_not_a_poison(path, how)
    with pytest.raises(NotAPoisonFile, match="not a poison"):
        Poison.load(path)


@pytest.mark.parametrize("with_images", [True, False])
def test_loading_a_poison_beyond_its_budget_is_refused(tmp_path, digits, with_images):
    images = digits[0].images[:20]
    Poison(torch.full(images.shape, 12 / 255), 8 / 255, {"method": "em"}).save(tmp_path / "p.safetensors")
    with pytest.raises(InvalidPoisonError, match="exceeds"):
        Poison.load(tmp_path / "p.safetensors", images=images if with_images else None)


def test_loading_a_poison_with_nan_is_refused(tmp_path):
    Poison(torch.full((3, 1, 8, 8), math.nan), 8 / 255, {"method": "em"}).save(tmp_path / "p.safetensors")
    with pytest.raises(InvalidPoisonError, match="NaN"):
        Poison.load(tmp_path / "p.safetensors")


@pytest.mark.parametrize("damage", ["overwritten", "truncated"])
def test_loaded_tensors_do_not_alias_their_file(tmp_path, damage):
    """A file overwritten or cut short in place after loading changes nothing already loaded (no mmap)."""
    delta = (torch.rand(4, 1, 8, 8) * 2 - 1) * 8 / 255
    path = tmp_path / "p.safetensors"
    Poison(delta.clone(), 8 / 255, {"method": "random"}).save(path)
    loaded = Poison.load(path)
    raw = path.read_bytes()
    with open(path, "r+b") as f:  # in place, same inode
        if damage == "overwritten":
            f.write(os.urandom(len(raw)))
        else:
            f.truncate(16)
    assert torch.equal(loaded.delta, delta)


def test_applying_a_poison_to_float_images_says_how_to_convert(digits):
    images = digits[0].images[:4]
    p = Poison(torch.zeros(images.shape), 8 / 255)
    with pytest.raises(TypeError, match=r"uint8.*\(x \* 255\)\.round\(\)\.to\(torch\.uint8\)"):
        p.apply(images.float() / 255)


# ------------------------------------------------------------------------------------------------ checkpoints

def _damage_checkpoint(ck, how):
    if how == "random-bytes":
        ck.path.write_bytes(os.urandom(ck.path.stat().st_size))
    elif how == "truncated":
        raw = ck.path.read_bytes()
        ck.path.write_bytes(raw[: len(raw) // 2])
    elif how == "nan-weights":
        bad = torch.nn.Linear(3, 2)
        with torch.no_grad():
            bad.weight.fill_(math.nan)
        os.unlink(ck.path)  # a valid file written in place, without rotating the previous one
        save_tensors(ck.path, {f"model.{k}": v for k, v in bad.state_dict().items()}, {"epoch": 2})
    else:
        raise AssertionError(how)


@pytest.mark.parametrize("with_previous", [True, False], ids=["with-prev", "no-prev"])
@pytest.mark.parametrize("how", ["random-bytes", "truncated", "nan-weights"])
def test_bad_checkpoint_is_set_aside_and_the_previous_one_used(tmp_path, how, with_previous):
    torch.manual_seed(0)
    first, second = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    ck = Checkpoint(tmp_path / "checkpoint.safetensors")
    if with_previous:
        ck.save(1, model=first)
    ck.save(2, model=second)
    assert ck.previous.exists() is with_previous
    _damage_checkpoint(ck, how)
    fresh = torch.nn.Linear(3, 2)
    with pytest.warns(UserWarning, match="set aside"):
        got = ck.load(model=fresh)
    assert (tmp_path / "checkpoint.safetensors.bad").exists() and not ck.path.exists()
    if with_previous:
        assert got[0] == 1 and torch.equal(fresh.weight, first.weight)
    else:
        assert got is None


def test_interrupted_run_with_a_damaged_latest_checkpoint_resumes_from_the_previous_epoch(store):
    cfg = {"seed": 1}

    def compute(ctx, fail_at=None):
        ck = ctx.checkpoint()
        state = ck.load()
        start, total = (state[0], state[1]["total"]) if state else (0, torch.zeros(1))
        for step in range(start, 5):
            if step == fail_at:
                raise RuntimeError("interrupted")
            total = total + step
            ck.save(step + 1, tensors={"total": total})
        return {"metrics": {"total": total.item(), "resumed_from": start}}

    with pytest.raises(RuntimeError, match="interrupted"):
        store.get_or_compute("toy", cfg, lambda ctx: compute(ctx, fail_at=3))
    ck = Checkpoint(store.artifacts("toy", config_hash("toy", cfg)) / "checkpoint.safetensors")
    _damage_checkpoint(ck, "truncated")
    with pytest.warns(UserWarning, match="unusable"):
        rec = store.get_or_compute("toy", cfg, compute)
    assert rec["metrics"] == {"total": 10.0, "resumed_from": 2}


def test_checkpoint_with_a_nonsense_epoch_is_set_aside(tmp_path):
    ck = Checkpoint(tmp_path / "checkpoint.safetensors")
    save_tensors(ck.path, {"t.x": torch.zeros(1)}, {"epoch": "3"})
    with pytest.warns(UserWarning, match="epoch"):
        assert ck.load() is None


# ------------------------------------------------------------------------------------------------ settings

ATTACK_SETTINGS = [
    ("miue", {"epochs": "3"}, "epochs", r"int"),
    ("miue", {"epochs": 2.5}, "epochs", r"int"),
    ("miue", {"step_size": "0.01"}, "step_size", r"float in \(0, 1\]"),
    ("miue", {"epochs": 0}, "epochs", r"\[1, ∞\)"),
    ("miue", {"tau": 0}, "tau", r"\(0, ∞\)"),
    ("em", {"batch_size": 0}, "batch_size", r"\[1, ∞\)"),
    ("miue", {"eps": True}, "eps", r"float in \(0, 1\]"),
    ("miue", {"eps": 2.0}, "eps", r"\(0, 1\]"),
    ("miue", {"eps": math.nan}, "eps", r"NaN"),
    ("miue", {"distance": "x"}, "distance", r"'all', 'same-class'"),
    ("miue", {"model": "resnet-18"}, "model", r"resnet18"),
    ("miue", {"epoch": 3}, "epoch", r"settings are"),
]


@pytest.mark.parametrize("name, overrides, setting, allowed", ATTACK_SETTINGS,
                         ids=[f"{n}-{'-'.join(f'{k}={v!r}' for k, v in o.items())}" for n, o, _, _ in ATTACK_SETTINGS])
def test_bad_attack_setting_is_named_with_what_is_allowed(name, overrides, setting, allowed):
    from miue.attacks import create_attack
    with pytest.raises(ValueError, match=allowed) as info:
        create_attack(name, **overrides)
    assert f"'{setting}'" in str(info.value)


def test_numpy_float_budget_is_accepted():
    from miue.attacks import create_attack
    a = create_attack("miue", eps=np.float64(8 / 255))
    assert type(a.config.eps) is float and a.config.eps == pytest.approx(8 / 255)


PROFILE_OVERRIDES = [
    ({"seeds": []}, "seeds", "non-empty"),
    ({"victim_epochs": 0}, "victim_epochs", "at least 1"),
    ({"victim_batch_size": 0}, "victim_batch_size", "at least 1"),
    ({"n_train": 5}, "n_train", "at least 10"),
    ({"attacks": {"miue": {"epochs": 0}}}, "epochs", r"\[1, ∞\)"),
    ({"attacks": {"nope": {}}}, "attacks", "keyed by attack names"),
    ({"victim_epochs": "5"}, "victim_epochs", "must be int"),
]


@pytest.mark.parametrize("overrides, field, allowed", PROFILE_OVERRIDES,
                         ids=[next(iter(o)) + "-" + str(i) for i, (o, _, _) in enumerate(PROFILE_OVERRIDES)])
def test_bad_profile_override_is_named_with_what_is_allowed(overrides, field, allowed):
    from miue import profiles
    with pytest.raises((ValueError, TypeError), match=allowed) as info:
        profiles.profile("smoke", **overrides)
    assert f"'{field}'" in str(info.value)


def test_profile_n_train_none_means_the_whole_split():
    from miue import profiles
    assert profiles.profile("cpu", n_train=None).n_train is None


@pytest.mark.parametrize("overrides, setting", [({"epochs": 0}, "epochs"), ({"lr": -1}, "lr"),
                                                ({"schedule": "step"}, "schedule"), ({"batch_size": 1.5}, "batch_size")])
def test_bad_recipe_is_refused(overrides, setting):
    from miue.train import Recipe
    with pytest.raises(ValueError, match=f"'{setting}'"):
        Recipe(**overrides)


# ------------------------------------------------------------------------------------------------ datasets

def _idx(arr: np.ndarray) -> bytes:
    return bytes([0, 0, 8, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape) + arr.tobytes()


def _fake_fashion(root: Path, n=20) -> Path:
    folder = root / "fashion-mnist"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix in ("train", "t10k"):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        (folder / f"{prefix}-images-idx3-ubyte.gz").write_bytes(gzip.compress(_idx(images)))
        (folder / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx(labels)))
    return folder


def _damage_dataset(folder: Path, how: str):
    images, labels = folder / "train-images-idx3-ubyte.gz", folder / "train-labels-idx1-ubyte.gz"
    if how == "missing-labels":
        labels.unlink()
    elif how == "truncated-images":
        raw = images.read_bytes()
        images.write_bytes(raw[: len(raw) // 2])
    elif how == "images-not-gzip":
        images.write_bytes(os.urandom(4096))
    elif how == "images-short":  # a complete gzip stream whose content is shorter than its header says
        raw = gzip.decompress(images.read_bytes())
        images.write_bytes(gzip.compress(raw[: len(raw) - 28 * 28]))
    elif how == "label-count-differs":
        labels.write_bytes(gzip.compress(_idx(np.zeros(19, np.uint8))))
    elif how == "label-out-of-range":
        labels.write_bytes(gzip.compress(_idx(np.full(20, 12, np.uint8))))
    else:
        raise AssertionError(how)


def test_fake_fashion_mnist_folder_loads(tmp_path, monkeypatch):
    monkeypatch.setattr(mdata, "DEBIAN_FASHION_MNIST", tmp_path / "none")
    _fake_fashion(tmp_path)
    ds = mdata.load("fashion-mnist", "train", root=tmp_path, download=False)
    assert ds.images.shape == (20, 1, 28, 28) and ds.labels.tolist()[:3] == [0, 1, 2]


@pytest.mark.parametrize("how", ["missing-labels", "truncated-images", "images-not-gzip", "images-short",
                                 "label-count-differs", "label-out-of-range"])
def test_damaged_dataset_folder_says_what_is_wrong_and_what_to_do(tmp_path, monkeypatch, how):
    monkeypatch.setattr(mdata, "DEBIAN_FASHION_MNIST", tmp_path / "none")
    folder = _fake_fashion(tmp_path)
    _damage_dataset(folder, how)
    with pytest.raises(mdata.DatasetNotFoundError) as info:
        mdata.load("fashion-mnist", "train", root=tmp_path, download=False)
    msg = str(info.value)
    assert "'fashion-mnist'" in msg and "incomplete or damaged" in msg and str(folder) in msg
    assert "To fix it" in msg and "train-images-idx3-ubyte.gz" in msg
    assert mdata.load("fashion-mnist", "test", root=tmp_path, download=False).images.shape[0] == 20  # intact split
