"""``miue grid`` (and ``python -m miue.grid``): the options, a chapter's runs listed with their costs, the report."""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

from ..chapters import CHAPTERS, STUDIES, StoredSpec, chapter_specs
from ..profiles import ProfileError, profile
from ..runs import RunStore
from .costs import estimate_seconds, regeneration_seconds
from .dispatcher import dispatch
from .executors import CLUSTERS
from .jobs import Outcome
from .order import missing_specs


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


def _command_doc() -> str:
    """The package's docstring without its map of the modules: what ``miue grid --help`` describes."""
    return sys.modules[__package__].__doc__.split("\n\nModules:", 1)[0]


def main(argv=None) -> int:
    doc = _command_doc()
    ap = argparse.ArgumentParser(
        prog="miue grid", formatter_class=argparse.RawDescriptionHelpFormatter,
        description=plain(doc.split("\n\n", 1)[1].strip() if "\n\n" in doc else doc),
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
    from ..profiles import PROFILES
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
