"""The store: records committed under ``data/runs/<kind>/<hash>.json``, artifacts in the git-ignored cache,
:meth:`RunStore.get_or_compute` reading a record or computing it under its lock (see :mod:`miue.runs`)."""

from __future__ import annotations

import json
import math
import os
import sys
import threading
import time
import warnings
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from ..checkpoint import Checkpoint
from ..data import DATA_ROOT
from . import lock as _lock
from .lock import LEASE_SECONDS, Lock
from .records import _checksum, _non_finite, _scalar, canonical, config_hash, file_sha256, provenance

SCHEMA = 1  # bump when the record layout changes; older records are then reported, not trusted


class RecordVersionError(RuntimeError):
    """A record was written by an incompatible version of miue."""


class ComputeForbidden(RuntimeError):
    """A run had to be computed while ``MIUE_NO_COMPUTE`` is set."""


# the run whose compute function is executing in this thread (inputs computed inside it charge their time to it)
_ACTIVE_RUN: ContextVar["RunContext | None"] = ContextVar("miue_active_run", default=None)


def no_compute() -> bool:
    """Whether ``MIUE_NO_COMPUTE`` forbids computing (set to anything but '', '0', 'false', 'no', 'off')."""
    return os.environ.get("MIUE_NO_COMPUTE", "").strip().lower() not in ("", "0", "false", "no", "off")


@dataclass
class RunContext:
    """What a compute function gets: its artifact folder, checkpoints, artifact writers and elapsed time."""

    kind: str
    hash: str
    config: dict
    artifacts: Path
    prior_seconds: float = 0.0  # wall time of earlier, interrupted attempts at this run
    started: float = field(default_factory=time.perf_counter)
    prior_cpu_seconds: float = 0.0  # CPU time (all threads) of earlier attempts
    cpu_started: float = field(default_factory=time.process_time)
    cpu_complete: bool = True  # False when an earlier attempt's CPU time was not kept (its record says None)
    inputs_seconds: float = 0.0  # wall time spent inside this run computing its inputs (other runs), across resumes
    inputs_cpu_seconds: float = 0.0  # their CPU time (all threads)
    computing_input: "RunContext | None" = None  # the input being computed inside this run right now

    def checkpoint(self, name: str = "checkpoint") -> Checkpoint:
        return Checkpoint(self.artifacts / f"{name}.safetensors")

    def elapsed(self) -> float:
        """Seconds spent on this run so far, across resumes."""
        return self.prior_seconds + time.perf_counter() - self.started

    def cpu_elapsed(self) -> float:
        """CPU seconds (user + system, every thread of this process) spent on this run so far, across resumes:
        unlike the wall time, it does not grow while the run waits for a contended or paused CPU."""
        return self.prior_cpu_seconds + time.process_time() - self.cpu_started

    def _times(self) -> dict:
        """What a heartbeat keeps for a resume. An input still computing counts as inputs with its time so far
        in this attempt: killed now, this run must not resume with that time taken for its own (the input's
        own progress file keeps it for the input's record, and :meth:`charge_inputs` leaves it out later)."""
        inputs = {"inputs_seconds": self.inputs_seconds, "inputs_cpu_seconds": self.inputs_cpu_seconds}
        inner = self.computing_input
        if inner is not None:
            inputs["inputs_seconds"] += inner.elapsed() - inner.prior_seconds
            inputs["inputs_cpu_seconds"] += inner.cpu_elapsed() - inner.prior_cpu_seconds
        if not self.cpu_complete:  # never pass a partial CPU time off as the whole run's to a later resume
            return {"seconds": self.elapsed(), **inputs}
        return {"seconds": self.elapsed(), "cpu_seconds": self.cpu_elapsed(), **inputs}

    def charge_inputs(self, inner: "RunContext", wall: float | None = None, cpu: float | None = None) -> None:
        """Count the time ``inner`` (an input computed inside this run) spent in this attempt (up to its
        ``elapsed()`` ``wall`` and ``cpu_elapsed()`` ``cpu``, or now) as time this run spent on its inputs."""
        wall = inner.elapsed() if wall is None else wall
        cpu = inner.cpu_elapsed() if cpu is None else cpu
        self.inputs_seconds += wall - inner.prior_seconds
        self.inputs_cpu_seconds += cpu - inner.prior_cpu_seconds

    def save_artifact(self, name: str, tensors: dict, meta: dict | None = None) -> str:
        """Write a safetensors artifact and record its SHA-256 in the cache manifest; returns the hash."""
        from ..checkpoint import save_tensors
        path = self.artifacts / name
        tmp = self.artifacts / f".{name}.{os.getpid()}.{threading.get_ident()}.part"
        save_tensors(tmp, tensors, meta)
        digest = file_sha256(tmp)
        manifest = _read_manifest(self.artifacts)
        manifest[name] = digest
        # the manifest first, then the file: a reader never sees the new file without its hash
        _write_json_atomic(self.artifacts / "manifest.json", manifest)
        os.replace(tmp, path)
        return digest


