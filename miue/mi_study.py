"""The MI study on real features at the paper's sample size (chapter 8), and what it says about the paper's number.

The study estimates the class-conditional sliced MI (the paper's App. F, Eq. 17) between each large victim's
clean and poisoned training features with the histogram (the paper's 100 bins), KSG and KDE, each with Eq. 17's
independent slicing and with one shared direction, and each beside the same estimator on a within-class shuffled
pairing (true MI 0). :func:`records` reads those runs; :func:`summary` condenses them into the numbers that
chapter 8's paragraph and chapter 2's conclusion quote, so the two chapters state one result.
"""

from __future__ import annotations

import math

from . import experiments as ex
from .chapters import mi_study_specs
from .profiles import Profile, profile
from .runs import RunStore
from .stats import spearman

NATS_PER_BIT = math.log(2)
PAPER_LEVEL = (0.50, 0.71)  # the paper's Table 1 MI values (CIFAR-10; unit and sample size not stated)


def large_profile(p: Profile) -> Profile:
    """The profile whose victims the study reads beside ``p``: ``full`` (the whole Fashion-MNIST training set),
    or the smoke profile itself at smoke (a structure check)."""
    return p if p.name == "smoke" else profile("full")


def records(L: Profile, methods, store: RunStore | None = None, compute: bool = False) -> dict:
    """(method, estimator, shared) → the study's MI record at profile ``L`` (seed ``L.seeds[0]``), for every
    recorded one; with ``compute`` the missing ones (and their victims) are computed."""
    store = store or RunStore()
    out = {}
    for m in methods:
        for spec in mi_study_specs(L, m):
            rec = store.lookup(spec)
            if rec is None and compute:
                rec = ex.run(spec, store, progress=False, device=L.device)
            if rec is not None:
                out[(m, spec.estimator, spec.shared_directions)] = rec
    return out


def summary(study: dict, methods) -> dict | None:
    """What the study says about the paper's number (None where no histogram row with independent slicing is
    recorded): the histogram's level without dependence (``shuffled``, nats, mean over methods); per method,
    whether its shuffled baseline alone reaches the bottom of the paper's 0.50–0.71 in nats or in bits
    (``reach_by``: "nats", "bits" or None) and the unit in which any method's does (``reach``); each method's histogram
    MI, its excess over the shuffled baseline and KSG's estimate (independent slicing); Spearman ρ over the poisons
    between the raw histogram MI and its excess (``rho_excess``) and KSG (``rho_ksg``); whether every poison's
    excess lies below clean's (``ues_below_clean``, the paper's claim C1 after the bias correction); each method's
    shuffled baseline (``baseline``, nats) and the share of its histogram MI that the baseline makes up
    (``bias_share``); the largest distance between the excess and KSG's estimate (``ksg_distance``, nats; nan
    without KSG rows); and the clean features' effective rank (``rank``, per method, where recorded)."""
    hist = {m: study[(m, "histogram", False)]["metrics"] for m in methods if (m, "histogram", False) in study}
    if not hist:
        return None
    ksg = {m: study[(m, "ksg", False)]["metrics"]["mi"] for m in methods if (m, "ksg", False) in study}
    shuffled = sum(r["mi_shuffled"] for r in hist.values()) / len(hist)
    lo = PAPER_LEVEL[0]
    reach_by = {m: "nats" if r["mi_shuffled"] >= lo else "bits" if r["mi_shuffled"] / NATS_PER_BIT >= lo else None
                for m, r in hist.items()}
    reach = "nats" if "nats" in reach_by.values() else "bits" if "bits" in reach_by.values() else None
    ues = [m for m in hist if m not in ("clean", "random")]
    both = [m for m in ues if m in ksg]
    below = None
    if "clean" in hist and ues:
        below = all(hist[m]["mi_excess"] < hist["clean"]["mi_excess"] for m in ues)
    any_rec = study[next(k for k in study if k[1] == "histogram")]
    return {
        "n_per_class": any_rec["metrics"]["n_per_class"], "bins": any_rec["config"]["bins"],
        "feature_dim": any_rec["metrics"].get("feature_dim"), "shuffled": shuffled, "reach": reach,
        "reach_by": reach_by,
        "hist": {m: r["mi"] for m, r in hist.items()}, "excess": {m: r["mi_excess"] for m, r in hist.items()},
        "ksg": ksg, "ues": ues,
        "rho_excess": spearman([hist[m]["mi"] for m in ues], [hist[m]["mi_excess"] for m in ues]),
        "rho_ksg": spearman([hist[m]["mi"] for m in both], [ksg[m] for m in both]),
        "ues_below_clean": below,
        "baseline": {m: r["mi_shuffled"] for m, r in hist.items()},
        "bias_share": {m: r["mi_shuffled"] / r["mi"] for m, r in hist.items() if r["mi"] > 0},
        "ksg_distance": max((abs(hist[m]["mi_excess"] - ksg[m]) for m in hist if m in ksg), default=float("nan")),
        "rank": {m: r["effective_rank_clean"] for m, r in hist.items() if "effective_rank_clean" in r},
    }


def _and(names: list) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def reach_sentence(s: dict) -> str:
    """Does the histogram's bias alone reach the paper's level on these features? Decided per method (each
    method's features have their own shuffled baseline), against the bottom (0.50) and the top (0.71, the
    paper's clean value) of the paper's range, in nats and in bits."""
    from .methods import label
    lo, hi = PAPER_LEVEL
    b = s["baseline"]
    b_lo, b_hi = min(b.values()), max(b.values())

    def span(scale=1.0):
        return f"{b_lo / scale:.2f}" if round(b_lo / scale, 2) == round(b_hi / scale, 2) else \
            f"{b_lo / scale:.2f}–{b_hi / scale:.2f}"

    head = (f"With no dependence at all (the shuffled pairing) the {s['bins']}-bin histogram gives {span()} nats "
            f"({span(NATS_PER_BIT)} bits) at {s['n_per_class']:,} points per class"
            + (", depending on the method's features" if len(b) > 1 and b_lo != b_hi else "")
            + f". Against the paper's level of {lo:.2f}–{hi:.2f} (it states neither unit nor sample size): ")
    by_unit = {u: [label(m) for m, r in s["reach_by"].items() if r == u] for u in ("nats", "bits")}
    if not any(by_unit.values()):
        return head + ("**the bias alone reaches it for none of the methods**, in nats or in bits; at this sample "
                       "size and on these features a number at the paper's level would carry dependence too.")
    reached = "; ".join(f"in {u} for {_and(ms)}" for u, ms in by_unit.items() if ms)
    top = ("and its top as well" if b_hi >= hi else
           f"but not its top ({hi:.2f}) in nats" + ("" if b_hi / NATS_PER_BIT >= hi else " or in bits"))
    return head + f"**the bias alone reaches its bottom ({lo:.2f})** {reached}, {top}."
