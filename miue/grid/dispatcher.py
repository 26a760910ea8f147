""":func:`dispatch`: the missing runs on a cluster, wave after wave; a failed run skips its dependents, a deadline
defers the runs that would end after it."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from ..runs import RunStore
from .costs import estimate_seconds, regeneration_seconds
from .executors import CLUSTERS, _executor, _gpu_turn, job_gpus
from .jobs import Outcome, _collect, run_job
from .order import in_order, waves
from .slurm import _collect_slurm


def dispatch(specs, *, cluster: str = "inline", store: RunStore | None = None, folder: str | Path | None = None,
             jobs: int = 1, threads: int | None = None, device: str = "cpu", timeout_min: int = 24 * 60,
             partition: str | None = None, mem_gb: float | None = None, progress: bool = False,
             on_submit=None, poll_seconds: float = 1.0, log=print, deadline: float | None = None,
             estimate=None, gpus: int | None = None) -> list[Outcome]:
    """Compute the missing runs among ``specs`` on ``cluster``; one :class:`Outcome` per dispatched spec.

    ``on_submit(jobs)`` is called with each wave's submitit jobs (tests cancel one there). A failed or
    cancelled job's dependents are skipped, not run; the rest of the grid goes on. With ``deadline`` (a
    ``time.time()`` value) a run starts only when ``estimate(spec)`` seconds (default :func:`estimate_seconds`
    on ``store``; a run without an estimate counts as 0) end before it; the others are DEFERRED, and so is
    every run that depends on one. ``gpus``: GPUs per job (default :func:`job_gpus`); local jobs that ask
    for some take turns over the machine's GPUs.
    """
    if cluster not in CLUSTERS:
        raise ValueError(f"unknown cluster {cluster!r}; choose one of {', '.join(CLUSTERS)}")
    if jobs < 1:
        raise ValueError(f"--jobs must be at least 1, got {jobs}")
    store = store or RunStore()
    threads = threads or (2 if cluster == "inline" else 1)
    gpus = job_gpus(cluster, device, gpus)
    folder = Path(folder or store.cache / "grid-jobs")
    outcomes: list[Outcome] = []
    failed: set[str] = set()
    deferred: set[str] = set()
    if deadline is not None and estimate is None:
        rates: dict = {}

        def estimate(spec):  # its own cost, and regenerating the cached inputs it reads that are missing
            own = estimate_seconds(spec, store, rates)[0]
            return None if own is None else own + regeneration_seconds(spec, store, rates)
    # one process (inline) works in the order listed; parallel jobs go in waves of what can run at once
    for wave in ([s] for s in in_order(specs, store)) if cluster == "inline" else waves(specs, store):
        ready = []
        for s in wave:
            bad = [d.address for d in s.dependencies() if d.address in failed]
            later = [d.address for d in s.dependencies() if d.address in deferred]
            if bad:
                failed.add(s.address)
                outcomes.append(Outcome(s.address, s.describe(), "SKIPPED", detail=f"needs {bad[0]}, which failed"))
            elif later:
                deferred.add(s.address)
                outcomes.append(Outcome(s.address, s.describe(), "DEFERRED", detail=f"needs {later[0]}, deferred"))
            else:
                ready.append(s)
        if not ready:
            continue
        gate = None if deadline is None else _Gate(deadline, estimate)
        results = _run_wave(ready, cluster, store, folder, jobs, threads, device, timeout_min, partition, mem_gb,
                            progress, on_submit, poll_seconds, log, gate, gpus)
        for o in results:
            if o.state == "DEFERRED":
                deferred.add(o.address)
            elif o.state != "COMPLETED":
                failed.add(o.address)
        outcomes += results
    return outcomes


@dataclass
class _Gate:
    """Whether a run may still start: its estimate ends before the deadline."""

    deadline: float
    estimate: object

    def refuse(self, spec) -> Outcome | None:
        """None when ``spec`` may start now, else its DEFERRED outcome."""
        left = self.deadline - time.time()
        need = self.estimate(spec) or 0.0
        if need <= left:
            return None
        return Outcome(spec.address, spec.describe(), "DEFERRED",
                       detail=f"estimated {need / 60:.1f} min, {max(left, 0) / 60:.1f} min left before the deadline")


def _run_wave(specs, cluster, store, folder, jobs, threads, device, timeout_min, partition, mem_gb, progress,
              on_submit, poll_seconds, log, gate: _Gate | None = None, gpus: int = 0) -> list[Outcome]:
    args = (str(store.root), str(store.cache), threads, device)
    if cluster == "inline":
        out = []
        for s in specs:
            refused = gate and gate.refuse(s)
            if refused:
                out.append(refused)
                continue
            log(f"== {s.describe()} ({s.address})")
            try:
                r = run_job(s, *args, progress=progress)
                out.append(Outcome(s.address, s.describe(), "COMPLETED", r["computed"], r["seconds"]))
            except Exception as exc:  # noqa: BLE001 — reported, the grid goes on
                out.append(Outcome(s.address, s.describe(), "FAILED", detail=f"{type(exc).__name__}: {exc}"[:300]))
        return out
    executor = _executor(cluster, folder, threads, jobs, timeout_min, partition, mem_gb, gpus)
    if cluster == "slurm":  # one array per wave: the deadline is checked when it is submitted
        refused = [o for s in specs if gate and (o := gate.refuse(s))]
        specs = [s for s in specs if s.address not in {o.address for o in refused}]
        if not specs:
            return refused
        submitted = executor.map_array(run_job, specs, *[[a] * len(specs) for a in args])
        pairs = list(zip(specs, submitted))
        log(f"submitted {len(specs)} jobs as Slurm array {submitted[0].job_id.split('_')[0]}")
        if on_submit:
            on_submit(submitted)
        return refused + _collect_slurm(pairs, poll_seconds, log)
    # local: at most `jobs` subprocesses at a time
    pending, running, out, started = list(specs), [], {}, 0
    while pending or running:
        while pending and len(running) < jobs:
            s = pending.pop(0)
            late = gate and gate.refuse(s)
            if late:
                out[s.address] = late
                continue
            if gpus:  # local jobs take turns over the machine's GPUs (several jobs may share one)
                executor.update_parameters(visible_gpus=_gpu_turn(started, gpus))
                started += 1
            job = executor.submit(run_job, s, *args)
            log(f"started {s.describe()} ({s.address}) as local job {job.job_id}")
            running.append((s, job))
            if on_submit:
                on_submit([job])
        for s, job in list(running):
            if job.done():
                running.remove((s, job))
                out[s.address] = _collect(s, job, log)
        if running:
            time.sleep(poll_seconds)
    return [out[s.address] for s in specs]
