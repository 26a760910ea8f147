"""The Reproduce page's cost tables: hours per chapter and per study (recorded, estimated, left to compute) and
the runs recorded on another device against their time on the recording CPU."""

from __future__ import annotations

import statistics

from ..chapters import chapter_runs, chapter_specs
from ..profiles import profile
from ..runs import RunStore
from .costs import _rates_of, _regenerated_seconds, _work, estimate_seconds, regeneration_seconds


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
    from ..chapters import PAGE_STUDIES
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
