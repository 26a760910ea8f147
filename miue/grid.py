"""``miue grid CHAPTER --profile P [--cluster inline|local|slurm]``: compute every missing run of a chapter.

Lists the chapter's run specs (:func:`miue.chapters.chapter_specs`), skips those with records, and dispatches
the rest into the run store, in waves by dependency (poisons before the victims trained on them, victims
before the MI estimates of their features):

- ``inline``: one after another in this process, in the order the chapter lists them, each after the missing
  runs it reads (:func:`in_order`; progress bars in the terminal);
- ``local``: submitit's local executor, at most ``--jobs`` subprocesses at a time;
- ``slurm``: one Slurm job array per wave through submitit (``--jobs`` is the array's parallelism).

Every job opens the same run store, so jobs that race for one run (two grids over one store, two victims of
one missing poison) wait on its lock, and each run is computed once; an interrupted job resumes from its last
checkpoint when the grid is run again. ``--dry-run`` prints each spec with its recorded or estimated cost
(a missing run's estimate adds regenerating the recorded inputs it reads that the cache lacks: after a fresh
clone, or records made on another machine, a victim whose poison is recorded still waits for the poison).
``--within MIN`` starts a run only while its estimate still fits in the MIN minutes from the grid's start
(the rest are DEFERRED, with their dependents, for the next call): a machine lent for a fixed time ends
between runs instead of in the middle of one.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import experiments as ex
from .chapters import CHAPTERS, STUDIES, StoredSpec, chapter_runs, chapter_specs
from .profiles import ProfileError, profile
from .runs import RunStore, compute_seconds

CLUSTERS = ("inline", "local", "slurm")
from .data import SIDES, TRAIN_SIZES as SPLIT_SIZES

PIXELS = {name: side * side for name, side in SIDES.items()}


# ------------------------------------------------------------------------------------------------ jobs

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


def missing_specs(specs, store: RunStore) -> list:
    """The specs without a record in ``store`` (in the listed order)."""
    return [s for s in specs if store.lookup(s) is None]


def waves(specs, store: RunStore) -> list[list]:
    """Group missing runnable specs into waves: a spec goes after every missing spec it depends on."""
    todo = {s.address: s for s in missing_specs(specs, store) if not isinstance(s, StoredSpec)}
    level: dict[str, int] = {}

    def depth(s) -> int:
        if s.address not in level:
            deps = [d for d in s.dependencies() if d.address in todo]
            level[s.address] = 1 + max((depth(d) for d in deps), default=-1)
        return level[s.address]

    out: dict[int, list] = {}
    for s in todo.values():
        out.setdefault(depth(s), []).append(s)
    return [out[k] for k in sorted(out)]


def in_order(specs, store: RunStore) -> list:
    """The missing runnable specs one after another in the order listed, each preceded by the missing specs it
    depends on (depth first): how one process works through a study, so that the first listed runs are done
    first (a background queue cut short by a session's end has finished what it listed first, not every
    poison and no victim)."""
    out, seen = [], set()

    def add(s):
        if s.address in seen:
            return
        seen.add(s.address)
        for d in s.dependencies():
            add(d)
        if not isinstance(s, StoredSpec) and store.lookup(s) is None:
            out.append(s)

    for s in specs:
        add(s)
    return out


def _describe_error(exc: BaseException) -> tuple[str, str]:
    """(state, one-line detail) of a job's exception, as submitit reports it."""
    name = type(exc).__name__
    text = str(exc).strip().splitlines()
    line = next((t for t in reversed(text) if t.strip()), name)
    if name == "UncompletedJobError" or "CANCELLED" in str(exc):
        state = "CANCELLED" if "CANCELLED" in str(exc) else "FAILED"
        return state, line[:300]
    return "FAILED", f"{name}: {line}"[:300]


