"""The papers' claims, each with the paper's number, ours from the committed records, and a computed verdict.

:func:`claims_table` reads records only (it computes nothing: a claim whose runs are not recorded at the
profile is "not tested here"). The verdict rules are stated in :data:`RULES` and printed on the Claims page.
"""

from __future__ import annotations


import numpy as np
import pandas as pd

from . import experiments as ex
from .profiles import Profile
from .runs import RunStore
from .stats import spearman

UES = ("em", "ap", "miue", "miue-code")
# the UEs of MI-UE Tables 1 and 2 that this book implements: C1 (MI below clean, the MI gap tracking the
# accuracy gap) and C3 (lowest of all UEs) use every one recorded
TABLE2_UES = ("em", "ap", "rem", "sem", "miue", "miue-code")
RULES = {
    "reduce": "holds if every UE (of MI-UE Table 1, recorded: EM, AP, REM, SEM, MI-UE) whose accuracy gap is at "
              "least 10 points has a lower MI than clean features, "
              "with the paper's estimator; the excess over the shuffled baseline is shown beside it",
    "tracks": "holds if Spearman(accuracy gap, MI gap) over Random and the UEs is at least 0.5 with the paper's "
              "estimator; the value with the excess over the shuffled baseline is shown beside it",
    "lowest": "holds if MI-UE (paper or code settings) has the lowest mean accuracy of the UEs of MI-UE Table 2 "
              "recorded (EM, AP, REM, SEM, MI-UE; at least EM, AP and MI-UE)",
    "depth": "holds if Spearman(depth, MI gap), averaged over EM, AP and MI-UE, is positive (deeper, larger gap)",
    "covariance": "holds if every UE's ½E log det Σ_Y of poisoned features is below clean and MI-UE's is the lowest",
    "separability": "holds if |Spearman(accuracy gap, linear accuracy on the noises)| over the UEs is below 0.5",
    "ud": "holds if AP (the SAL/UD paper's TAP) has UD > 1",
    "at": "holds if MI-UE's victim has the lowest accuracy of the adversarial-training chapter's UEs under both "
          "AT-6 and AT-8 (one seed each)",
    "terms": "holds if removing Eq. 2's similarity term raises the victim's accuracy by more than 5 points plus "
             "the rise from removing the distance term (0 if that lowers it; one seed each)",
    "zeta": "holds if every ζ ≥ 10 gives a victim accuracy more than 10 points above every ζ ≤ 1 (one seed each)",
    "defenses": "holds if MI-UE's highest accuracy over the defenses of Table 5 (the defender's best) is below every "
                "other UE's highest over the defenses both ran (one seed each)",
    "epochs": "holds if the shortest generation run's victim is more than 2 points above the profile's own budget's "
              "(one seed each)",
    "budget": "holds if the victims at the smallest and largest ε tried are within 5 points (one seed each)",
    "step": "holds if the victims at the paper's steps (0.1 to 0.8/255, the profile's number of epochs) are within "
            "5 points of each other (one seed each)",
    "regularizer": "holds if, at one of the MINE weights tried, both EM and AP with the MI regulariser leave their "
                   "victims more than 1 point below EM and AP without it (one seed each)",
    "contrastive": "holds if A-MI-UE lowers the SimCLR victim more than EM does, by more than 5 points (one seed each)",
    "transfer": "holds if MI-UE's victim has the lowest accuracy of the transfer chapter's UEs on at least half of "
                "its victim architectures (one seed each)",
    "speed": "holds if SEM's generation time divided into REM's (same settings, same machine) is within a factor "
             "1.5 of the SEM paper's 3.91 (2.6 to 5.9)",
}


# The ablation chapter's verdicts, one function per rule of :data:`RULES` (accuracies in %), shared by
# :func:`claims_table` and the chapter "What makes MI-UE work"
def terms_hold(full: float, no_similarity: float, no_distance: float) -> bool:
    """Table 6: removing the similarity term costs more than removing the distance term (``RULES['terms']``)."""
    return no_similarity - full > max(no_distance - full, 0) + 5


def zeta_holds(small: list, large: list) -> bool:
    """Table 7: victims at ζ ≥ 10 (``large``) all lie more than 10 points above those at ζ ≤ 1 (``small``)."""
    return bool(small) and bool(large) and min(large) > max(small) + 10


