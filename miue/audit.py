"""Same config, same number? Re-running committed runs from scratch and measuring how far they drift.

:func:`rerun` computes a spec from scratch in a scratch store with a given number of torch threads;
:func:`drift_study` (a run of kind ``drift``) re-runs one victim and one poison of a profile several times
at 2 and 1 threads and records how far their metrics move, against each other and against the committed
records. The Reproduce page shows the study; the book's tolerances are derived from it by
:func:`tolerances`.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import torch

from . import experiments as ex
from .profiles import Profile
from .runs import RunStore
from .specs import PoisonSpec, VictimSpec


def rerun(spec, threads: int, scratch: Path, progress: bool = False, device: str = "cpu") -> tuple[dict, object]:
    """(record, poison or None) of ``spec`` computed from scratch with ``threads`` torch threads."""
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        store = RunStore(scratch / "runs", scratch / "cache")
        rec = ex.run(spec, store, progress, device)
        pois = ex.load_poison(spec, store, progress, device) if isinstance(spec, PoisonSpec) else None
        return rec, pois
    finally:
        torch.set_num_threads(old)


def _poison_diff(a, b, images) -> dict:
    pa, pb = a.apply(images).int(), b.apply(images).int()
    diff = (pa - pb).abs()
    return {"pixels_differing": float((diff > 0).float().mean()), "max_level_difference": int(diff.max()),
            "images_differing": float((diff.flatten(1).amax(1) > 0).float().mean())}


def drift_study(p: Profile, victim_method: str = "clean", poison_method: str = "miue", threads=(2, 2, 1),
                store: RunStore | None = None, progress: bool = True) -> dict:
    """Record (kind ``drift``) of re-running one victim and one poison of ``p`` at each thread count in
    ``threads``, from scratch, compared with each other and with the committed records."""
    store = store or RunStore()
    vspec: VictimSpec = ex.victim_spec(p, victim_method, p.seeds[0])
    pspec: PoisonSpec = ex.poison_spec(p, poison_method)
    cfg = {"victim": vspec.config(), "poison": pspec.config(), "threads": list(threads), "device": "cpu"}

    def compute(ctx):
        committed_v = store.lookup(vspec)
        committed_p = store.lookup(pspec)
        train, _ = ex.datasets(p)
        victims, poisons, first = [], [], None
        for i, t in enumerate(threads):
            # each re-run in its own scratch store inside this run's cache folder: an interrupted study
            # resumes every re-run from its last epoch
            v, _ = rerun(vspec, t, ctx.artifacts / f"victim-{i}-threads{t}", progress)
            victims.append({"threads": t, "test_acc": v["metrics"]["test_acc"],
                            "train_acc": v["metrics"]["train_acc"], "seconds": v["provenance"]["wall_time_s"],
                            "curve": [e.get("test_acc") for e in v["history"]]})
            r, pois = rerun(pspec, t, ctx.artifacts / f"poison-{i}-threads{t}", progress)
            entry = {"threads": t, "seconds": r["provenance"]["wall_time_s"],
                     "mean_abs_levels": r["metrics"]["mean_abs_levels"],
                     "last_epoch": r["history"][-1] if r["history"] else {}}
            if first is None:
                first = pois
            else:
                entry["vs_first_rerun"] = _poison_diff(first, pois, train.images)
            poisons.append(entry)
        accs = [v["test_acc"] for v in victims]
        metrics = {"victims": victims, "poisons": poisons,
                   "victim_acc_range": max(accs) - min(accs),
                   "victim_acc_same_threads": abs(accs[0] - accs[1]) if len(accs) > 1 else 0.0,
                   "victim_acc_threads": abs(accs[0] - accs[-1])}
        if committed_v is not None:
            metrics["committed_victim_acc"] = committed_v["metrics"]["test_acc"]
            metrics["committed_victim_threads"] = committed_v["provenance"].get("torch_threads")
            metrics["victim_vs_committed"] = max(abs(a - committed_v["metrics"]["test_acc"]) for a in accs)
        if committed_p is not None:
            metrics["committed_poison_mean_abs_levels"] = committed_p["metrics"]["mean_abs_levels"]
        for scratch in ctx.artifacts.glob("*-threads*"):
            shutil.rmtree(scratch, ignore_errors=True)
        return {"metrics": metrics}

    return store.get_or_compute("drift", cfg, compute, device="cpu", seed=p.seeds[0])


def tolerances(drift: dict | None, factor: float = 2.0, floor: float = 0.005, relative_floor: float = 0.01) -> dict:
    """The book's tolerances from a drift record: ``factor`` × the largest drift seen, at least the floors.

    ``victim_acc`` is the accuracy difference (fraction) within which a re-run counts as the same number;
    ``relative`` the relative difference of any other metric (from the poison's mean |δ| across re-runs)."""
    if drift is None:
        return {"victim_acc": floor, "relative": relative_floor}
    m = drift["metrics"]
    worst = max(m["victim_acc_range"], m.get("victim_vs_committed", 0.0))
    levels = [p["mean_abs_levels"] for p in m.get("poisons", [])]
    rel = (max(levels) - min(levels)) / max(levels) if levels and max(levels) > 0 else 0.0
    return {"victim_acc": max(floor, factor * worst), "relative": max(relative_floor, factor * rel)}


def retrained_pairs(store: RunStore | None = None) -> list[dict]:
    """Every pair of records that trained one victim config twice: a SAL/UD run trains the victim its config
    names (measuring SAL between epochs) and records its accuracy, beside that victim's own record. One dict
    per pair: method, both accuracies (%), both thread counts, both commits."""
    store = store or RunStore()
    out = []
    for r in store.records("sal"):
        v = r["config"]["victim"]
        plain = store.get("victim", v)
        if plain is None or "test_acc" not in r["metrics"]:
            continue
        a, b = r["provenance"], plain["provenance"]
        out.append({"method": v["poison"]["method"] if v.get("poison") else "clean", "dataset": v["dataset"],
                    "acc (SAL run)": 100 * r["metrics"]["test_acc"], "acc (victim)": 100 * plain["metrics"]["test_acc"],
                    "threads (SAL run)": a.get("torch_threads"), "threads (victim)": b.get("torch_threads"),
                    "commits": f"{a['git_commit'][:7]} / {b['git_commit'][:7]}"})
    return out


def method_tolerances(p: Profile, store: RunStore | None = None, drift: dict | None = None):
    """One tolerance per method for "the same number" at profile ``p``: the largest of the drift study's
    (:func:`tolerances`), twice the method's seed standard deviation over its undefended victims, and the
    largest difference measured between two trainings of one victim config at different thread counts
    (:func:`retrained_pairs`). Pairs trained with equal thread counts but at different commits are shown
    beside it (code changed between them), not folded into the tolerance."""
    import numpy as np
    import pandas as pd
    store = store or RunStore()
    base = 100 * tolerances(drift)["victim_acc"]
    pairs = [q for q in retrained_pairs(store) if q["dataset"] == p.dataset]
    rows = []
    for m in ("clean", *ex.ATTACKS):
        accs = [100 * r["metrics"]["test_acc"] for r in (store.lookup(ex.victim_spec(p, m, s))
                                                        for s in p.seeds) if r]
        sd = float(np.std(accs, ddof=1)) if len(accs) > 1 else float("nan")
        mine = [(abs(q["acc (SAL run)"] - q["acc (victim)"]), q["threads (SAL run)"] == q["threads (victim)"])
                for q in pairs if q["method"] == m]
        same = [d for d, eq in mine if eq]
        other = [d for d, eq in mine if not eq]
        rows.append({"method": m, "seeds": len(accs), "seed std": sd, "trained twice": len(mine),
                     "same threads: identical": sum(d < 1e-9 for d in same),
                     "same threads, other code: largest difference": max([d for d in same if d >= 1e-9],
                                                                         default=np.nan),
                     "1 vs 2 threads: largest difference": max(other, default=np.nan),
                     "tolerance": max([base, 2 * sd if sd == sd else 0.0, *other])})
    return pd.DataFrame(rows).set_index("method")


def _leaves(obj, prefix=""):
    """(name, number) for every numeric leaf of a metrics dict; timings are left out."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _leaves(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _leaves(v, f"{prefix}[{i}]")
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
        if not any(t in prefix for t in ("seconds", "time")):
            yield prefix, float(obj)


def compare(recorded: dict, rerun_: dict, tol: dict) -> list[dict]:
    """One row per numeric metric: recorded, re-run, difference, tolerance, and whether it holds."""
    new = dict(_leaves(rerun_["metrics"]))
    rows = []
    for name, old in _leaves(recorded["metrics"]):
        if name not in new:
            rows.append({"metric": name, "recorded": old, "rerun": None, "difference": None, "tolerance": None,
                         "holds": False})
            continue
        diff = abs(new[name] - old)
        t = tol["victim_acc"] if "acc" in name else tol["relative"] * max(abs(old), 1e-12)
        rows.append({"metric": name, "recorded": old, "rerun": new[name], "difference": diff, "tolerance": t,
                     "holds": bool(diff <= t + 1e-12)})
    return rows


def candidates(p: Profile, store: RunStore, max_minutes: float | None = None) -> list:
    """Every recorded run of ``p``'s chapters and studies that :func:`miue.experiments.run` can recompute."""
    from .chapters import CHAPTERS, STUDIES, StoredSpec, chapter_specs
    seen, out = set(), []
    for chapter in [*CHAPTERS, *STUDIES]:
        for s in chapter_specs(chapter, p):
            if isinstance(s, StoredSpec) or s.address in seen:
                continue
            seen.add(s.address)
            rec = store.lookup(s)
            if rec is None:
                continue
            if max_minutes is not None:  # what a re-run costs: the run and what it reads, as recorded
                deps = [store.lookup(d) for d in s.dependencies()]
                cost = rec["provenance"]["wall_time_s"] + sum(d["provenance"]["wall_time_s"] for d in deps if d)
                if cost > 60 * max_minutes:
                    continue
            out.append(s)
    return sorted(out, key=lambda s: s.address)


def sample_audit(p: Profile, k: int = 1, seed: int | None = None, store: RunStore | None = None,
                 max_minutes: float | None = None, progress: bool = False) -> dict:
    """Record (kind ``audit``) of re-running ``k`` randomly chosen recorded runs of ``p`` from scratch, each
    in a scratch store with the torch threads its record names, compared metric by metric with the record
    within the tolerances of the profile's drift study (the floors where none is recorded)."""
    import random
    store = store or RunStore()
    pool = candidates(p, store, max_minutes)
    if not pool:
        raise LookupError(f"no recorded run of the {p.name} profile to audit in {store.root}"
                          + (f" under {max_minutes} min" if max_minutes else "")
                          + f": compute some first (miue grid CHAPTER --profile {p.name})")
    seed = random.SystemRandom().randrange(2 ** 31) if seed is None else seed
    chosen = random.Random(seed).sample(pool, min(k, len(pool)))
    drifts = [d for d in RunStore().records("drift") if d["config"]["victim"].get("n_train") == p.n_train]
    tol = tolerances(drifts[0] if drifts else None)
    cfg = {"profile": p.name, "sample": [s.address for s in chosen], "seed": seed, "tolerances": tol,
           "dependency_threads": "recorded"}
    device = p.device if p.device != "auto" else "cpu"

    def threads_of(rec) -> int:
        return int(rec["provenance"].get("torch_threads") or 1)

    def compute(ctx):
        rows, runs = [], []
        for i, s in enumerate(chosen):
            old = store.lookup(s)
            threads = threads_of(old)
            scratch = ctx.artifacts / f"rerun-{i}"
            # what the run reads (its poison, its victim …) is recomputed first, each with the thread count
            # its own record names: a victim trained at 1 thread is another victim than at 2
            for dep in reversed(s.dependencies()):
                dep_rec = store.lookup(dep)
                if dep_rec is not None:
                    rerun(dep, threads_of(dep_rec), scratch, progress, device)
            new, _ = rerun(s, threads, scratch, progress, device)
            cmp = compare(old, new, tol)
            runs.append({"address": s.address, "what": s.describe(), "threads": threads,
                         "recorded_seconds": old["provenance"]["wall_time_s"],
                         "rerun_seconds": new["provenance"]["wall_time_s"],
                         "metrics_compared": len(cmp), "metrics_holding": sum(r["holds"] for r in cmp)})
            rows += [{"address": s.address, **r} for r in cmp]
            shutil.rmtree(scratch, ignore_errors=True)
        return {"metrics": {"runs": runs, "rows": rows, "all_hold": all(r["holds"] for r in rows)}}

    return store.get_or_compute("audit", cfg, compute, device="cpu", seed=seed)


def audit_table(record: dict, all_rows: bool = False):
    """The audit as a DataFrame: one row per compared metric (only the headline ones unless ``all_rows``)."""
    import pandas as pd
    rows = record["metrics"]["rows"]
    if not all_rows:
        head = ("test_acc", "train_acc", "mean_abs_levels", "mi", "mi_gap", "trace", "accuracy")
        keep = [r for r in rows if r["metric"].split(".")[-1] in head or not r["holds"]]
        rows = keep or rows
    what = {r["address"]: r["what"] for r in record["metrics"]["runs"]}
    df = pd.DataFrame([{"run": what[r["address"]], "metric": r["metric"], "recorded": r["recorded"],
                        "re-run": r["rerun"], "|difference|": r["difference"], "tolerance": r["tolerance"],
                        "same number": "yes" if r["holds"] else "NO"} for r in rows])
    return df


def main(argv=None) -> int:
    import argparse
    from .profiles import profile
    ap = argparse.ArgumentParser(
        prog="miue audit", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Same config, same number? Two audits of the run store.\n\n"
                    "  --sample K   re-run K randomly chosen recorded runs of the profile from scratch in a scratch\n"
                    "               store and compare every metric with its record, within the tolerances of\n"
                    "               the drift study; exits 1 when a metric drifts beyond them.\n"
                    "  (default)    the drift study: re-run one victim and one poison from scratch at several\n"
                    "               thread counts and record how far they move.")
    from .profiles import PROFILES
    ap.add_argument("--profile", default="cpu", choices=list(PROFILES),
                    help="the profile whose recorded runs --sample re-runs, or whose budgets the drift study uses "
                         "(default cpu)")
    ap.add_argument("--sample", type=int, default=None, metavar="K", help="audit K random recorded runs")
    ap.add_argument("--seed", type=int, default=None, help="which runs --sample picks (default: random)")
    ap.add_argument("--max-minutes", type=float, default=None,
                    help="--sample only runs whose recorded time, with what they read, is shorter")
    ap.add_argument("--runs", default=None, help="run records folder (default data/runs, or $MIUE_RUNS)")
    ap.add_argument("--cache", default=None, help="artifacts folder (default data/cache, or $MIUE_CACHE)")
    ap.add_argument("--victim", default="clean", help="drift study: the victim's method")
    ap.add_argument("--poison", default="miue", help="drift study: the poison's method")
    ap.add_argument("--threads", type=int, nargs="+", default=[2, 2, 1], help="drift study: thread counts")
    args = ap.parse_args(argv)
    store = RunStore(args.runs, args.cache)
    if args.sample is not None:
        if args.sample < 1:
            ap.error("--sample K needs K >= 1")
        try:
            rec = sample_audit(profile(args.profile), args.sample, args.seed, store, args.max_minutes)
        except LookupError as exc:
            print(f"miue audit: {exc}", file=sys.stderr)
            return 2
        import pandas as pd
        with pd.option_context("display.width", 160, "display.max_columns", 10, "display.max_colwidth", 48):
            print(audit_table(rec).to_string(index=False))
        ok = rec["metrics"]["all_hold"]
        print(f"audit/{rec['hash']}: {len(rec['metrics']['runs'])} runs re-run, "
              f"{sum(r['holds'] for r in rec['metrics']['rows'])} of {len(rec['metrics']['rows'])} metrics within "
              f"tolerance" + ("" if ok else " — DRIFT beyond tolerance"))
        return 0 if ok else 1
    rec = drift_study(profile(args.profile), args.victim, args.poison, tuple(args.threads), store)
    m = rec["metrics"]
    print(f"drift/{rec['hash']}: victim accuracies {[round(v['test_acc'], 4) for v in m['victims']]}, "
          f"poisons {[p.get('vs_first_rerun') for p in m['poisons']]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