def job_gpus(cluster: str, device: str, requested: int | None = None, cuda_here: bool | None = None) -> int:
    """GPUs each job asks for: ``requested`` when given, else 1 where the profile's runs go to a GPU (device
    ``cuda…``, or ``auto`` on a local machine that has one), else 0.

    It matters: submitit's local executor sets ``CUDA_VISIBLE_DEVICES`` to the GPUs a job asks for, so a job
    that asks for none trains on the CPU, and a Slurm job that asks for none gets none allocated. On Slurm,
    ``auto`` cannot know the nodes: pass ``--gpus 1`` there."""
    if requested is not None:
        if requested < 0:
            raise ValueError(f"--gpus must be 0 or more, got {requested}")
        return requested
    if cluster == "inline":
        return 0  # the grid's own process: every GPU it sees stays visible
    if str(device).startswith("cuda"):
        return 1
    if device == "auto" and cluster == "local":
        if cuda_here is None:
            import torch
            cuda_here = torch.cuda.is_available()
        return 1 if cuda_here else 0
    return 0


def _executor(cluster: str, folder: Path, threads: int, jobs: int, timeout_min: int, partition: str | None,
              mem_gb: float | None, gpus: int = 0):
    import submitit
    if cluster == "local":
        ex_ = submitit.LocalExecutor(folder=str(folder))
        ex_.update_parameters(timeout_min=timeout_min, gpus_per_node=gpus)
        return ex_
    ex_ = submitit.AutoExecutor(folder=str(folder), cluster="slurm")
    params = {"timeout_min": timeout_min, "cpus_per_task": threads, "slurm_array_parallelism": jobs,
              "name": "miue-grid"}
    if gpus:
        params["gpus_per_node"] = gpus
    if partition:
        params["slurm_partition"] = partition
    if mem_gb:
        params["mem_gb"] = mem_gb
    ex_.update_parameters(**params)
    return ex_


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


def _gpu_turn(k: int, gpus: int, count: int | None = None) -> tuple:
    """The GPUs the ``k``-th local job sees: ``gpus`` of the machine's ``count``, in turn."""
    if count is None:
        import torch
        count = torch.cuda.device_count()
    count = max(count, gpus)
    return tuple((k * gpus + i) % count for i in range(gpus))


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


def _collect(spec, job, log) -> Outcome:
    try:
        r = job.result()
        o = Outcome(spec.address, spec.describe(), "COMPLETED", r["computed"], r["seconds"], job_id=str(job.job_id))
    except Exception as exc:  # noqa: BLE001 — submitit's FailedJobError / UncompletedJobError
        state, detail = _describe_error(exc)
        o = Outcome(spec.address, spec.describe(), state, detail=detail, job_id=str(job.job_id))
    log(f"{o.state:<9} {o.what} ({o.address})" + (f": {o.detail}" if o.detail else ""))
    return o


# ------------------------------------------------------------------------------------------- estimates

def _work(config: dict, kind: str) -> tuple[str, float] | None:
    """(class of run, units of work) of a config: images × epochs × width² × pixels for a victim; the
    method's passes per image (:meth:`miue.attacks.base.Attack.work`) × width² × pixels for a poison (one cut
    from a whole-set poison is a class of its own, next to free beside it); for a SAL run its victim's work,
    at the rate of the recorded SAL runs of that architecture; images × pixels × epochs for a purifier,
    steps × batch × width² × pixels for a denoiser, images × slices for an MI estimate (the victim whose
    features it reads may need computing too: not counted)."""
    n = config.get("n_train") or SPLIT_SIZES.get(config.get("dataset"), 0)
    px = PIXELS.get(config.get("dataset"), 32 * 32)
    if kind == "victim":
        cost = 1.0
        if config.get("defense"):
            from .defenses import create_defense
            cost = create_defense(config["defense"]).relative_cost
        return (f"victim/{config['model']}",
                n * config["recipe"]["epochs"] * config.get("width", 1.0) ** 2 * px * cost)
    if kind == "purifier":  # its fitting and the purification of every image
        d = config["defense"]
        return f"purifier/{d['name']}", n * px * d.get("epochs", 1)
    if kind == "denoiser":
        return "denoiser", config["steps"] * config["batch_size"] * config.get("width", 1) ** 2 * px
    if kind == "mi":
        v = config["victim"]
        m = v.get("n_train") or SPLIT_SIZES.get(v.get("dataset"), 0)
        return f"mi/{config['estimator']}", m * config.get("n_slices", 1)
    if kind == "sal":
        v = _work(config["victim"], "victim")
        return None if v is None else (f"sal/{config['victim']['model']}", v[1])
    if kind == "poison":
        a = config["attack"]
        if config.get("classes") is not None or config.get("fraction", 1.0) != 1.0:
            return "poison/cut", n * px  # cut from its whole-set poison, a run of its own: loading and masking
        from .attacks import ATTACKS
        attack = ATTACKS.get(config["method"])
        units = attack.work(a, n) if attack else n * a.get("epochs", 1) * (1 + a.get("pgd_steps", 0))
        return f"poison/{config['method']}", units * a.get("width", 1.0) ** 2 * px
    return None


