"""submitit against a real single-node Slurm cluster (tests/slurm_cluster.py).

Skipped when Slurm is not installed (scripts/install_slurm.sh), unless
MIUE_REQUIRE_SLURM=1, in which case a missing Slurm is a failure.
"""
import os
import sys
import threading
import time
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS))  # for slurm_cluster, whatever pytest's import mode
from slurm_cluster import SlurmCluster, sleep_for, square  # noqa: E402

pytestmark = pytest.mark.slurm


def _within(seconds, fn, *args):
    """fn(*args), failing the test instead of hanging if it takes over `seconds`."""
    out = {}

    def target():
        try:
            out["value"] = fn(*args)
        except BaseException as e:  # noqa: BLE001 - handed back to the test
            out["error"] = e
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        pytest.fail(f"{getattr(fn, '__qualname__', fn)} did not return within {seconds} s")
    if "error" in out:
        raise out["error"]
    return out["value"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    missing = SlurmCluster.available()
    if missing:
        if os.environ.get("MIUE_REQUIRE_SLURM") == "1":
            pytest.fail(missing)
        pytest.skip(missing)
    with SlurmCluster(tmp_path_factory.mktemp("slurm")) as c:
        yield c


@pytest.fixture
def executor(cluster, tmp_path, monkeypatch):
    submitit = pytest.importorskip("submitit")
    for key, value in cluster.env.items():
        monkeypatch.setenv(key, value)
    # the job's Python unpickles functions from slurm_cluster: make it importable there
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")])))
    ex = submitit.AutoExecutor(folder=tmp_path / "submitit", cluster="slurm")
    ex.update_parameters(slurm_partition="debug", cpus_per_task=1, timeout_min=5)
    return ex


def test_job_array_results(executor):
    xs = list(range(6))
    jobs = executor.map_array(square, xs)
    assert len(jobs) == len(xs)
    assert [_within(120, job.result) for job in jobs] == [x * x for x in xs]


def test_cancelled_job_is_reported(executor):
    import submitit

    job = executor.submit(sleep_for, 300)
    deadline = time.monotonic() + 60
    while job.watcher.get_state(job.job_id, mode="force") != "RUNNING":
        assert time.monotonic() < deadline, f"job never started (state {job.state})"
        time.sleep(1)
    job.cancel()
    deadline = time.monotonic() + 60
    while not job.done(force_check=True):
        assert time.monotonic() < deadline, f"cancelled job not done after 60 s (state {job.state})"
        time.sleep(1)
    assert job.state.startswith("CANCELLED")
    # no result file: submitit waits ~15 s for one, then raises
    with pytest.raises(submitit.core.utils.UncompletedJobError, match="CANCELLED"):
        _within(60, job.result)


def test_miue_grid_runs_a_chapter_as_slurm_job_arrays(cluster, tmp_path, monkeypatch):
    """A smoke grid through submitit's Slurm executor: each record lands exactly once, and a job cancelled
    while the grid runs is reported as such (its run is left missing, and a second grid computes only it)."""
    from miue import experiments as ex
    from miue import grid
    from miue.chapters import chapter_specs
    from miue.profiles import profile
    from miue.runs import RunStore

    for key, value in cluster.env.items():
        monkeypatch.setenv(key, value)
    p = profile("smoke")
    specs = chapter_specs("grid_check", p)
    store = RunStore(tmp_path / "runs", tmp_path / "cache")
    victim = ex.victim_spec(p, "random", 0).address
    cancelled = []

    def on_submit(jobs):
        addresses = [j.submission().args[0].address for j in jobs]
        if victim in addresses:
            job = jobs[addresses.index(victim)]
            job.cancel()
            cancelled.append(job.job_id)

    kw = dict(cluster="slurm", store=store, folder=tmp_path / "jobs", jobs=2, threads=1, partition="debug",
              timeout_min=10, log=lambda *_: None)
    out = _within(600, lambda: grid.dispatch(specs, on_submit=on_submit, **kw))
    states = {o.address: o.state for o in out}
    assert cancelled and states.pop(victim) == "CANCELLED", out
    assert set(states.values()) == {"COMPLETED"} and len(states) == 4
    computed = [a for o in out for a in o.computed]
    assert sorted(computed) == sorted(states)  # each completed run computed once, by its own job
    assert store.get("victim", ex.victim_spec(p, "random", 0).config()) is None
    again = _within(600, lambda: grid.dispatch(specs, **kw))
    assert [(o.address, o.state, o.computed) for o in again] == [(victim, "COMPLETED", [victim])]
