"""One grid job: what it runs (:func:`run_job`, the function submitted to submitit, so importable by this path on
a node) and what came of it (:class:`Outcome`)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from .. import experiments as ex
from ..runs import RunStore


def run_job(spec, runs: str, cache: str, threads: int, device: str = "cpu", progress: bool = False) -> dict:
    """What one grid job does (in-process, in a local subprocess or on a Slurm node): compute ``spec`` into
    the store at (``runs``, ``cache``) with ``threads`` torch threads. Returns the address and every run this
    job computed (its dependencies included); a run another job computed meanwhile is read, not recomputed."""
    import torch
    torch.set_num_threads(max(1, int(threads)))
    store = RunStore(runs, cache)
    started = time.perf_counter()
    ex.run(spec, store, progress=progress, device=device)
    return {"address": spec.address, "computed": list(store.computed),
            "seconds": round(time.perf_counter() - started, 3)}


@dataclass
class Outcome:
    """What happened to one dispatched spec."""

    address: str
    what: str
    state: str  # COMPLETED, FAILED, CANCELLED, SKIPPED
    computed: list = field(default_factory=list)
    seconds: float | None = None
    detail: str = ""
    job_id: str | None = None


def _describe_error(exc: BaseException) -> tuple[str, str]:
    """(state, one-line detail) of a job's exception, as submitit reports it."""
    name = type(exc).__name__
    text = str(exc).strip().splitlines()
    line = next((t for t in reversed(text) if t.strip()), name)
    if name == "UncompletedJobError" or "CANCELLED" in str(exc):
        state = "CANCELLED" if "CANCELLED" in str(exc) else "FAILED"
        return state, line[:300]
    return "FAILED", f"{name}: {line}"[:300]


def _collect(spec, job, log) -> Outcome:
    try:
        r = job.result()
        o = Outcome(spec.address, spec.describe(), "COMPLETED", r["computed"], r["seconds"], job_id=str(job.job_id))
    except Exception as exc:  # noqa: BLE001 — submitit's FailedJobError / UncompletedJobError
        state, detail = _describe_error(exc)
        o = Outcome(spec.address, spec.describe(), state, detail=detail, job_id=str(job.job_id))
    log(f"{o.state:<9} {o.what} ({o.address})" + (f": {o.detail}" if o.detail else ""))
    return o