NEAR_RECORDS = 3  # records of the same shape that an estimate prefers to all of its kind's


def _shape(config: dict, kind: str) -> tuple:
    """What makes two runs of one class the same size: training images, width (for a victim also whether it
    runs a defense, and its epochs; for an MI estimate its victim's images and the slices), then the dataset
    and the precision, last, so that :func:`_scaled` can fall back to the records of the same dataset and
    precision at any size (a CIFAR-10 victim in bf16 is not costed at a Fashion-MNIST float32 rate)."""
    if kind == "mi":
        v = config["victim"]
        return v.get("n_train"), config.get("n_slices"), v.get("dataset"), _precision(v["recipe"])
    if kind == "victim":
        return (config.get("n_train"), config.get("width", 1.0), bool(config.get("defense")),
                config["recipe"]["epochs"], config.get("dataset"), _precision(config["recipe"]))
    if kind == "poison":
        return (config.get("n_train"), config["attack"].get("width", 1.0), config.get("dataset"),
                _precision(config["attack"]))
    return (kind,)


def _precision(settings: dict) -> str:
    return settings.get("precision", "auto")


def estimate_seconds(spec, store: RunStore, _rates: dict | None = None) -> tuple[float | None, str]:
    """(seconds, how) for ``spec``: its recorded compute time (:func:`miue.runs.compute_seconds`), or an
    estimate from the records of the same kind and method in ``store`` scaled by its unit of work
    (:func:`_work`), from the records of the same size (:func:`_shape`) where there are at least
    :data:`NEAR_RECORDS`, else from all (None when there is nothing to scale); :func:`estimate_errors` says
    how close such estimates come.

    A run recorded on another device (a lent GPU) takes the median time of its measured regenerations on a
    CPU (:meth:`miue.runs.RunStore.regenerations`) where there are any, else it is estimated as if missing, so
    that the seconds are always the recording device's (2 CPU cores); ``how`` then starts with "recorded" too."""
    rec = store.lookup(spec)
    elsewhere = None
    if rec is not None:
        device = rec["provenance"].get("device", "cpu")
        if device == "cpu":
            return compute_seconds(rec), "recorded"
        elsewhere = f"recorded on {device} in {compute_seconds(rec):.0f} s"
        here = _regenerated_seconds(store, rec)
        if here:
            return statistics.median(here), f"{elsewhere}; regenerated on the CPU in {statistics.median(here):.0f} s"
    if spec.config().get("after_epoch"):  # read from its run's cache; the run itself is listed on its own
        return 0.0, "a snapshot of its run"
    w = _work(spec.config(), spec.kind)
    if w is None:
        return (None, elsewhere) if elsewhere else (None, "no estimate")
    per_unit = _rates_of(w[0], store, _rates if _rates is not None else {})
    if not per_unit:
        return (None, elsewhere) if elsewhere else (None, "no estimate")
    sec, how = _scaled(per_unit, _shape(spec.config(), spec.kind), w[1])
    return sec, (f"{elsewhere}; " if elsewhere else "") + how


