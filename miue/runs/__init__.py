"""The run store: every expensive step is a run with a frozen config, addressed by the config's hash.

``RunStore().get_or_compute(kind, config, compute)`` returns the committed JSON record under
``data/runs/<kind>/<hash>.json`` (``$MIUE_RUNS`` if set) if present, and computes it otherwise. Records are
written atomically (temporary file + ``os.replace``) with a checksum, so a half-written or edited record is
detected and not trusted; a record with non-finite metrics is never written. Artifacts (poisons, models)
go to the git-ignored ``data/cache/<kind>/<hash>/`` with their SHA-256 in a manifest there and in the
record, and are verified when loaded. An interrupted run resumes from its checkpoint; its wall time adds
up across resumes.

Locks. A run being computed holds ``<artifacts>/.lock``, created atomically with its content (host, PID,
the process's start time, a random token) and refreshed by a heartbeat thread. A waiting process judges the
holder: on the same host, alive iff that PID runs (a zombie does not) *and* started when the lock says (PID
reuse is caught; a lock without a start time is trusted for one lease of heartbeat); on another host, alive
while the heartbeat is younger than :data:`LEASE_SECONDS`. A lock naming no possible process (PID 0,
negative, not a number) is taken over at once; an empty or unreadable one once it is older than the lease.
Takeover goes through a second exclusive file (itself judged the same way, should its taker die), so
exactly one process computes. A waiting process says which run it waits for and who holds it. A record
found corrupt is set aside only if it is still the very file that was read, never a good record that
another process wrote meanwhile.

``MIUE_NO_COMPUTE=1`` (any value but '', 0, false, no, off) turns every computation into an error
(:class:`ComputeForbidden`): the test that builds the book from committed records uses it, and so can a
reader who wants to be sure.

Modules: :mod:`~miue.runs.records` (hashes, checksums, provenance), :mod:`~miue.runs.lock` (the lock and
process liveness), :mod:`~miue.runs.store` (:class:`RunStore`, :class:`RunContext`).
"""

from .lock import HEARTBEAT_SECONDS, LEASE_SECONDS, Lock
from .records import canonical, compute_seconds, config_hash, file_sha256, provenance
from .store import SCHEMA, ComputeForbidden, RecordVersionError, RunContext, RunStore, no_compute

__all__ = ["HEARTBEAT_SECONDS", "LEASE_SECONDS", "Lock", "canonical", "compute_seconds", "config_hash",
           "file_sha256", "provenance", "SCHEMA", "ComputeForbidden", "RecordVersionError", "RunContext",
           "RunStore", "no_compute"]
