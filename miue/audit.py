"""Same config, same number? Re-running committed runs from scratch and measuring how far they drift.

:func:`rerun` computes a spec from scratch in a scratch store with a given number of torch threads;
:func:`drift_study` (a run of kind ``drift``) re-runs one victim and one poison of a profile several times
at 2 and 1 threads and records how far their metrics move, against each other and against the committed
records. The Reproduce page shows the study; the book's tolerances are derived from it by
:func:`tolerances`.
"""

from __future__ import annotations

import shutil
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
        committed_v = store.get("victim", vspec.config())
        committed_p = store.get("poison", pspec.config())
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


def tolerances(drift: dict, factor: float = 2.0, floor: float = 0.005) -> dict:
    """The book's tolerances from a drift record: ``factor`` × the largest drift seen, at least ``floor``.

    ``victim_acc`` is the accuracy difference (fraction) within which a re-run counts as the same number."""
    m = drift["metrics"]
    worst = max(m["victim_acc_range"], m.get("victim_vs_committed", 0.0))
    return {"victim_acc": max(floor, factor * worst)}


def main(argv=None) -> None:
    import argparse
    from .profiles import profile
    ap = argparse.ArgumentParser(prog="python -m miue.audit", description="Re-run one victim and one poison of "
                                 "a profile from scratch at several thread counts and record the drift.")
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--victim", default="clean")
    ap.add_argument("--poison", default="miue")
    ap.add_argument("--threads", type=int, nargs="+", default=[2, 2, 1])
    args = ap.parse_args(argv)
    rec = drift_study(profile(args.profile), args.victim, args.poison, tuple(args.threads))
    m = rec["metrics"]
    print(f"drift/{rec['hash']}: victim accuracies {[round(v['test_acc'], 4) for v in m['victims']]}, "
          f"poisons {[p.get('vs_first_rerun') for p in m['poisons']]}")
    return 0


if __name__ == "__main__":
    main()