def _rates_of(cls: str, store: RunStore, rates: dict) -> list:
    """(seconds per unit of work, shape, hash) of every CPU record of class ``cls`` (kind and method) and of
    every record made elsewhere that was regenerated on a CPU (its median regeneration), kept in ``rates``; a
    snapshot's record is left out (its time is its run's, or nothing)."""
    if cls not in rates:
        rates[cls] = []
        for r in store.records(cls.split("/")[0]):
            if r["config"].get("after_epoch"):
                continue
            rw = _work(r["config"], r["kind"])
            if not (rw and rw[0] == cls and rw[1] > 0):
                continue
            cpu = [compute_seconds(r)] if r["provenance"].get("device", "cpu") == "cpu" else \
                _regenerated_seconds(store, r)
            if cpu:
                rates[cls].append((statistics.median(cpu) / rw[1], _shape(r["config"], r["kind"]), r["hash"]))
    return rates[cls]


def _regenerated_seconds(store: RunStore, record: dict) -> list:
    """The compute time of each measured regeneration of ``record``'s run on a CPU (2 threads or not, as
    recorded; a regeneration on a GPU says nothing about the CPU)."""
    return [compute_seconds({"provenance": g}) for g in store.regenerations(record["kind"], record["hash"])
            if str(g.get("device", "cpu")).startswith("cpu") and g.get("wall_time_s") is not None]


def _scaled(per_unit: list, shape: tuple, units: float) -> tuple[float, str]:
    """The median rate × ``units``: the rate per unit is not constant across sizes and widths (per-epoch test
    passes, caches, matrix shapes; a narrow network's time is mostly overhead, not its width² FLOPs), so the
    records of the same shape decide where there are at least :data:`NEAR_RECORDS` of them, else those of the
    same shape at any training-set size (the same width, dataset, defense, epochs and precision: a shape's
    first field is its training images), else the fewer records of either, else those of the same dataset
    and precision (a shape's last two fields), else all. A single record of the very run's shape beats many
    of other widths: a narrow network's time is mostly overhead, so width² scaling runs high (a CIFAR victim
    at width 1/4 was estimated at 70.7 min from one at 1/8; it took 9.4)."""
    same, width = (shape, " of the same size"), (shape[1:], " of the same width (any size)")
    levels = [(*same, NEAR_RECORDS), (*width, NEAR_RECORDS), (*same, 1), (*width, 1)]
    if len(shape) > 2:
        levels.append((shape[-2:], f" on {shape[-2]} at {shape[-1]} precision (any size or width)", 1))
    for level, which, enough in levels:
        near = [u for u, s, _ in per_unit if s[len(s) - len(level):] == level and len(s) == len(shape)]
        if len(near) >= enough:
            return statistics.median(near) * units, f"estimated from {len(near)} records{which}"
    return statistics.median([u for u, _, _ in per_unit]) * units, f"estimated from {len(per_unit)} records"


def estimate_errors(store: RunStore | None = None, kinds=("victim", "poison")):
    """How close :func:`estimate_seconds` comes: each CPU record of ``kinds`` estimated from the other records
    of its class (leave one out) against its recorded compute time. Per class (kind and method or
    architecture): records, the median and worst ratio estimate/recorded, and the share within 1.5× either
    way. The spread is the estimator's and the recordings' (2 cores shared with other work while recording)."""
    import pandas as pd
    store = store or RunStore()
    rates: dict = {}
    ratios: dict = {}
    for kind in kinds:
        for r in store.records(kind):
            w = _work(r["config"], kind)
            if w is None or w[1] <= 0 or r["config"].get("after_epoch") or \
                    r["provenance"].get("device", "cpu") != "cpu" or not compute_seconds(r):
                continue
            others = [u for u in _rates_of(w[0], store, rates) if u[2] != r["hash"]]
            if others:
                est = _scaled(others, _shape(r["config"], kind), w[1])[0]
                ratios.setdefault(w[0], []).append(est / compute_seconds(r))
    rows = []
    for cls, rs in sorted(ratios.items()):
        worst = max(rs, key=lambda x: max(x, 1 / x)) if rs else float("nan")
        rows.append({"class": cls, "records": len(rs), "median estimate / recorded": round(statistics.median(rs), 2),
                     "worst": round(worst, 2), "within 1.5x": round(sum(1 / 1.5 <= x <= 1.5 for x in rs) / len(rs), 2)})
    return pd.DataFrame(rows, columns=["class", "records", "median estimate / recorded", "worst", "within 1.5x"]
                        ).set_index("class")


