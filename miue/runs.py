"""The run store: every expensive step is a run with a frozen config, addressed by the config's hash.

``RunStore().get_or_compute(kind, config, compute)`` returns the committed JSON record under
``data/runs/<kind>/<hash>.json`` (``$MIUE_RUNS`` if set) if present, and computes it otherwise. Records are written atomically
(temporary file + ``os.replace``) with a checksum, so a half-written or edited record is detected and not
trusted. Artifacts (poisons, checkpoints, weights) go to the git-ignored ``data/cache/<kind>/<hash>/``;
an interrupted run resumes from its checkpoint there. A lock file per run lets independent processes
fill one grid into the same store at once: different runs proceed in parallel, one run is computed once.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import socket
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from .checkpoint import Checkpoint
from .data import DATA_ROOT

SCHEMA = 1  # bump when the record layout changes; older records are then reported, not trusted


class RecordVersionError(RuntimeError):
    """A record was written by an incompatible version of miue."""


def canonical(obj) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def config_hash(kind: str, config: dict) -> str:
    """The address of a run: SHA-256 of its kind and canonical config (16 hex digits)."""
    return hashlib.sha256(canonical({"kind": kind, "config": config}).encode()).hexdigest()[:16]


def _checksum(record: dict) -> str:
    return hashlib.sha256(canonical({k: v for k, v in record.items() if k != "checksum"}).encode()).hexdigest()


def provenance(device: str | None = None) -> dict:
    """Where and with what a run was computed: git commit, package versions, device, host."""
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                                timeout=10).stdout.strip() or None
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--", "miue"], cwd=root, capture_output=True,
                                    text=True, timeout=10).stdout.strip())
    except (OSError, subprocess.SubprocessError):
        commit, dirty = None, None
    import numpy
    import torch
    versions = {"python": platform.python_version(), "torch": torch.__version__, "numpy": numpy.__version__}
    for mod in ("torchvision", "timm", "safetensors", "sklearn"):
        try:
            versions[mod] = __import__(mod).__version__
        except ImportError:
            pass
    from . import __version__
    versions["miue"] = __version__
    dev = str(device or "cpu")
    if dev.startswith("cuda") and torch.cuda.is_available():
        name = torch.cuda.get_device_name()
    else:
        name = platform.processor() or platform.machine()
        try:
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    break
        except OSError:
            pass
    return {"git_commit": commit, "git_dirty": dirty, "versions": versions, "device": dev, "device_name": name,
            "torch_threads": torch.get_num_threads(), "hostname": socket.gethostname(), "platform": sys.platform}


@dataclass
class RunContext:
    """What a compute function gets: its artifact folder and a checkpoint file in it."""

    kind: str
    hash: str
    config: dict
    artifacts: Path

    def checkpoint(self, name: str = "checkpoint") -> Checkpoint:
        return Checkpoint(self.artifacts / f"{name}.safetensors")


class RunStore:
    """Records in ``root`` (committed), artifacts in ``cache`` (git-ignored)."""

    def __init__(self, root: str | Path | None = None, cache: str | Path | None = None, poll_seconds: float = 2.0):
        self.root = Path(root or os.environ.get("MIUE_RUNS") or DATA_ROOT / "runs")
        self.cache = Path(cache or os.environ.get("MIUE_CACHE") or DATA_ROOT / "cache")
        self.poll_seconds = poll_seconds

    def record_path(self, kind: str, h: str) -> Path:
        return self.root / kind / f"{h}.json"

    def artifacts(self, kind: str, h: str) -> Path:
        p = self.cache / kind / h
        p.mkdir(parents=True, exist_ok=True)
        return p

    def get(self, kind: str, config: dict) -> dict | None:
        """The stored record of this run, or None when absent or not trustworthy (corrupt)."""
        h = config_hash(kind, config)
        path = self.record_path(kind, h)
        if not path.exists():
            return None
        try:
            record = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError, OSError):
            return self._distrust(path, "is not valid JSON (half-written?)")
        if not isinstance(record, dict) or record.get("checksum") != _checksum(record):
            return self._distrust(path, "fails its checksum (edited or truncated)")
        if record.get("schema") != SCHEMA:
            raise RecordVersionError(
                f"{path} was written by record schema {record.get('schema')}, this miue reads schema {SCHEMA}: "
                f"delete it (or call get_or_compute(..., force=True)) to recompute it with this version")
        if record.get("config") != json.loads(canonical(config)):
            return self._distrust(path, "holds another config than its address says")
        return record

    def _distrust(self, path: Path, why: str) -> None:
        bad = path.with_suffix(".corrupt")
        os.replace(path, bad)
        warnings.warn(f"run record {path} {why}; moved to {bad.name} and it will be recomputed", stacklevel=3)
        return None

    def records(self, kind: str) -> list[dict]:
        """Every trustworthy record of ``kind`` (for grids and overviews)."""
        out = []
        for p in sorted((self.root / kind).glob("*.json")):
            try:
                r = json.loads(p.read_text())
            except (json.JSONDecodeError, OSError):
                continue
            if isinstance(r, dict) and r.get("checksum") == _checksum(r) and r.get("schema") == SCHEMA:
                out.append(r)
        return out

    def get_or_compute(self, kind: str, config: dict, compute: Callable[[RunContext], dict], *,
                       force: bool = False, device: str | None = None, seed: int | None = None) -> dict:
        """Return the record of run (kind, config), computing it with ``compute(ctx)`` if it is missing.

        ``compute`` returns a dict with ``metrics`` and optionally ``history`` and ``samples``; everything
        must be JSON-serializable. While one process computes a run, others asking for it wait for it.
        """
        config = json.loads(canonical(config))  # normalize (tuples → lists) and reject non-JSON values
        h = config_hash(kind, config)
        if not force:
            found = self.get(kind, config)
            if found is not None:
                return found
        ctx = RunContext(kind, h, config, self.artifacts(kind, h))
        lock = ctx.artifacts / ".lock"
        while not self._acquire(lock):
            time.sleep(self.poll_seconds)
            found = None if force else self.get(kind, config)
            if found is not None:
                return found
        try:
            found = None if force else self.get(kind, config)
            if found is not None:
                return found
            started = datetime.now(timezone.utc)
            t0 = time.perf_counter()
            result = compute(ctx)
            wall = time.perf_counter() - t0
            unknown = set(result) - {"metrics", "history", "samples"}
            if unknown:
                raise ValueError(f"compute returned unexpected keys {sorted(unknown)}")
            record = {"schema": SCHEMA, "kind": kind, "hash": h, "config": config,
                      "metrics": result.get("metrics", {}), "history": result.get("history", []),
                      "samples": result.get("samples", {}),
                      "provenance": {**provenance(device), "seed": seed if seed is not None else config.get("seed"),
                                     "started": started.isoformat(timespec="seconds"),
                                     "wall_time_s": round(wall, 3)}}
            record = json.loads(canonical(record))
            record["checksum"] = _checksum(record)
            path = self.record_path(kind, h)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
            os.replace(tmp, path)
            return record
        finally:
            lock.unlink(missing_ok=True)

    @staticmethod
    def _acquire(lock: Path) -> bool:
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                pid = int(lock.read_text() or 0)
            except (OSError, ValueError):
                return False
            if pid and not _alive(pid):  # the holder died: take the run over (it resumes from its checkpoint)
                lock.unlink(missing_ok=True)
                return RunStore._acquire(lock)
            return False
        with os.fdopen(fd, "w") as f:
            f.write(str(os.getpid()))
        return True


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
