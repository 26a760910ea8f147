"""``python -m miue.grid CHAPTER --profile P``: run every missing run of a chapter (or study) in this process.

Lists the chapter's specs (:func:`miue.chapters.chapter_specs`), skips those with records, and executes the
rest through the run store, dependencies first: interrupted, it resumes from the last checkpoint (at most
one epoch lost). ``--dry-run`` prints the specs, which are recorded, and the recorded compute time.
"""

from __future__ import annotations

import argparse
import sys

from . import experiments as ex
from .chapters import CHAPTERS, STUDIES, StoredSpec, chapter_specs
from .profiles import profile
from .runs import RunStore


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m miue.grid", description=__doc__.splitlines()[0])
    ap.add_argument("chapter", choices=sorted({**CHAPTERS, **STUDIES}))
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--dry-run", action="store_true", help="list the specs and what is recorded; compute nothing")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    p = profile(args.profile)
    store = RunStore()
    specs = chapter_specs(args.chapter, p)
    missing = []
    for s in specs:
        kind = s.run_kind if isinstance(s, StoredSpec) else s.kind
        rec = store.get(kind, s.config())
        state = f"recorded ({rec['provenance']['wall_time_s'] / 60:.1f} min)" if rec else "missing"
        print(f"{s.address}  {state:>22}  {s.describe()}")
        if rec is None:
            missing.append(s)
    print(f"{len(specs)} runs, {len(missing)} missing", flush=True)
    if args.dry_run:
        return 0
    for s in missing:  # in the listed order; a run computes what it depends on first (its poison …)
        if isinstance(s, StoredSpec):
            print(f"skipping {s.describe()}: computed by its chapter's own module", file=sys.stderr)
            continue
        if store.get(s.kind, s.config()) is None:
            print(f"== {s.describe()} ({s.address})", flush=True)
            ex.run(s, store, progress=not args.no_progress, device=p.device)
    return 0


if __name__ == "__main__":
    sys.exit(main())