def _artifacts_missing(kind: str, record: dict, store: RunStore) -> bool:
    names = record.get("artifacts") or {}
    return bool(names) and not all(store.artifact_path(kind, record["hash"], n).is_file() for n in names)


def regeneration_seconds(spec, store: RunStore, _rates: dict | None = None, _seen: set | None = None,
                         fresh_clone: bool = False) -> float:
    """Seconds to regenerate what ``spec`` reads but the cache lacks: every dependency (recursively) that has
    a record but not its artifacts (a fresh clone, a lost cache, a run made on another machine), at its cost
    on the recording CPU (:func:`estimate_seconds`). A dependency without a record is a run of its own.
    ``_seen`` (shared across a chapter) counts each dependency once. ``fresh_clone``: as if the cache were
    empty (what the published book quotes: the same on every machine)."""
    seen = set() if _seen is None else _seen
    rates = _rates if _rates is not None else {}
    total = 0.0
    for d in spec.dependencies():
        if d.address in seen:
            continue
        seen.add(d.address)
        rec = store.lookup(d)
        if rec is not None and (fresh_clone or _artifacts_missing(d.kind, rec, store)):
            total += ((estimate_seconds(d, store, rates)[0] or 0.0)
                      + regeneration_seconds(d, store, rates, seen, fresh_clone))
    return total


def runs_elsewhere(store: RunStore | None = None):
    """The records computed on a device other than the CPU (a lent GPU): one row per kind and device with the
    runs, their wall time there, and the same runs' time on the recording CPU: measured where a run was
    regenerated on a CPU, else estimated (its unit of work, :func:`_work`, at the median rate of its class's
    CPU times); the speed-up is the ratio."""
    import pandas as pd
    store = store or RunStore()
    rates: dict = {}
    rows: dict = {}
    for kind in sorted(p.name for p in store.root.iterdir() if p.is_dir()) if store.root.is_dir() else []:
        for r in store.records(kind):
            device = str(r["provenance"].get("device", "cpu"))
            if device == "cpu":
                continue
            w = _work(r["config"], kind)
            cpu = None
            here = _regenerated_seconds(store, r)
            if here:  # regenerated on a CPU: measured
                cpu = statistics.median(here)
            elif w is not None:
                per_unit = [u for u, _, _ in _rates_of(w[0], store, rates)]
                cpu = statistics.median(per_unit) * w[1] if per_unit else None
            key = (kind, r["provenance"].get("device_name") or device)
            row = rows.setdefault(key, {"kind": kind, "device": key[1], "runs": 0, "regenerated here": 0,
                                        "wall there (min)": 0.0,
                                        "on 2 CPU cores, measured or estimated (min)": 0.0, "_cpu_known": 0.0})
            row["runs"] += 1
            row["regenerated here"] += bool(here)
            row["wall there (min)"] += r["provenance"]["wall_time_s"] / 60
            if cpu is not None:
                row["on 2 CPU cores, measured or estimated (min)"] += cpu / 60
                row["_cpu_known"] += r["provenance"]["wall_time_s"] / 60
    out = pd.DataFrame(list(rows.values()), columns=["kind", "device", "runs", "regenerated here", "wall there (min)",
                                                     "on 2 CPU cores, measured or estimated (min)", "_cpu_known"])
    out["speed-up"] = out["on 2 CPU cores, measured or estimated (min)"] / out["_cpu_known"].where(out["_cpu_known"] > 0)
    return out.drop(columns="_cpu_known").round(1).set_index(["kind", "device"])