def _read_manifest(folder: Path) -> dict:
    try:
        m = json.loads((folder / "manifest.json").read_text())
        return m if isinstance(m, dict) else {}
    except (OSError, ValueError):
        return {}


def _write_json_atomic(path: Path, obj) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")  # unique per thread too
    tmp.write_text(json.dumps(obj, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)


class RunStore:
    """Records in ``root`` (committed), artifacts in ``cache`` (git-ignored)."""

    def __init__(self, root: str | Path | None = None, cache: str | Path | None = None, poll_seconds: float = 2.0,
                 lease: float = LEASE_SECONDS):
        self.root = Path(root or os.environ.get("MIUE_RUNS") or DATA_ROOT / "runs")
        self.cache = Path(cache or os.environ.get("MIUE_CACHE") or DATA_ROOT / "cache")
        self.poll_seconds = poll_seconds
        self.lease = lease
        self.computed: list[str] = []  # addresses this store object computed and recorded, in order

    def record_path(self, kind: str, h: str) -> Path:
        return self.root / kind / f"{h}.json"

    def artifacts(self, kind: str, h: str) -> Path:
        p = self.cache / kind / h
        p.mkdir(parents=True, exist_ok=True)
        return p

    def lookup(self, spec) -> dict | None:
        """The record of ``spec`` (any :class:`miue.specs.Spec`: its ``kind`` and ``config()``), or None when it
        has not been run: reads, never computes."""
        return self.get(spec.kind, spec.config())

    def get(self, kind: str, config: dict) -> dict | None:
        """The stored record of this run, or None when absent or not trustworthy (corrupt)."""
        config = json.loads(canonical(config))
        h = config_hash(kind, config)
        path = self.record_path(kind, h)
        ino = None
        try:
            with open(path, "rb") as f:
                ino = os.fstat(f.fileno()).st_ino
                text = f.read().decode()
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError):
            return self._distrust(path, "cannot be read", ino)
        try:
            record = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
            return self._distrust(path, "is not valid JSON (half-written?)", ino)
        try:
            intact = isinstance(record, dict) and record.get("checksum") == _checksum(record)
        except (ValueError, TypeError):  # NaN or other non-canonical content: not written by this store
            intact = False
        if not intact:
            return self._distrust(path, "fails its checksum (edited or truncated)", ino)
        if record.get("schema") != SCHEMA:
            raise RecordVersionError(
                f"{path} was written by record schema {record.get('schema')}, this miue reads schema {SCHEMA}: "
                f"delete it (or call get_or_compute(..., force=True)) to recompute it with this version")
        if record.get("config") != config:
            return self._distrust(path, "holds another config than its address says", ino)
        return record

    def _distrust(self, path: Path, why: str, ino: int | None = None) -> None:
        """Set the untrusted record aside as ``.corrupt`` -- only the very file that was judged (``ino``): when
        another process set it aside and wrote a good record in the meantime, that record stays."""
        bad = path.with_suffix(".corrupt")
        aside = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.distrusted")
        try:
            if ino is not None and os.stat(path).st_ino != ino:  # already replaced by a newer record
                return None
            os.rename(path, aside)
        except FileNotFoundError:  # another process set it aside first
            return None
        if ino is not None and os.stat(aside).st_ino != ino:  # not the file we read: a newer record, put it back
            try:
                os.link(aside, path)
            except FileExistsError:
                pass
            aside.unlink(missing_ok=True)
            return None
        os.replace(aside, bad)
        warnings.warn(f"run record {path} {why}; moved to {bad.name} and it will be recomputed", stacklevel=3)
        return None

    def records(self, kind: str) -> list[dict]:
        """Every trustworthy record of ``kind`` (for grids and overviews)."""
        out = []
        for p in sorted((self.root / kind).glob("*.json")):
            try:
                r = json.loads(p.read_text())
            except (json.JSONDecodeError, OSError, UnicodeDecodeError):
                continue
            try:
                ok = isinstance(r, dict) and r.get("checksum") == _checksum(r) and r.get("schema") == SCHEMA
            except (ValueError, TypeError):
                ok = False
            if ok:
                out.append(r)
        return out

    # -- measured regenerations --------------------------------------------------------------------------

    def regeneration_path(self, kind: str, h: str) -> Path:
        """Beside the records, never in them (``runs-regenerated/`` next to ``runs/``): a record stays exactly as
        its run wrote it."""
        return self.root.with_name(self.root.name + "-regenerated") / kind / f"{h}.json"

    def note_regeneration(self, record: dict, fresh: dict) -> None:
        """Keep what recomputing a recorded run's artifacts cost here (``fresh``: the would-be record that
        ``get_or_compute(..., write=False)`` returned) and whether they came out the same: a run recorded on a
        lent GPU then has a measured cost on this machine as well (:func:`miue.grid.estimate_seconds`)."""
        path = self.regeneration_path(record["kind"], record["hash"])
        entry = {**fresh["provenance"], "artifacts_match": (fresh.get("artifacts") or {}) == (
            record.get("artifacts") or {})}
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_json_atomic(path, {"kind": record["kind"], "hash": record["hash"],
                                  "regenerations": self.regenerations(record["kind"], record["hash"]) + [entry]})

    def regenerations(self, kind: str, h: str) -> list[dict]:
        """The provenance of each measured regeneration of run ``kind``/``h`` (oldest first; [] when none, or
        when the file is not this store's)."""
        try:
            got = json.loads(self.regeneration_path(kind, h).read_text())
        except (OSError, ValueError):
            return []
        regs = got.get("regenerations") if isinstance(got, dict) and got.get("hash") == h else None
        return [g for g in regs if isinstance(g, dict)] if isinstance(regs, list) else []

    # -- artifacts ------------------------------------------------------------------------------------

    def artifact_path(self, kind: str, h: str, name: str) -> Path:
        return self.cache / kind / h / name

    def verified_artifact(self, kind: str, h: str, name: str) -> Path | None:
        """The artifact's path when it exists and matches its manifest hash; None when absent.

        A file that does not match is set aside (``.corrupt``) with a warning and None is returned, so the
        caller regenerates it."""
        path = self.artifact_path(kind, h, name)
        if not path.is_file():
            return None
        manifest = path.parent / "manifest.json"
        try:
            if not manifest.exists():  # a cache written before manifests (or a lost manifest)
                expected = self._recorded_artifact_hash(kind, h, name)
                if expected is None:  # nothing to check it against: adopt it once
                    _write_json_atomic(manifest, {name: file_sha256(path)})
            expected = _read_manifest(path.parent).get(name) if manifest.exists() else expected
            actual = file_sha256(path)
        except FileNotFoundError:  # set aside by another process meanwhile
            return None
        if expected is None or actual != expected:
            why = "has no recorded hash" if expected is None else "does not match its recorded SHA-256"
            try:
                os.replace(path, path.with_name(path.name + ".corrupt"))
            except FileNotFoundError:
                pass
            warnings.warn(f"artifact {path} {why} (tampered with or damaged); set aside, it will be regenerated",
                          stacklevel=2)
            return None
        return path

    def _recorded_artifact_hash(self, kind: str, h: str, name: str) -> str | None:
        """The artifact's SHA-256 as the committed record states it (None when unknown)."""
        try:
            record = json.loads(self.record_path(kind, h).read_text())
            if isinstance(record, dict) and record.get("checksum") == _checksum(record):
                digest = (record.get("artifacts") or {}).get(name)
                return digest if isinstance(digest, str) else None
        except (OSError, ValueError, TypeError, AttributeError):
            pass
        return None

    # -- compute --------------------------------------------------------------------------------------

    def _elapsed_file(self, kind: str, h: str) -> Path:
        return self.cache / kind / h / "elapsed.json"

    def get_or_compute(self, kind: str, config: dict, compute: Callable[[RunContext], dict], *,
                       force: bool = False, device: str | None = None, seed: int | None = None,
                       write: bool = True) -> dict:
        """Return the record of run (kind, config), computing it with ``compute(ctx)`` if it is missing.

        ``compute`` returns a dict with ``metrics`` and optionally ``history``, ``samples`` and ``artifacts``
        (name → SHA-256); everything must be JSON-serializable and finite. While one process computes a
        run, others asking for it wait for it. ``write=False`` computes (artifacts only) and returns the
        would-be record without writing it: how a missing artifact is regenerated without touching the
        committed record.
        """
        config = json.loads(canonical(config))  # normalize (tuples → lists) and reject non-JSON values
        h = config_hash(kind, config)
        if not force:
            found = self.get(kind, config)
            if found is not None:
                return found
        if no_compute():
            what = ("its artifacts are not in the cache " + str(self.cache)) if (force and not write) else \
                f"it is not in the store {self.root}"
            raise ComputeForbidden(f"run {kind}/{h} would be computed ({what}) and MIUE_NO_COMPUTE is set")
        ctx = RunContext(kind, h, config, self.artifacts(kind, h))
        lock = Lock(ctx.artifacts / ".lock", lease=self.lease)
        announced = False
        while not lock.acquire():
            if not announced:
                print(f"miue: waiting for run {kind}/{h}, held by {lock.describe_holder()}", file=sys.stderr,
                      flush=True)
                announced = True
            time.sleep(self.poll_seconds)
            found = None if force else self.get(kind, config)
            if found is not None:
                return found
        elapsed_path = self._elapsed_file(kind, h)
        try:
            found = None if force else self.get(kind, config)
            if found is not None:
                return found
            try:
                times = json.loads(elapsed_path.read_text())
            except (OSError, ValueError):
                times = {}
            for key, attr in (("seconds", "prior_seconds"), ("cpu_seconds", "prior_cpu_seconds"),
                              ("inputs_seconds", "inputs_seconds"), ("inputs_cpu_seconds", "inputs_cpu_seconds")):
                try:
                    prior = float(times[key])
                    setattr(ctx, attr, prior if math.isfinite(prior) and prior >= 0 else 0.0)
                except (KeyError, TypeError, ValueError):
                    setattr(ctx, attr, 0.0)
            # an earlier attempt whose CPU time was not kept (a progress file from before CPU time was
            # recorded): the record's CPU time is unknown rather than the last attempt's alone
            ctx.cpu_complete = not (ctx.prior_seconds > 0 and "cpu_seconds" not in times)
            ctx.started, ctx.cpu_started = time.perf_counter(), time.process_time()
            stop = threading.Event()

            def track():  # wall time survives a SIGKILL to within one beat
                while not stop.wait(_lock.HEARTBEAT_SECONDS):
                    try:
                        _write_json_atomic(elapsed_path, ctx._times())
                    except OSError:
                        pass

            tracker = threading.Thread(target=track, daemon=True)
            tracker.start()
            started = datetime.now(timezone.utc)
            parent, token = _ACTIVE_RUN.get(), _ACTIVE_RUN.set(ctx)
            if parent is not None:
                parent.computing_input = ctx
            try:
                result = compute(ctx)
            except BaseException:
                _ACTIVE_RUN.reset(token)
                if parent is not None:
                    parent.charge_inputs(ctx)
                    parent.computing_input = None
                stop.set()
                tracker.join(10)  # no late beat may overwrite the final value
                try:
                    _write_json_atomic(elapsed_path, ctx._times())
                except OSError:
                    pass
                raise
            wall, cpu = ctx.elapsed(), ctx.cpu_elapsed()
            _ACTIVE_RUN.reset(token)
            if parent is not None:
                parent.charge_inputs(ctx, wall, cpu)
                parent.computing_input = None
            stop.set()
            tracker.join(10)
            if not isinstance(result, dict):
                raise TypeError(f"run {kind}/{h}: compute must return a dict with 'metrics', got "
                                f"{type(result).__name__}; no record was written")
            unknown = set(result) - {"metrics", "history", "samples", "artifacts"}
            if unknown:
                raise ValueError(f"compute returned unexpected keys {sorted(unknown)}")
            try:  # numpy / torch scalars → plain numbers; anything else not JSON-able is refused here
                result = json.loads(json.dumps({k: result[k] for k in ("metrics", "history", "samples", "artifacts")
                                                if k in result}, default=_scalar))
            except (TypeError, ValueError) as exc:
                raise ValueError(f"run {kind}/{h}: compute returned a value that is not JSON-serializable ({exc}); "
                                 "no record was written") from None
            for part in ("metrics", "history", "samples"):
                bad = _non_finite(result.get(part), part)
                if bad:
                    raise ValueError(f"run {kind}/{h} produced a non-finite value at {bad}; no record was written "
                                     f"(a diverged run: lower the learning rate or check the inputs)")
            record = {"schema": SCHEMA, "kind": kind, "hash": h, "config": config,
                      "metrics": result.get("metrics", {}), "history": result.get("history", []),
                      "samples": result.get("samples", {}),
                      "provenance": {**provenance(device), "seed": seed if seed is not None else config.get("seed"),
                                     "started": started.isoformat(timespec="seconds"),
                                     "wall_time_s": round(wall, 3),
                                     "cpu_time_s": round(cpu, 3) if ctx.cpu_complete else None,
                                     "inputs_wall_time_s": round(ctx.inputs_seconds, 3),
                                     "inputs_cpu_time_s": round(ctx.inputs_cpu_seconds, 3),
                                     "resumed_after_s": round(ctx.prior_seconds, 3)}}
            if result.get("artifacts"):
                record["artifacts"] = result["artifacts"]
            try:
                record = json.loads(canonical(record))
            except ValueError as exc:
                raise ValueError(f"run {kind}/{h}: its history or samples hold a non-finite value ({exc}); "
                                 "no record was written") from None
            record["checksum"] = _checksum(record)
            if write:
                path = self.record_path(kind, h)
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
                tmp.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
                os.replace(tmp, path)
                self.computed.append(f"{kind}/{h}")
            elapsed_path.unlink(missing_ok=True)
            return record
        finally:
            lock.release()
