"""Waiting for a Slurm job array: submitit's states from accounting, and slurmctld's for the jobs accounting never
lists (an array task cancelled before it started)."""

from __future__ import annotations

import time

from .jobs import Outcome, _collect


def _scontrol_state(job_id: str) -> str | None:
    """The job's state as slurmctld knows it (it keeps ended jobs for MinJobAge), or None when unknown."""
    import subprocess
    try:
        out = subprocess.run(["scontrol", "show", "job", "-o", str(job_id)], capture_output=True, text=True,
                             timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    for token in out.split():
        if token.startswith("JobState="):
            return token.split("=", 1)[1]
    return None


def _queued(job_id: str) -> bool:
    """Whether squeue lists the job (array tasks one by one)."""
    import subprocess
    try:
        out = subprocess.run(["squeue", "-h", "-r", "-o", "%i", "-j", str(job_id).split("_")[0]],
                             capture_output=True, text=True, timeout=30).stdout.split()
    except (OSError, subprocess.SubprocessError):
        return True  # cannot tell: keep waiting
    return str(job_id) in out


def _collect_slurm(pairs, poll_seconds: float, log, grace_s: float = 20.0) -> list[Outcome]:
    """Wait for every job of an array. submitit reads states from accounting (sacct), where an array task
    cancelled before it started never appears: such a job is asked of slurmctld instead, and reported
    CANCELLED (or LOST when neither knows it after ``grace_s``) rather than waited on forever."""
    out: dict[int, Outcome] = {}
    unknown_since: dict[int, float] = {}
    while len(out) < len(pairs):
        for i, (spec, job) in enumerate(pairs):
            if i in out:
                continue
            if job.done(force_check=True):
                out[i] = _collect(spec, job, log)
                continue
            if job.state not in ("UNKNOWN", "PENDING"):
                unknown_since.pop(i, None)
                continue
            ctl = _scontrol_state(job.job_id)
            if ctl and ctl.startswith(("CANCELLED", "FAILED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL",
                                       "DEADLINE", "PREEMPTED")):
                state = "CANCELLED" if ctl.startswith("CANCELLED") else "FAILED"
                out[i] = Outcome(spec.address, spec.describe(), state, detail=f"Slurm job {job.job_id}: {ctl}",
                                 job_id=str(job.job_id))
            elif ctl is None and job.state == "UNKNOWN" and not _queued(job.job_id):
                first = unknown_since.setdefault(i, time.monotonic())
                if time.monotonic() - first > grace_s:  # accounting may lag a little behind
                    out[i] = Outcome(spec.address, spec.describe(), "CANCELLED", job_id=str(job.job_id),
                                     detail=f"Slurm job {job.job_id} left the queue before it started "
                                            "(cancelled while pending)")
            else:
                unknown_since.pop(i, None)
            if i in out:
                o = out[i]
                log(f"{o.state:<9} {o.what} ({o.address}): {o.detail}")
        if len(out) < len(pairs):
            time.sleep(max(poll_seconds, 2.0))
    return [out[i] for i in range(len(pairs))]