def chapter_estimates(p, store: RunStore | None = None):
    """Per chapter at profile ``p``: runs listed, recorded, and hours (recorded + estimated for the missing
    ones, on the recording device), with the count of runs nothing could be scaled from."""
    import pandas as pd
    store = store or RunStore()
    rates: dict = {}
    rows = []
    for chapter, specs, new in chapter_runs(p):
        seconds, _, have, unknown = _cost(specs, store, rates)
        hours, new_h = seconds / 3600, _cost([s for s in specs if s.address in new], store, rates)[0] / 3600
        rows.append({"chapter": chapter, "runs": len(specs), "recorded": have,
                     "estimated hours (all its runs)": round(hours, 1), "new to this chapter": round(new_h, 1),
                     "runs without an estimate": unknown})
    return pd.DataFrame(rows).set_index("chapter")


def study_hours(study: str, p, store: RunStore | None = None) -> tuple[float, int]:
    """(hours, runs without an estimate) to compute every run of ``study`` at profile ``p`` from scratch on the
    recording device: recorded CPU time where a CPU record exists, else the estimate scaled from the records
    (what a chapter quotes when it weighs a larger profile's cost)."""
    scratch, _, _, unknown = _cost(chapter_specs(study, p), store or RunStore(), {})
    return scratch / 3600, unknown


def left_column(fresh_clone: bool) -> str:
    """The name of :func:`study_estimates`' column of hours still to compute."""
    return "left to compute from a fresh clone (hours)" if fresh_clone else "left to compute here (hours)"


def _cost(specs, store: RunStore, rates: dict, fresh_clone: bool = False) -> tuple[float, float, int, int]:
    """(seconds from scratch, seconds still to compute, runs recorded, runs without an estimate) for
    ``specs``: recorded CPU time where a record exists, else the estimate; what is left counts the missing runs
    and the recorded inputs this cache (``fresh_clone``: an empty one) would have to regenerate for them."""
    scratch, left, have, unknown, seen = 0.0, 0.0, 0, 0, set()
    for s in specs:
        sec, how = estimate_seconds(s, store, rates)
        recorded = how.startswith("recorded")
        have += recorded
        if sec is None:
            unknown += 1
            continue
        scratch += sec
        if not recorded:
            left += sec + regeneration_seconds(s, store, rates, seen, fresh_clone)
    return scratch, left, have, unknown


def study_estimates(p, store: RunStore | None = None, page: str | None = None, fresh_clone: bool = True):
    """Per study of :data:`miue.chapters.PAGE_STUDIES` (at its own profile, or ``p`` where it names none): runs
    listed and recorded, the hours to compute all of them from scratch on the recording device (recorded CPU
    time, or the estimate for a run recorded elsewhere or missing) and the hours still to compute here (the
    missing runs, with the recorded inputs a fresh clone lacks, or with ``fresh_clone=False`` those this cache
    lacks), and the runs without an estimate. ``page``: that page's studies only. The default keeps the book
    the same on every machine: it never reads the git-ignored cache."""
    import pandas as pd
    from .chapters import PAGE_STUDIES
    store = store or RunStore()
    rates: dict = {}
    rows = []
    if page is not None and page not in PAGE_STUDIES:
        raise ValueError(f"page {page!r} lists no studies; choose from {', '.join(PAGE_STUDIES)}")
    for pg, studies in PAGE_STUDIES.items():
        if page is not None and pg != page:
            continue
        for study, name in studies:
            q = p if name is None else profile(name)
            specs = chapter_specs(study, q)
            n = len(specs)
            scratch, left, have, unknown = _cost(specs, store, rates, fresh_clone)
            rows.append({"page": pg, "study": study, "profile": q.name, "runs": n,
                         "recorded": have, "from scratch (hours)": round(scratch / 3600, 1),
                         left_column(fresh_clone): round(left / 3600, 1), "runs without an estimate": unknown})
    return pd.DataFrame(rows).set_index(["page", "study"])


# ------------------------------------------------------------------------------------------------- CLI