def epochs_hold(short: float, default: float) -> bool:
    """Table 9: the shortest generation run leaves its victim more than 2 points above the default budget's."""
    return short - default > 2


def budget_holds(at_smallest: float, at_largest: float) -> bool:
    """Table 10: the smallest and largest ε give victims within 5 points."""
    return abs(at_smallest - at_largest) < 5


def step_holds(accs: list) -> bool:
    """Table 22: the victims at the paper's PGD steps lie within 5 points of each other."""
    return len(accs) >= 2 and max(accs) - min(accs) < 5


def regularizer_holds(base: dict, regularized: dict) -> bool:
    """Table 8: at one MINE weight, every regularised UE's victim lies more than 1 point below its plain UE's.
    ``base``: UE → accuracy; ``regularized``: (UE, weight) → accuracy."""
    weights = {w for _, w in regularized}
    return any(all(regularized[(m, w)] < base[m] - 1 for m in base) for w in weights)


def contrastive_holds(clean: float, em: float, a_miue: float) -> bool:
    """Table 20: A-MI-UE lowers the SimCLR victim more than EM does, by more than 5 points."""
    return clean - a_miue > clean - em + 5


def transfer_wins(acc: dict, ues: list, archs: list) -> list:
    """Table 3: the architectures on which MI-UE's victim is the lowest of ``ues`` (``acc``: (UE, arch) → %)."""
    return [a for a in archs if min(ues, key=lambda m: acc[(m, a)]) == "miue"]


def transfer_holds(acc: dict, ues: list, archs: list) -> bool:
    """Table 3: MI-UE is the strongest UE on at least half of the victim architectures (``RULES['transfer']``)."""
    return bool(archs) and len(transfer_wins(acc, ues, archs)) >= len(archs) / 2


def lowest_ue(acc: dict) -> tuple[str, bool] | None:
    """C3 on ``acc`` (method → victim accuracy, %): (the UE of :data:`TABLE2_UES` with the lowest accuracy,
    whether it is MI-UE in the paper's or the code's settings), or None when EM, AP or MI-UE is missing (the
    claim is then not tested). One rule for the Claims page and every chapter that states C3."""
    ues = [u for u in TABLE2_UES if u in acc]
    if not {"em", "ap", "miue"} <= set(ues):
        return None
    low = min(ues, key=acc.get)
    return low, low in ("miue", "miue-code")


def _over(seeds) -> str:
    return f"mean over {len(seeds)} seeds" if len(seeds) > 1 else f"seed {seeds[0]}"


def _get(store: RunStore, spec):
    return store.get(spec.kind, spec.config())


def _mean(values):
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else float("nan")


