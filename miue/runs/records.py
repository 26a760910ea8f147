"""What a record is made of: the canonical config and its hash (a run's address), the record's checksum,
artifact digests, and the provenance of the process that computed it (commit, versions, device, threads)."""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import socket
import subprocess
import sys
from pathlib import Path


def canonical(obj) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def config_hash(kind: str, config: dict) -> str:
    """The address of a run: SHA-256 of its kind and canonical config (16 hex digits)."""
    return hashlib.sha256(canonical({"kind": kind, "config": config}).encode()).hexdigest()[:16]


def _checksum(record: dict) -> str:
    return hashlib.sha256(canonical({k: v for k, v in record.items() if k != "checksum"}).encode()).hexdigest()


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _non_finite(obj, where="metrics") -> str | None:
    """The path of the first NaN/inf number in ``obj``, or None."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return where
    if isinstance(obj, dict):
        for k, v in obj.items():
            bad = _non_finite(v, f"{where}.{k}")
            if bad:
                return bad
    if isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            bad = _non_finite(v, f"{where}[{i}]")
            if bad:
                return bad
    return None


def _scalar(obj):
    """json.dumps ``default``: numpy and 0-d torch scalars as Python numbers."""
    shape = getattr(obj, "shape", None)
    if callable(getattr(obj, "item", None)) and shape is not None and tuple(shape) == ():
        return obj.item()
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


def _git_state() -> tuple[str | None, bool | None]:
    """(HEAD of this checkout, whether ``miue/`` differs from it), or Nones outside a git checkout."""
    root = Path(__file__).resolve().parent.parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                                timeout=10).stdout.strip() or None
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--", "miue"], cwd=root, capture_output=True,
                                    text=True, timeout=10).stdout.strip())
    except (OSError, subprocess.SubprocessError):
        return None, None
    return commit, dirty if commit else None


# the code a process runs is the code it imported: a run that outlasts a commit (hours in the background while
# work goes on) records the commit it started from, not the one checked out when its record is written
_GIT_AT_IMPORT = _git_state()


def provenance(device: str | None = None) -> dict:
    """Where and with what a run was computed: git commit (as this process imported the package), package
    versions, device, threads, host."""
    commit, dirty = _GIT_AT_IMPORT
    if os.environ.get("MIUE_GIT_COMMIT"):  # the caller knows better: a copy of a working tree (a lent GPU
        commit, dirty = os.environ["MIUE_GIT_COMMIT"], None  # machine) whose .git, if any, is not its commit
    import numpy
    import torch
    versions = {"python": platform.python_version(), "torch": torch.__version__, "numpy": numpy.__version__}
    for mod in ("torchvision", "timm", "safetensors", "sklearn"):
        try:
            versions[mod] = __import__(mod).__version__
        except ImportError:
            pass
    from .. import __version__
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
    out = {"git_commit": commit, "git_dirty": dirty, "versions": versions, "device": dev, "device_name": name,
           "torch_threads": torch.get_num_threads(), "hostname": socket.gethostname(), "platform": sys.platform}
    from ..data import loaded_datasets
    if loaded_datasets():  # a copy of a dataset checked by digest (CIFAR-10's JPEG copy): which one, decoded how
        out["datasets"] = loaded_datasets()
    return out


def compute_seconds(record: dict) -> float:
    """A record's own compute time on its machine: on a CPU where recorded, the CPU time of its compute divided
    by its threads (what the run takes with the CPU to itself); otherwise its wall time, which also counts the
    time spent waiting for a shared or paused CPU. Time spent inside the run computing its inputs (other runs,
    or a recorded input's artifacts regenerated for a lost cache) is left out where the record says it
    (``inputs_cpu_time_s``, ``inputs_wall_time_s``): those inputs count once, in their own records."""
    pv = record["provenance"]
    if pv.get("cpu_time_s") and pv.get("torch_threads") and str(pv.get("device", "cpu")).startswith("cpu"):
        return max(pv["cpu_time_s"] - (pv.get("inputs_cpu_time_s") or 0.0), 0.0) / pv["torch_threads"]
    return max(pv["wall_time_s"] - (pv.get("inputs_wall_time_s") or 0.0), 0.0)
