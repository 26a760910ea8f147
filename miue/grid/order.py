"""Which runs are missing and in what order they go: waves by dependency (parallel jobs), or one after another
in the order listed (inline)."""

from __future__ import annotations

from ..chapters import StoredSpec
from ..runs import RunStore


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