def claims_table(p: Profile, store: RunStore | None = None) -> pd.DataFrame:
    """One row per claim: claim, source, paper, ours, verdict, rule, chapter."""
    store = store or RunStore()
    rows = []

    from .chapters import PAGES

    def add(claim, source, paper, ours, verdict, rule, chapter):
        chapter = chapter if chapter in PAGES else ""  # only pages the book has (drafts are not linked)
        rows.append({"claim": claim, "source": source, "paper": paper, f"ours ({p.name})": ours,
                     "verdict": verdict, "rule": RULES[rule], "chapter": chapter})

    methods = ["clean", "random", *TABLE2_UES]
    # the seeds at which the core methods are all recorded (a large profile may run seed 0 first), else all
    seeds = [s for s in p.seeds if all(_get(store, ex.victim_spec(p, m, s)) and _get(store, ex.mi_spec(p, m, s))
                                       for m in ("clean", "em", "ap", "miue"))] or list(p.seeds)
    acc, mi, excess = {}, {}, {}
    for m in methods:
        v = [_get(store, ex.victim_spec(p, m, s)) for s in seeds]
        i = [_get(store, ex.mi_spec(p, m, s)) for s in seeds]
        if all(v) and all(i):
            acc[m] = _mean([100 * r["metrics"]["test_acc"] for r in v])
            mi[m] = _mean([r["metrics"]["mi"] for r in i])
            excess[m] = _mean([r["metrics"]["mi"] - r["metrics"]["mi_shuffled"] for r in i])
    have = "clean" in acc and all(u in acc for u in ("em", "ap", "miue"))
    ues = [u for u in TABLE2_UES if u in acc]
    if have:
        effective = [u for u in ues if acc["clean"] - acc[u] >= 10]
        below = sum(mi[u] < mi["clean"] for u in effective)
        add("Effective UEs reduce the MI between clean and poisoned features", "MI-UE Sec. 4, Table 1",
            "every UE below clean (0.7122)",
            f"{len(effective)} effective UEs; below clean with the paper's estimator: {below}/{len(effective)}; "
            f"with the excess over shuffled: {sum(excess[u] < excess['clean'] for u in effective)}/{len(effective)}"
            f" ({_over(seeds)})",
            "not tested here" if not effective else "holds" if below == len(effective) else "fails", "reduce",
            "03_effective_ues_reduce_mi")
        others = [m for m in ("random", *ues) if m in acc]
        gaps = [acc["clean"] - acc[m] for m in others]
        rho = spearman(gaps, [mi["clean"] - mi[m] for m in others])
        rho_x = spearman(gaps, [excess["clean"] - excess[m] for m in others])
        add("The MI gap tracks the accuracy gap", "MI-UE Sec. 4 (Table 1)", "Spearman 0.7818",
            f"Spearman {rho:.2f} (paper's estimator), {rho_x:.2f} (excess over shuffled); n = {len(others)} "
            f"({_over(seeds)})",
            "not tested here" if rho != rho else "holds" if rho >= 0.5 else "fails", "tracks",
            "03_effective_ues_reduce_mi")
        # C3 ranks Table 2's UEs by their victims alone (no MI record needed), at the same seeds
        for u in TABLE2_UES:
            v = [_get(store, ex.victim_spec(p, u, s)) for s in seeds]
            if u not in acc and all(v):
                acc[u] = _mean([100 * r["metrics"]["test_acc"] for r in v])
        low, ok = lowest_ue(acc)
        add("MI-UE gives the lowest test accuracy of all UEs", "MI-UE Table 2", "9.95% (CIFAR-10, ResNet-18)",
            "; ".join(f"{ex.ATTACKS[u].label} {acc[u]:.1f}%" for u in TABLE2_UES if u in acc)
            + f" ({_over(seeds)})", "holds" if ok else "fails", "lowest", "01_at_a_glance")
    else:
        for claim, src, paper, rule, ch in [
                ("Effective UEs reduce the MI between clean and poisoned features", "MI-UE Sec. 4, Table 1",
                 "every UE below clean (0.7122)", "reduce", "03_effective_ues_reduce_mi"),
                ("The MI gap tracks the accuracy gap", "MI-UE Sec. 4 (Table 1)", "Spearman 0.7818", "tracks",
                 "03_effective_ues_reduce_mi"),
                ("MI-UE gives the lowest test accuracy of all UEs", "MI-UE Table 2", "9.95% (CIFAR-10, ResNet-18)",
                 "lowest", "01_at_a_glance")]:
            add(claim, src, paper, "not run at this profile", "not tested here", rule, ch)

    # depth (chapter 04): Spearman(depth, MI gap) per UE over the profile's architectures, seed 0
    from .models import DEPTH as _DEPTH
    archs = [a for a in p.archs if a in _DEPTH]
    seed = p.seeds[0]
    per = {}
    for u in ("em", "ap", "miue"):
        d, g = [], []
        for a in archs:
            rc, ru = _get(store, ex.mi_spec(p, "clean", seed, arch=a)), _get(store, ex.mi_spec(p, u, seed, arch=a))
            if rc and ru:
                d.append(_DEPTH[a])
                g.append(rc["metrics"]["mi"] - ru["metrics"]["mi"])
        if len(d) >= 3:
            per[u] = spearman(d, g)
    if per:
        avg = float(np.mean(list(per.values())))
        add("Deeper networks give larger MI gaps", "MI-UE Sec. 4, Fig. 2, Tables 13-15", "gap grows with depth",
            ", ".join(f"{ex.ATTACKS[u].label} {r:+.2f}" for u, r in per.items()) + f" over {len(archs)} "
            f"architectures (seed {seed}); mean {avg:+.2f}", "holds" if avg > 0 else "fails", "depth",
            "04_deeper_networks_lower_mi")
    else:
        add("Deeper networks give larger MI gaps", "MI-UE Sec. 4, Fig. 2, Tables 13-15", "gap grows with depth",
            "not run at this profile", "not tested here", "depth", "04_deeper_networks_lower_mi")

    cov = {}
    for m in ("clean", *UES):
        recs = [_get(store, ex.covariance_spec(p, m, s)) for s in p.seeds]
        if all(recs):
            cov[m] = _mean([r["metrics"]["poisoned"]["half_logdet"] for r in recs])
    if "clean" in cov and {"em", "ap", "miue"} <= set(cov):
        ues_c = [u for u in UES if u in cov]
        ok = all(cov[u] < cov["clean"] for u in ues_c) and min(ues_c, key=cov.get) in ("miue", "miue-code")
        add("UEs shrink the intra-class covariance of poisoned features, MI-UE most", "MI-UE Thm. 5.1, Fig. 3",
            "all UEs below clean, MI-UE lowest",
            f"clean {cov['clean']:.1f}; " + "; ".join(f"{ex.ATTACKS[u].label} {cov[u]:.1f}" for u in ues_c)
            + f" (½E log det Σ_Y, {_over(p.seeds)})", "holds" if ok else "fails", "covariance",
            "03_effective_ues_reduce_mi")
    else:
        add("UEs shrink the intra-class covariance of poisoned features, MI-UE most", "MI-UE Thm. 5.1, Fig. 3",
            "all UEs below clean, MI-UE lowest", "not run at this profile", "not tested here", "covariance",
            "03_effective_ues_reduce_mi")

    sep = {u: _get(store, ex.separability_spec(p, u, "noise")) for u in UES}
    sep = {u: 100 * r["metrics"]["train_acc"] for u, r in sep.items() if r}
    if have and len(sep) >= 3:
        us = [u for u in sep if u in acc]
        rho = spearman([acc["clean"] - acc[u] for u in us], [sep[u] for u in us])
        add("Linear separability of the noises correlates only weakly with effectiveness", "MI-UE App. G.5, Table 21",
            "Spearman 0.0333 (noises), 0.2833 (poisoned data)", f"Spearman {rho:.2f} (noises), n = {len(us)}",
            "holds" if abs(rho) < 0.5 else "fails", "separability", "03_effective_ues_reduce_mi")
    else:
        add("Linear separability of the noises correlates only weakly with effectiveness", "MI-UE App. G.5, Table 21",
            "Spearman 0.0333 (noises), 0.2833 (poisoned data)", "not run at this profile", "not tested here",
            "separability", "03_effective_ues_reduce_mi")

    from . import sal
    sal_recs = {m: store.get("sal", sal.sal_config(p, m, seed)) for m in ("clean", "ap")}
    if all(sal_recs.values()):
        tab = sal.ud_table({"ap": sal_recs["ap"]}, sal_recs["clean"])
        ud = float(tab.loc["ap", "ud"])
        add("Targeted adversarial poisoning (TAP) has an unlearnable distance above 1", "SAL/UD Table 1",
            "UD > 1 for TAP", f"AP: UD {ud:.3f} (seed {seed})", "holds" if ud > 1 else "fails", "ud",
            "05_sharpness_aware_learnability")
    else:
        add("Targeted adversarial poisoning (TAP) has an unlearnable distance above 1", "SAL/UD Table 1",
            "UD > 1 for TAP", "not run at this profile", "not tested here", "ud", "05_sharpness_aware_learnability")

    from .chapters import at_defense, at_lists
    from .methods import label
    at_claim = ("MI-UE is the strongest UE under adversarial training at 6/255 and 8/255", "MI-UE Table 4",
                "lowest accuracy under AT-6 and AT-8 (45.55%, 70.56%)")
    at_ues = [m for m in at_lists(p)["methods"] if m != "clean"]
    at_acc = {(m, b): _get(store, ex.victim_spec(p, m, seed, defense=at_defense(b))) for m in at_ues for b in (6, 8)}
    if "miue" in at_ues and {6, 8} <= set(at_lists(p)["budgets"]) and all(at_acc.values()):
        at_acc = {k: 100 * r["metrics"]["test_acc"] for k, r in at_acc.items()}
        best = {b: min(at_ues, key=lambda m: at_acc[(m, b)]) for b in (6, 8)}
        ours = "; ".join(f"AT-{b}: MI-UE {at_acc[('miue', b)]:.1f}%, lowest {label(best[b])} "
                         f"{at_acc[(best[b], b)]:.1f}%" for b in (6, 8)) + f" (seed {seed})"
        add(*at_claim, ours, "holds" if all(m == "miue" for m in best.values()) else "fails", "at",
            "11_adversarial_training")
    else:
        add(*at_claim, "not run at this profile", "not tested here", "at", "11_adversarial_training")
    from .chapters import DIFFUSION_DEFENSES, defense_lists
    defense_claim = ("MI-UE has the lowest worst case under the defenses: 86.18% (AVA), every other UE's higher",
                     "MI-UE Table 5", "CIFAR-10: MI-UE 86.18% (AVA), next SEM 88.55% (D-VAE), the rest above 90%")
    dl = defense_lists(p)
    d_ues = [m for m in dl["methods"] if m != "clean"]
    d_acc = {(m, d): _get(store, ex.victim_spec(p, m, seed, defense=d)) for m in d_ues for d in dl["defenses"]
             if d not in DIFFUSION_DEFENSES or m in dl["diffusion_methods"]}
    if "miue" in d_ues and all(d_acc.values()):
        d_acc = {k: 100 * r["metrics"]["test_acc"] for k, r in d_acc.items()}
        best, beaten, pairs = defenders_best(d_acc)
        if pairs:
            closest = min(pairs, key=lambda u: pairs[u][0] - pairs[u][1])
            shown = beaten or [closest]
            add(*defense_claim, f"MI-UE {best['miue'][1]:.1f}% ({label(best['miue'][0])}); "
                + ("as low or lower over the same defenses: " if beaten else "closest over the same defenses: ")
                + ", ".join(f"{label(u)} {pairs[u][0]:.1f}% against MI-UE's {pairs[u][1]:.1f}%" for u in shown)
                + f" (seed {seed})", "holds" if not beaten else "fails", "defenses", "12_augmentations_and_purifications")
        else:
            add(*defense_claim, "no other UE recorded", "not tested here", "defenses",
                "12_augmentations_and_purifications")
    else:
        add(*defense_claim, "not run at this profile", "not tested here", "defenses",
            "12_augmentations_and_purifications")

    from .chapters import TERMS, ablation_lists

    def ablation_acc(settings):
        rec = _get(store, ex.victim_spec(p, "miue", seed, **settings))
        return None if rec is None else 100 * rec["metrics"]["test_acc"]

    terms_claim = ("The similarity term of Eq. 2 matters more than the distance term", "MI-UE Table 6",
                   "CIFAR-10: full 9.95%, without similarity 51.65%, without distance 10.09%")
    t = {k: ablation_acc(TERMS[k]) for k in ("full", "no-similarity", "no-distance")}
    if all(v is not None for v in t.values()):
        ns, nd = t["no-similarity"] - t["full"], t["no-distance"] - t["full"]
        add(*terms_claim, f"full {t['full']:.1f}%; without similarity {ns:+.1f} points, without distance {nd:+.1f} "
            f"(seed {seed})", "holds" if terms_hold(t["full"], t["no-similarity"], t["no-distance"]) else "fails", "terms", "13_what_makes_miue_work")
    else:
        add(*terms_claim, "not run at this profile", "not tested here", "terms", "13_what_makes_miue_work")
    zeta_claim = ("A balancing strength ζ ≥ 10 destroys the effect", "MI-UE Table 7",
                  "CIFAR-10: ζ ≤ 1 9.95 to 10.31%, ζ = 10 and 100 45.90% and 45.47%")
    z = {v: ablation_acc({"zeta": float(v)}) for v in ablation_lists(p)["zetas"]}
    small = [a for v, a in z.items() if v <= 1 and a is not None]
    large = [a for v, a in z.items() if v >= 10 and a is not None]
    if None not in z.values() and small and large:
        add(*zeta_claim, f"ζ ≤ 1: {min(small):.1f} to {max(small):.1f}%; ζ ≥ 10: {min(large):.1f} to {max(large):.1f}% "
            f"(seed {seed})", "holds" if zeta_holds(small, large) else "fails", "zeta", "13_what_makes_miue_work")
    else:
        add(*zeta_claim, "not run at this profile", "not tested here", "zeta", "13_what_makes_miue_work")
    L = ablation_lists(p)
    e0 = ex.attack_config(p, "miue")["epochs"]
    epochs_claim = ("Fewer generation epochs weaken MI-UE", "MI-UE Table 9",
                    "CIFAR-10: 15.39% after 20 of 100 epochs, 9.95% after 100")
    short, full = ablation_acc({"epochs": int(min(L["epochs"]))}), ablation_acc({"epochs": int(e0)})
    if short is not None and full is not None and min(L["epochs"]) < e0:
        add(*epochs_claim, f"{short:.1f}% after {min(L['epochs'])} of {e0} epochs, {full:.1f}% after {e0} (seed {seed})",
            "holds" if epochs_hold(short, full) else "fails", "epochs", "13_what_makes_miue_work")
    else:
        add(*epochs_claim, "not run at this profile", "not tested here", "epochs", "13_what_makes_miue_work")
    budget_claim = ("The budget ε barely matters (4/255 to 16/255)", "MI-UE Table 10",
                    "CIFAR-10: 10.49% at 4/255, 9.97% at 16/255")
    lo, hi = min(L["budgets"]), max(L["budgets"])
    b_lo, b_hi = ablation_acc({"eps": lo / 255}), ablation_acc({"eps": hi / 255})
    if b_lo is not None and b_hi is not None and lo < hi:
        add(*budget_claim, f"{b_lo:.1f}% at {lo:g}/255, {b_hi:.1f}% at {hi:g}/255 (seed {seed})",
            "holds" if budget_holds(b_lo, b_hi) else "fails", "budget", "13_what_makes_miue_work")
    else:
        add(*budget_claim, "not run at this profile", "not tested here", "budget", "13_what_makes_miue_work")
    step_claim = ("The PGD step barely matters (0.1/255 to 0.8/255)", "MI-UE Table 22",
                  "CIFAR-10, 100 epochs: 9.93 to 10.00%")
    steps = [a for a in L["steps"] if a <= 0.8]
    s_acc = [ablation_acc({"step_size": a / 255}) for a in steps]
    if len(steps) >= 2 and None not in s_acc:
        add(*step_claim, f"{min(s_acc):.1f} to {max(s_acc):.1f}% at {e0} epochs (seed {seed})",
            "holds" if step_holds(s_acc) else "fails", "step", "13_what_makes_miue_work")
    else:
        add(*step_claim, "not run at this profile", "not tested here", "step", "13_what_makes_miue_work")
    reg_claim = ("Adding the MI term to EM and AP makes them stronger", "MI-UE Table 8",
                 "CIFAR-10: EM 24.17% → 15.62%, AP 11.21% → 10.01%")

    def victim_acc(m, **extra):
        rec = _get(store, ex.victim_spec(p, m, seed, **extra))
        return None if rec is None else 100 * rec["metrics"]["test_acc"]

    base = {m: victim_acc(m) for m in ("em", "ap")}
    reg = {(m, w): victim_acc(m, mi_weight=w) for m in ("em", "ap") for w in L["mi_weights"]}
    if set(L["regularized"]) == {"em", "ap"} and None not in base.values() and None not in reg.values():
        add(*reg_claim, "; ".join(f"{label(m)} {base[m]:.1f}% → " + ", ".join(f"{reg[(m, w)]:.1f}%" for w in L["mi_weights"])
                                  for m in base) + f" at weights {', '.join(f'{w:g}' for w in L['mi_weights'])} (seed {seed})",
            "holds" if regularizer_holds(base, reg) else "fails", "regularizer", "13_what_makes_miue_work")
    else:
        add(*reg_claim, "not run at this profile", "not tested here", "regularizer", "13_what_makes_miue_work")
    con_claim = ("A-MI-UE works against contrastive (SimCLR) victims while EM does not", "MI-UE Table 20",
                 "CIFAR-10 SimCLR victims: clean 91.71%, EM 89.54%, A-MI-UE 52.84%")
    sim = {k: victim_acc(m, contrastive={}, **extra) for m, extra, k in
           [("clean", {}, "clean"), ("em", {}, "em"), ("miue", {"augment_mode": "contrastive"}, "a")]}
    if None not in sim.values():
        add(*con_claim, f"clean {sim['clean']:.1f}%, EM {sim['em']:.1f}%, A-MI-UE {sim['a']:.1f}% (seed {seed})",
            "holds" if contrastive_holds(sim["clean"], sim["em"], sim["a"]) else "fails", "contrastive", "13_what_makes_miue_work")
    else:
        add(*con_claim, "not run at this profile", "not tested here", "contrastive", "13_what_makes_miue_work")
    from .chapters import transfer_lists, transfer_victim_spec
    transfer_claim = ("MI-UE transfers best: the lowest accuracy on every victim architecture", "MI-UE Table 3",
                      "CIFAR-10: MI-UE lowest on all 8 (9.93 to 17.82%), next GUE (12.04 to 22.08%)")
    tl = transfer_lists(p)
    t_ues = [m for m in tl["methods"] if m not in ("clean", "random")]
    t_acc = {(m, a): _get(store, transfer_victim_spec(p, m, a, seed)) for m in t_ues for a in tl["archs"]}
    if "miue" in t_ues and all(t_acc.values()):
        t_acc = {k: 100 * r["metrics"]["test_acc"] for k, r in t_acc.items()}
        wins = transfer_wins(t_acc, t_ues, tl["archs"])
        add(*transfer_claim, f"MI-UE lowest on {len(wins)} of {len(tl['archs'])} architectures"
            + (f" ({', '.join(wins)})" if wins else "") + f" among {len(t_ues)} UEs (seed {seed})",
            "holds" if transfer_holds(t_acc, t_ues, tl["archs"]) else "fails", "transfer", "14_how_transferable")
    else:
        add(*transfer_claim, "not run at this profile", "not tested here", "transfer", "14_how_transferable")
    speed_claim = ("SEM generates its noise 3.91× faster than REM", "SEM paper (CIFAR-10)", "3.91×")
    gen = {m: _get(store, ex.poison_spec(p, m)) for m in ("rem", "sem")}
    secs = {m: (r or {}).get("metrics", {}).get("generation_seconds") for m, r in gen.items()}
    if (all(gen.values()) and all(secs.values()) and
            gen["rem"]["provenance"]["hostname"] == gen["sem"]["provenance"]["hostname"]):
        ratio = secs["rem"] / secs["sem"]
        add(*speed_claim, f"{ratio:.2f}× ({secs['rem']:.0f} s against {secs['sem']:.0f} s of generation, wall time, "
            "one run each)",
            "holds" if 3.91 / 1.5 <= ratio <= 3.91 * 1.5 else "fails", "speed", "09_how_strong")
    else:
        add(*speed_claim, "not run at this profile", "not tested here", "speed", "09_how_strong")
    return pd.DataFrame(rows)


