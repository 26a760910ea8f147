"""The lock a run holds while it is computed: created atomically with its holder's identity, refreshed by
a heartbeat, judged stale by process liveness on the same host and by the heartbeat's age elsewhere, and
taken over through a second exclusive file so that exactly one process computes (see :mod:`miue.runs`)."""

from __future__ import annotations

import json
import os
import secrets
import socket
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

LEASE_SECONDS = 60.0  # a lock whose heartbeat (or, unreadable, whose file) is older than this is stale
HEARTBEAT_SECONDS = 5.0


def _proc_stat(pid: int) -> tuple[str, str] | None:
    """(state letter, start time in clock ticks since boot) of ``pid`` (Linux), or None where unreadable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return fields[0], fields[19]
    except (OSError, IndexError, ValueError):
        return None


def _process_start(pid: int) -> str | None:
    """The start time of ``pid`` in clock ticks since boot (Linux), or None where it cannot be read."""
    stat = _proc_stat(pid)
    return None if stat is None else stat[1]


def _valid_pid(pid) -> bool:
    # 0 and negative numbers address process groups (os.kill(0, 0) and os.kill(-1, 0) succeed): never a holder
    return isinstance(pid, int) and not isinstance(pid, bool) and 0 < pid < 2 ** 31


def _alive(pid: int) -> bool:
    """Whether ``pid`` is a running process (a zombie, killed but not yet reaped by its parent, is not)."""
    if not _valid_pid(pid):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    except (OverflowError, OSError):
        return False
    stat = _proc_stat(pid)
    return stat is None or stat[0] not in ("Z", "X", "x")


@dataclass
class Lock:
    """An exclusive claim on one run, shared by every host that sees the store's file system."""

    path: Path
    lease: float = LEASE_SECONDS
    token: str = field(default_factory=lambda: secrets.token_hex(8))
    _stop: threading.Event | None = None

    def identity(self) -> dict:
        pid = os.getpid()
        return {"host": socket.gethostname(), "pid": pid, "start": _process_start(pid), "token": self.token,
                "since": datetime.now(timezone.utc).isoformat(timespec="seconds")}

    @staticmethod
    def read(path: Path) -> dict | None:
        """The holder's identity, or None when the lock is empty or unreadable."""
        try:
            info = json.loads(path.read_text())
        except (OSError, ValueError, UnicodeDecodeError):
            return None
        if not isinstance(info, dict) or not {"host", "pid", "token"} <= set(info):
            return None
        return info

    def holder_alive(self, info: dict | None, path: Path | None = None) -> bool:
        """Whether the lock at ``path`` (default ``self.path``; holder ``info``) belongs to a live process."""
        path = self.path if path is None else path
        try:
            age = time.time() - path.stat().st_mtime
        except FileNotFoundError:
            return False
        if info is None:  # empty or foreign content: a holder that died between create and write
            return age < self.lease
        if info["host"] == socket.gethostname():
            pid = info["pid"]
            if not _valid_pid(pid) or not _alive(pid):
                return False
            start, claimed = _process_start(pid), info.get("start")
            if start is not None and claimed is not None:
                return str(claimed) == start  # a different start time: the PID was reused by another process
            return age < self.lease  # no start time to compare: trust the heartbeat for one lease
        return age < self.lease  # another host: trust its heartbeat for one lease

    def _create(self, path: Path | None = None) -> bool:
        """Create the lock (or ``path``) with its content in one step (link of a complete temp file): True if ours."""
        path = self.path if path is None else path
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{self.token}")
        tmp.write_text(json.dumps(self.identity()))
        try:
            os.link(tmp, path)
            return True
        except FileExistsError:
            return False
        finally:
            tmp.unlink(missing_ok=True)

    def _claim_guard(self, guard: Path) -> bool:
        """Create the exclusive takeover file; a guard left by a taker that died is moved aside (retry later)."""
        if self._create(guard):
            return True
        ginfo = self.read(guard)
        if self.holder_alive(ginfo, guard):
            return False
        aside = guard.with_name(f".{guard.name}.{self.token}.stale")
        try:
            os.rename(guard, aside)
        except FileNotFoundError:
            return False
        moved = self.read(aside)
        if (moved or {}).get("token") != (ginfo or {}).get("token"):  # a fresh guard got in between: restore it
            try:
                os.link(aside, guard)
            except FileExistsError:
                pass
        aside.unlink(missing_ok=True)
        return False

    def acquire(self) -> bool:
        """Take the lock if free or stale; False while a live process holds it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self._create():
            self._start_heartbeat()
            return True
        info = self.read(self.path)
        if self.holder_alive(info):
            return False
        # stale: take it over through an exclusive takeover file, so that exactly one process does
        guard = self.path.with_name(self.path.name + ".takeover")
        if not self._claim_guard(guard):
            return False
        try:
            again = self.read(self.path)
            same = (again is None and info is None) or (again is not None and info is not None
                                                        and again.get("token") == info.get("token"))
            if same and not self.holder_alive(again):
                self.path.unlink(missing_ok=True)
            if self._create():
                self._start_heartbeat()
                return True
            return False
        finally:
            g = self.read(guard)
            if g is not None and g.get("token") == self.token:
                guard.unlink(missing_ok=True)

    def _start_heartbeat(self) -> None:
        self._stop = threading.Event()

        def beat(stop=self._stop):
            while not stop.wait(min(HEARTBEAT_SECONDS, self.lease / 4)):
                try:
                    info = self.read(self.path)
                    if info is None or info.get("token") != self.token:
                        return
                    os.utime(self.path)
                except OSError:
                    return

        threading.Thread(target=beat, daemon=True, name=f"lock-heartbeat {self.path.parent.name}").start()

    def release(self) -> None:
        if self._stop is not None:
            self._stop.set()
        info = self.read(self.path)
        if info is not None and info.get("token") == self.token:
            self.path.unlink(missing_ok=True)

    def describe_holder(self) -> str:
        info = self.read(self.path)
        if info is None:
            return "an unreadable lock (taken over once it is older than the lease)"
        return f"process {info['pid']} on {info['host']} since {info.get('since', '?')}"


# ---------------------------------------------------------------------------------------------- runs