def _report(outcomes: list[Outcome]) -> str:
    computed = [a for o in outcomes for a in o.computed]
    lines = [f"{'state':<9}  {'seconds':>8}  run"]
    for o in outcomes:
        sec = "" if o.seconds is None else f"{o.seconds:.1f}"
        lines.append(f"{o.state:<9}  {sec:>8}  {o.what} ({o.address})" + (f" — {o.detail}" if o.detail else ""))
    states = [o.state for o in outcomes]
    later = states.count("DEFERRED")
    lines.append(f"{states.count('COMPLETED')} completed, {len(states) - states.count('COMPLETED') - later} not"
                 + (f", {later} deferred (run the grid again)" if later else "")
                 + f"; {len(computed)} runs computed by these jobs")
    return "\n".join(lines)


def plain(text: str) -> str:
    """Docstring text for a terminal: Sphinx roles and double backquotes removed."""
    text = re.sub(r":(?:func|class|mod|data|meth|attr):`~?([^`]+)`", r"\1", text)
    return text.replace("``", "")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        prog="miue grid", formatter_class=argparse.RawDescriptionHelpFormatter,
        description=plain(__doc__.split("\n\n", 1)[1].strip() if "\n\n" in __doc__ else __doc__),
        epilog="examples:\n"
               "  miue grid 01_at_a_glance --profile cpu --dry-run\n"
               "  miue grid 03_effective_ues_reduce_mi --profile smoke --cluster local --jobs 2\n"
               "  miue grid paper_sample_size --profile full --cluster slurm --partition gpu --gpus 1 --jobs 8\n"
               "  miue grid 12_augmentations_and_purifications 14_how_transferable paper_sample_size@full   # one after another\n")
    ap.add_argument("chapters", nargs="+", metavar="CHAPTER",
                    help="a chapter (the runs its notebook reads) or a study (a grid that no notebook computes), or "
                         "several, run one after another (a failed run does not stop the next); CHAPTER@PROFILE "
                         "runs that one at another profile. Chapters: " + ", ".join(CHAPTERS) + ". Studies: "
                         + ", ".join(STUDIES) + " (05_sal_under_defenses: chapter 5's SAL measured on victims "
                         "trained under each defense)")
    from .profiles import PROFILES
    ap.add_argument("--profile", default="cpu", choices=list(PROFILES), help="the profile (default cpu)")
    ap.add_argument("--cluster", default="inline", choices=CLUSTERS, help="where jobs run (default inline)")
    ap.add_argument("--jobs", type=int, default=1, help="jobs at a time (local), or the Slurm array's parallelism")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch threads per job (default: 2 inline, 1 otherwise; cpus_per_task on Slurm)")
    ap.add_argument("--gpus", type=int, default=None,
                    help="GPUs per job (default: 1 where the profile's device is cuda, or auto on a local machine "
                         "with a GPU; else 0: a job that asks for none sees none)")
    ap.add_argument("--partition", default=None, help="Slurm partition")
    ap.add_argument("--timeout-min", type=int, default=24 * 60, help="a job's time limit in minutes (default 1440)")
    ap.add_argument("--mem-gb", type=float, default=None, help="memory per Slurm job")
    ap.add_argument("--runs", default=None, help="run records folder (default data/runs, or $MIUE_RUNS)")
    ap.add_argument("--cache", default=None, help="artifacts folder (default data/cache, or $MIUE_CACHE)")
    ap.add_argument("--folder", default=None, help="submitit's job folder (default <cache>/grid-jobs)")
    ap.add_argument("--dry-run", action="store_true", help="list the specs with their recorded or estimated cost")
    ap.add_argument("--throughput", type=float, default=None,
                    help="with --dry-run: scale the estimate to another device by this speed-up over the records")
    ap.add_argument("--within", type=float, default=None, metavar="MIN",
                    help="start a run only if its estimate ends within MIN minutes of the grid's start; the rest "
                         "are deferred to the next call (for a machine held for a fixed time)")
    ap.add_argument("--json", default=None, help="also write the outcomes (state, runs computed) to this file")
    ap.add_argument("--no-progress", action="store_true", help="no progress bars (inline)")
    args = ap.parse_args(argv)
    names = sorted({**CHAPTERS, **STUDIES})
    queue = []
    for item in args.chapters:
        chapter, _, prof = item.partition("@")
        if chapter not in names:
            ap.error(f"unknown chapter {chapter!r}; choose from {', '.join(names)}")
        try:
            queue.append((chapter, profile(prof or args.profile)))
        except (ProfileError, ValueError) as exc:
            print(f"miue grid: {exc}", file=sys.stderr)
            return 2
    if args.within is not None and not args.within > 0:
        print(f"miue grid: --within must be a positive number of minutes, got {args.within:g}", file=sys.stderr)
        return 2
    deadline = None if args.within is None else time.time() + 60 * args.within
    store = RunStore(args.runs, args.cache)
    outcomes = []
    for chapter, p in queue:
        if len(queue) > 1:
            print(f"=== {chapter} at profile {p.name}", flush=True)
        try:
            outcomes += _chapter(args, chapter, p, store, deadline)
        except Exception as exc:  # noqa: BLE001 — one chapter's failure (a missing cluster tool) ends only it
            print(f"miue grid: {chapter} at profile {p.name} failed: {exc}", file=sys.stderr, flush=True)
            outcomes.append(Outcome(chapter, f"chapter {chapter} at profile {p.name}", "FAILED",
                                    detail=f"{type(exc).__name__}: {exc}"))
        if args.json and not args.dry_run:  # after every chapter: a killed queue keeps what it finished
            import dataclasses
            import json
            Path(args.json).write_text(json.dumps([dataclasses.asdict(o) for o in outcomes], indent=1) + "\n")
    if outcomes:
        print(_report(outcomes))
    return 0 if all(o.state in ("COMPLETED", "DEFERRED") for o in outcomes) else 1