SCALE_RULES = ("reduce", "tracks", "lowest")


def claims_by_profile(profiles: dict, store: RunStore | None = None, rules=SCALE_RULES) -> pd.DataFrame:
    """The claims of ``rules`` (keys of :data:`RULES`) side by side at several profiles: one row per claim,
    one column per entry of ``profiles`` (label → :class:`Profile`), each cell "verdict: ours" as
    :func:`claims_table` computes it from the records (so the same rule decides at every size)."""
    unknown = [r for r in rules if r not in RULES]
    if unknown:
        raise ValueError(f"unknown rule {unknown[0]!r}; choose from {', '.join(RULES)}")
    store = store or RunStore()
    cols = {}
    for label, p in profiles.items():
        t = claims_table(p, store)
        t = t[t["rule"].isin([RULES[r] for r in rules])].set_index("claim")
        cols[label] = t["verdict"] + ": " + t[f"ours ({p.name})"]
    return pd.DataFrame(cols)


def defenders_best(acc: dict) -> tuple[dict, list, dict]:
    """MI-UE Table 5's worst-case claim on ``acc`` ((UE, defense) → victim accuracy, %).

    Returns ``best``: each UE's best defense from the defender's side, (defense, accuracy), over every defense it
    ran; ``pairs``: for each other UE, (its best, MI-UE's best) over the defenses both ran; and ``beaten``: the
    UEs whose best there is not above MI-UE's (the claim holds when it is empty). Comparing over common
    defenses keeps a UE that skipped the costly diffusion purifiers from looking stronger than it is."""
    ues = list(dict.fromkeys(m for m, _ in acc))
    if "miue" not in ues:
        raise ValueError("acc has no MI-UE row: the claim compares every UE with MI-UE")
    best = {u: max(((d, a) for (m, d), a in acc.items() if m == u), key=lambda da: da[1]) for u in ues}
    mine = {d for m, d in acc if m == "miue"}
    pairs = {}
    for u in ues:
        common = [d for m, d in acc if m == u and d in mine]
        if u != "miue" and common:
            pairs[u] = (max(acc[(u, d)] for d in common), max(acc[("miue", d)] for d in common))
    beaten = [u for u, (theirs, ours) in pairs.items() if theirs <= ours]
    return best, beaten, pairs


def verdict_counts(table: pd.DataFrame) -> dict:
    return {k: int(v) for k, v in table["verdict"].value_counts().items()}