def _chapter(args, chapter: str, p, store: RunStore, deadline: float | None = None) -> list:
    """List one chapter's runs with their costs and, unless ``--dry-run``, dispatch the missing ones."""
    specs = chapter_specs(chapter, p)
    rates: dict = {}
    total_missing = 0.0
    unknown = 0
    seen: set = set()
    for s in specs:
        sec, how = estimate_seconds(s, store, rates)
        recorded = how.startswith("recorded")
        if not recorded:
            regen = regeneration_seconds(s, store, rates, seen)
            if regen:
                how += f", +{regen / 60:.1f} min to regenerate the cached inputs it reads"
            if sec is None:
                unknown += 1
            else:
                total_missing += sec + regen
        cost = "?" if sec is None else f"{sec / 60:.1f} min"
        print(f"{s.address:<28} {'recorded' if recorded else 'missing':>8}  {cost:>10}  "
              f"{'' if how == 'recorded' else how + '  '}{s.describe()}")
    missing = missing_specs(specs, store)
    scale = args.throughput or 1.0
    where = (f" at {scale:g}x the recording device's speed" if args.throughput else
             " on the recording device (2-core CPU)")
    if missing and unknown == len(missing):
        print(f"{len(specs)} runs, {len(missing)} missing; cannot estimate their cost: no recorded run of their "
              "kinds in this store to measure from (run one, or point --runs at a store with records)", flush=True)
    else:
        print(f"{len(specs)} runs, {len(missing)} missing; estimated {total_missing / 3600 / scale:.2f} hours "
              f"for the missing ones{where}" + (f", plus {unknown} that cannot be estimated (no record of their "
                                               "kind to measure from)" if unknown else ""), flush=True)
    if args.dry_run:
        return []
    stored = [s for s in missing if isinstance(s, StoredSpec)]
    for s in stored:
        print(f"skipping {s.describe()}: computed by its chapter's notebook", file=sys.stderr)
    return dispatch(specs, cluster=args.cluster, store=store, folder=args.folder, jobs=args.jobs,
                    threads=args.threads, device=p.device, timeout_min=args.timeout_min,
                    partition=args.partition, mem_gb=args.mem_gb,
                    progress=not args.no_progress and args.cluster == "inline", deadline=deadline, gpus=args.gpus)


if __name__ == "__main__":
    sys.exit(main())
