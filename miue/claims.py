"""The papers' claims, each with the paper's number, ours from the committed records, and a verdict.

Every claim is one small function in :data:`CLAIMS` (registered with :func:`claim`), and its rule is stated
once in :data:`RULES`; the Claims page (:func:`claims_table`) and every chapter that states a claim
(:func:`verdict`) call the same function. A verdict has three values (:mod:`miue.stats`): it **holds** or
**fails** only where the 95% interval of the quantity its rule compares lies clear of the rule's threshold,
and is **inconclusive** where the interval crosses it. Intervals are over victim seeds (Welch's t); a value
measured at one seed borrows the seed spread of the same method's undefended victims at the profile, and a
rank correlation is bootstrapped over its points and their seeds. Nothing here computes a run: a claim whose
records are missing is "not tested here".
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pandas as pd

from . import experiments as ex
from .profiles import Profile
from .runs import RunStore
from .stats import (FAILS, HOLDS, INCONCLUSIVE, Measure, above, all_of, any_of, bootstrap_interval, difference,
                    spearman, within)

NOT_TESTED = "not tested here"
VERDICTS = (HOLDS, FAILS, INCONCLUSIVE, NOT_TESTED)
MIUE = ("miue", "miue-code")
# MI-UE Table 1's UEs that the book implements (C1 and C2 use every one recorded), and Table 2's (C3)
TABLE1_UES = ("em", "ap", "ar", "gue", "ntga", "rem", "sem", "tue", "miue", "miue-code")
TABLE2_UES = ("em", "ap", "ntga", "rem", "sem", "tue", "miue", "miue-code")
UES = ("em", "ap", "miue", "miue-code")  # the covariance study's (chapter 3, Fig. 3)
ONE_SEED = ("one seed each; the interval borrows each method's seed spread over its undefended victims")

RULES = {
    "reduce": "holds if every UE of MI-UE Table 1 recorded whose mean accuracy gap is at least 10 points has an "
              "MI with the paper's estimator clearly below clean's (interval of clean − UE above 0)",
    "reduce-excess": "the same with the bias-corrected MI: the excess over the shuffled baseline",
    "tracks": "holds if Spearman(accuracy gap, MI gap) over Random and Table 1's UEs is at least 0.5 with the "
              "paper's estimator (bootstrap over the methods and their seeds)",
    "tracks-excess": "the same with the excess over the shuffled baseline",
    "tracks-ksg": "the same with KSG's excess over its shuffled baseline (seed 0: bootstrap over the methods)",
    "lowest": "holds if MI-UE (paper or code settings) is clearly below every other UE of MI-UE Table 2 recorded "
              "(EM, AP, NTGA, REM, SEM, TUE; at least EM and AP)",
    "depth": "holds if Spearman(depth, MI gap), averaged over EM, AP and MI-UE, is clearly positive (bootstrap "
             "over the architectures)",
    "covariance": "holds if every UE's ½E log det Σ_Y of poisoned features is clearly below clean's and MI-UE's "
                  "clearly the lowest",
    "separability": "holds if |Spearman(accuracy gap, linear accuracy on the noises)| over every UE with a "
                    "separability record is clearly below 0.5 (bootstrap over the UEs)",
    "ud": "holds if AP (the SAL/UD paper's TAP) has UD clearly above 1 (interval over seeds; one seed decides "
          "nothing: the SAL/UD measurement has no spread to borrow)",
    "at": "holds if MI-UE's victim is clearly the lowest of the adversarial-training chapter's UEs under both "
          "AT-6 and AT-8 (" + ONE_SEED + ")",
    "at-robust": "holds if REM's and SEM's victims each lie more than 5 points higher at the smallest AT budget "
                 "above 4/255 than at the largest at or below it, and neither is erased at or below 4/255 (its "
                 "victim clearly more than 3 points below the clean victim under the same AT) (" + ONE_SEED + ")",
    "defenses": "holds if MI-UE's highest accuracy over the defenses of Table 5 (the defender's best) is clearly "
                "below every other UE's over the defenses both ran; inconclusive where those best defenses erase "
                "every poison (each UE's best within the clean victim's interval under that defense) (" + ONE_SEED
                + ")",
    "terms": "holds if removing Eq. 2's similarity term raises the victim's accuracy by more than 5 points and by "
             "more than 5 points beyond removing the distance term (" + ONE_SEED + ")",
    "zeta-large": "holds if every ζ ≥ 10 gives a victim accuracy more than 10 points above every ζ ≤ 1 ("
                  + ONE_SEED + ")",
    "zeta-small": "holds if the victims at every ζ ≤ 1 lie within 5 points of each other (" + ONE_SEED + ")",
    "epochs": "holds if the shortest generation run's victim is more than 2 points above the profile's own budget's "
              "(" + ONE_SEED + ")",
    "budget": "holds if the victims at the smallest and largest ε tried are within 5 points (" + ONE_SEED + ")",
    "step": "holds if the victims at the paper's steps (0.1 to 0.8/255, the profile's number of epochs) lie within "
            "5 points of each other (" + ONE_SEED + ")",
    "regularizer": "holds if, at one of the MINE weights tried, both EM and AP with the MI regulariser leave their "
                   "victims more than 1 point below EM and AP without it (" + ONE_SEED + ")",
    "contrastive": "holds if A-MI-UE's SimCLR victim lies more than 5 points below EM's (" + ONE_SEED + ")",
    "transfer": "holds if MI-UE's victim is clearly the lowest of the transfer chapter's UEs on at least half of its "
                "victim architectures, fails if it cannot be on half (" + ONE_SEED + ")",
    "speed": "holds if SEM's generation time divided into REM's (same settings, same machine, one run each) is "
             "within a factor 1.5 of the SEM paper's 3.91 (2.6 to 5.9)",
}


# ------------------------------------------------------------------------------------------ the machinery

@dataclass(frozen=True)
class Check:
    """One comparison a rule makes: the quantity, its 95% interval and the verdict on it."""
    label: str
    estimate: float
    low: float
    high: float
    verdict: str
    margin: float = 0.0  # how far the interval clears the threshold (negative: it crosses or misses)

    def __str__(self):
        if not np.isfinite(self.low):
            return f"{self.label} {self.estimate:+.2f} (no interval)"
        return f"{self.label} {self.estimate:+.2f} [{self.low:+.2f}, {self.high:+.2f}]"


def exceeds(label: str, a: Measure, b: Measure, threshold: float = 0.0) -> Check:
    """a − b > ``threshold``, decided on Welch's interval of the difference."""
    d, lo, hi = difference(a, b)
    return Check(label, d, lo, hi, above(lo, hi, threshold), lo - threshold)


def close(label: str, a: Measure, b: Measure, bound: float) -> Check:
    """|a − b| < ``bound``, decided on the interval of the difference."""
    d, lo, hi = difference(a, b)
    return Check(label, d, lo, hi, within(lo, hi, bound), bound - max(abs(lo), abs(hi)))


def deciding(checks: list[Check], verdict: str) -> Check | None:
    """The check to show for a combined ``verdict``: among the checks with that verdict, the one nearest its
    threshold when it holds, the furthest past it when it fails, the least clear one when inconclusive."""
    if not checks:
        return None
    hit = [c for c in checks if c.verdict == verdict] or checks
    return min(hit, key=lambda c: c.margin)


@dataclass
class Outcome:
    """A claim's result at one profile: the verdict, the numbers it rests on, and the interval that decided."""
    verdict: str
    ours: str
    interval: str = ""
    note: str = ""


def untested(why: str = "not run at this profile") -> Outcome:
    return Outcome(NOT_TESTED, why)


def combined(checks: list[Check], ours: str, any_: bool = False, note: str = "") -> Outcome:
    v = (any_of if any_ else all_of)(c.verdict for c in checks)
    c = deciding(checks, v)
    return Outcome(v, ours, "" if c is None else str(c), note)


class Context:
    """The records one profile holds, read once: victims' accuracies as :class:`Measure` (in %)."""

    def __init__(self, p: Profile, store: RunStore):
        self.p, self.store, self.seed = p, store, p.seeds[0]
        core = ("clean", "em", "ap", "miue")
        # the seeds at which the core methods are all recorded (a large profile may run seed 0 first), else all
        self.seeds = [s for s in p.seeds if all(store.lookup(ex.victim_spec(p, m, s)) for m in core)] or list(p.seeds)
        self._spread: dict = {}
        self.borrowed: set = set()  # the profiles whose seed spreads were borrowed
        self.used: set = set()  # how many seeds each one-setting victim measured had

    def get(self, spec):
        return self.store.lookup(spec)

    def over(self, n: int | None = None) -> str:
        seeds = self.seeds if n is None else self.seeds[:n]
        return f"mean over {len(seeds)} seeds" if len(seeds) > 1 else f"seed {seeds[0]}"

    def acc(self, method: str) -> Measure | None:
        """The undefended victim's accuracy over :attr:`seeds` (None unless all are recorded); at one seed,
        with the method's seed spread borrowed (:meth:`spread`)."""
        recs = [self.get(ex.victim_spec(self.p, method, s)) for s in self.seeds]
        if not all(recs):
            return None
        vals = [100 * r["metrics"]["test_acc"] for r in recs]
        return Measure(vals) if len(vals) > 1 else Measure(vals, *self.spread(method))

    def spread(self, method: str) -> tuple[float | None, int]:
        """(seed std, seeds) of ``method``'s undefended victims over every profile seed recorded; where this
        profile has fewer than two, the same dataset's profile that has (the ``cpu`` one first: the spread
        the book measured for that method), else (None, seeds)."""
        if method not in self._spread:
            from .profiles import PROFILES
            siblings = sorted((q for q in PROFILES.values() if q.dataset == self.p.dataset and q.name != self.p.name),
                              key=lambda q: q.name != "cpu")
            for q in (self.p, *siblings):
                recs = [r for r in (self.get(ex.victim_spec(q, method, s)) for s in q.seeds) if r]
                vals = [100 * r["metrics"]["test_acc"] for r in recs]
                if len(vals) > 1:
                    self._spread[method] = (float(np.std(vals, ddof=1)), len(vals), q.name)
                    break
            else:
                self._spread[method] = (None, 0, self.p.name)
        sd, n, source = self._spread[method]
        if source != self.p.name:
            self.borrowed.add(source)
        return sd, n

    def one(self, make, method: str) -> Measure | None:
        """A victim setting's accuracy over every profile seed recorded (``make(seed)`` gives its spec; the first
        seed must be recorded): several seeds give their own spread, one seed borrows ``method``'s
        (:meth:`spread`)."""
        recs = [self.get(make(s)) for s in self.p.seeds]
        if recs[0] is None:
            return None
        vals = [100 * r["metrics"]["test_acc"] for r in recs if r]
        self.used.add(len(vals))
        return Measure(vals) if len(vals) > 1 else Measure(vals, *self.spread(method))

    def used_text(self) -> str:
        """The seeds the claim's one-setting victims rest on: "seed 0", "3 seeds each" or "1 to 3 seeds"."""
        if not self.used or self.used == {1}:
            return f"seed {self.seed}"
        return f"{max(self.used)} seeds each" if len(self.used) == 1 else f"{min(self.used)} to {max(self.used)} seeds"


@dataclass(frozen=True)
class Claim:
    key: str
    claim: str
    source: str
    paper: str
    chapter: str
    decide: Callable[[Context], Outcome] = field(repr=False)


CLAIMS: list[Claim] = []


def claim(key: str, text: str, source: str, paper: str, chapter: str):
    """Register ``decide(ctx) -> Outcome`` as the claim ``key`` (its rule: ``RULES[key]``)."""
    if key not in RULES:
        raise ValueError(f"claim {key!r} has no rule in RULES")

    def register(fn):
        CLAIMS.append(Claim(key, text, source, paper, chapter, fn))
        return fn
    return register


def _label(m: str) -> str:
    from .methods import label
    return label(m)


# ------------------------------------------------------------------------- MI-UE Sec. 4 and Tables 1-2

def _mi(ctx: Context, method: str, estimator: str = "histogram") -> tuple[Measure, Measure] | None:
    """(raw MI, excess over the shuffled baseline) of ``method``'s victim features over the claim seeds
    (KSG: seed 0 only)."""
    seeds = ctx.seeds if estimator == "histogram" else [ctx.seed]
    recs = [ctx.get(ex.mi_spec(ctx.p, method, s, estimator=estimator)) for s in seeds]
    if not all(recs):
        return None
    return (Measure([r["metrics"]["mi"] for r in recs]),
            Measure([r["metrics"]["mi"] - r["metrics"]["mi_shuffled"] for r in recs]))


def _table1(ctx: Context, estimator: str = "histogram") -> tuple[dict, dict] | None:
    """(accuracy, MI pair) for clean, Random and Table 1's UEs recorded with both; None without the core."""
    acc, mi = {}, {}
    for m in ("clean", "random", *TABLE1_UES):
        a, i = ctx.acc(m), _mi(ctx, m, estimator)
        if a is not None and i is not None:
            acc[m], mi[m] = a, i
    return (acc, mi) if {"clean", "em", "ap", "miue"} <= set(acc) else None


def _reduce(ctx: Context, which: int) -> Outcome:
    got = _table1(ctx)
    if got is None:
        return untested()
    acc, mi = got
    effective = [u for u in TABLE1_UES if u in acc and acc["clean"].mean - acc[u].mean >= 10]
    if not effective:
        return untested(f"0 effective UEs of {sum(u in acc for u in TABLE1_UES)} recorded")
    checks = [exceeds(f"clean − {_label(u)}", mi["clean"][which], mi[u][which]) for u in effective]
    clear = sum(c.verdict == HOLDS for c in checks)
    return combined(checks, f"{len(effective)} effective UEs; clearly below clean: {clear}/{len(effective)} "
                            f"(nats, {ctx.over()})")


@claim("reduce", "Effective UEs reduce the MI between clean and poisoned features (paper's estimator)",
       "MI-UE Sec. 4, Table 1", "every UE below clean (0.7122)", "03_effective_ues_reduce_mi")
def _c1(ctx):
    return _reduce(ctx, 0)


@claim("reduce-excess", "Effective UEs reduce the MI between clean and poisoned features (excess over shuffled)",
       "MI-UE Sec. 4, Table 1", "every UE below clean (0.7122)", "03_effective_ues_reduce_mi")
def _c1x(ctx):
    return _reduce(ctx, 1)


def _tracks(ctx: Context, which: int, estimator: str = "histogram") -> Outcome:
    got = _table1(ctx, estimator)
    if got is None:
        return untested()
    acc, mi = got
    others = [m for m in acc if m != "clean"]
    points = []
    for m in others:
        a_c, a_m = acc["clean"].values, acc[m].values
        i_c, i_m = mi["clean"][which].values, mi[m][which].values
        k = min(len(a_c), len(i_c))
        if len(i_c) == 1:  # KSG at seed 0: pair it with the accuracy gap at that seed
            points.append([(a_c[0] - a_m[0], i_c[0] - i_m[0])])
        else:
            points.append([(a_c[s] - a_m[s], i_c[s] - i_m[s]) for s in range(k)])
    rho, lo, hi = bootstrap_interval(lambda obs: spearman([o[0] for o in obs], [o[1] for o in obs]), points)
    seeds = "seed 0" if estimator != "histogram" else ctx.over()
    ours = f"Spearman {rho:.2f}, n = {len(others)} ({seeds})"
    if not np.isfinite(rho):
        return Outcome(NOT_TESTED, ours + ": undefined")
    c = Check("Spearman", rho, lo, hi, above(lo, hi, 0.5) if lo == lo else INCONCLUSIVE, lo - 0.5)
    return Outcome(c.verdict, ours, str(c))


@claim("tracks", "The MI gap tracks the accuracy gap (paper's estimator)", "MI-UE Sec. 4 (Table 1)",
       "Spearman 0.7818", "03_effective_ues_reduce_mi")
def _c2(ctx):
    return _tracks(ctx, 0)


@claim("tracks-excess", "The MI gap tracks the accuracy gap (excess over shuffled)", "MI-UE Sec. 4 (Table 1)",
       "Spearman 0.7818", "03_effective_ues_reduce_mi")
def _c2x(ctx):
    return _tracks(ctx, 1)


@claim("tracks-ksg", "The MI gap tracks the accuracy gap (KSG, excess over shuffled)", "MI-UE Sec. 4 (Table 1)",
       "Spearman 0.7818", "03_effective_ues_reduce_mi")
def _c2k(ctx):
    return _tracks(ctx, 1, "ksg")


def miue_lowest(values: dict, ues: list) -> tuple[str, list[Check]]:
    """Is MI-UE, in the paper's or the code's settings, clearly below every other of ``ues`` (``values``: method
    → :class:`Measure`)? (verdict, the checks of the setting that decides it)."""
    per = [[exceeds(f"{_label(u)} − {_label(v)}", values[u], values[v]) for u in ues if u not in MIUE]
           for v in MIUE if v in values]
    verdicts = [all_of(c.verdict for c in cs) for cs in per]
    v = any_of(verdicts)
    return v, per[verdicts.index(v)] if v in verdicts else per[0]


def lowest(acc: dict) -> Outcome | None:
    """C3 on ``acc`` (method → :class:`Measure` of victim accuracy, %): is MI-UE (either setting) clearly
    the lowest of :data:`TABLE2_UES` recorded? None when EM, AP or MI-UE is missing (not tested). One rule
    for the Claims page and every chapter that states C3."""
    ues = [u for u in TABLE2_UES if u in acc]
    if not {"em", "ap", "miue"} <= set(ues):
        return None
    v, chosen = miue_lowest(acc, ues)
    low = min(ues, key=lambda u: acc[u].mean)
    ours = "; ".join(f"{_label(u)} {acc[u].mean:.1f}%" for u in ues) + f"; lowest: {_label(low)}"
    c = deciding(chosen, all_of(x.verdict for x in chosen))
    return Outcome(v, ours, str(c))


@claim("lowest", "MI-UE gives the lowest test accuracy of all UEs", "MI-UE Table 2", "9.95% (CIFAR-10, ResNet-18)",
       "01_at_a_glance")
def _c3(ctx):
    acc = {m: a for m in TABLE2_UES if (a := ctx.acc(m)) is not None}
    out = lowest(acc)
    if out is None:
        return untested()
    out.ours += f" ({ctx.over()})"
    return out


@claim("depth", "Deeper networks give larger MI gaps", "MI-UE Sec. 4, Fig. 2, Tables 13-15", "gap grows with depth",
       "04_deeper_networks_lower_mi")
def _depth(ctx):
    from .models import DEPTH
    p, ues = ctx.p, ("em", "ap", "miue")
    archs, rows = [], []
    for a in (a for a in p.archs if a in DEPTH):
        recs = [ctx.get(ex.mi_spec(p, m, ctx.seed, arch=a)) for m in ("clean", *ues)]
        if all(recs):
            archs.append(a)
            rows.append([(DEPTH[a], *(recs[0]["metrics"]["mi"] - r["metrics"]["mi"] for r in recs[1:]))])
    if len(archs) < 3:
        return untested()

    def mean_rho(obs):
        return float(np.mean([spearman([o[0] for o in obs], [o[k] for o in obs]) for k in (1, 2, 3)]))
    rho, lo, hi = bootstrap_interval(mean_rho, rows)
    per = [spearman([r[0][0] for r in rows], [r[0][k] for r in rows]) for k in (1, 2, 3)]
    ours = (", ".join(f"{_label(u)} {r:+.2f}" for u, r in zip(ues, per))
            + f" over {len(archs)} architectures ({ctx.used_text()}); mean {rho:+.2f}")
    c = Check("mean Spearman", rho, lo, hi, above(lo, hi, 0.0), lo)
    return Outcome(c.verdict, ours, str(c))


@claim("covariance", "UEs shrink the intra-class covariance of poisoned features, MI-UE most",
       "MI-UE Thm. 5.1, Fig. 3", "all UEs below clean, MI-UE lowest", "03_effective_ues_reduce_mi")
def _covariance(ctx):
    cov = {}
    for m in ("clean", *UES):
        recs = [ctx.get(ex.covariance_spec(ctx.p, m, s)) for s in ctx.p.seeds]
        if all(recs):
            cov[m] = Measure([r["metrics"]["poisoned"]["half_logdet"] for r in recs])
    if "clean" not in cov or not {"em", "ap", "miue"} <= set(cov):
        return untested()
    ues = [u for u in UES if u in cov]
    below = [exceeds(f"clean − {_label(u)}", cov["clean"], cov[u]) for u in ues]
    low, low_checks = miue_lowest(cov, ues)
    checks = below + low_checks
    v = all_of([all_of(c.verdict for c in below), low])
    ours = (f"clean {cov['clean'].mean:.1f}; " + "; ".join(f"{_label(u)} {cov[u].mean:.1f}" for u in ues)
            + f" (½E log det Σ_Y, mean over {len(ctx.p.seeds)} seeds)")
    c = deciding(checks, v)
    return Outcome(v, ours, str(c))


@claim("separability", "Linear separability of the noises correlates only weakly with effectiveness",
       "MI-UE App. G.5, Table 21", "Spearman 0.0333 (noises), 0.2833 (poisoned data)", "03_effective_ues_reduce_mi")
def _separability(ctx):
    clean = ctx.acc("clean")
    points, names = [], []
    for u in ex.ATTACKS:
        if u == "random":
            continue
        r, a = ctx.get(ex.separability_spec(ctx.p, u, "noise")), ctx.acc(u)
        if r is not None and a is not None and clean is not None:
            names.append(u)
            sep = 100 * r["metrics"]["train_acc"]
            points.append([(c - x, sep) for c, x in zip(clean.values, a.values)])
    if len(points) < 3:
        return untested()
    rho, lo, hi = bootstrap_interval(lambda obs: spearman([o[0] for o in obs], [o[1] for o in obs]), points)
    ours = f"Spearman {rho:.2f} (noises), n = {len(points)} UEs ({ctx.over()} for the accuracies)"
    if not np.isfinite(rho):
        return Outcome(NOT_TESTED, ours + ": undefined")
    c = Check("Spearman", rho, lo, hi, within(lo, hi, 0.5), 0.5 - max(abs(lo), abs(hi)))
    return Outcome(c.verdict, ours, str(c))


@claim("ud", "Targeted adversarial poisoning (TAP) has an unlearnable distance above 1", "SAL/UD Table 1",
       "UD > 1 for TAP", "05_sharpness_aware_learnability")
def _ud(ctx):
    from . import sal
    uds, seeds = [], []
    for s in ctx.p.seeds:
        recs = {m: ctx.store.lookup(sal.sal_spec(ctx.p, m, s)) for m in ("clean", "ap")}
        if all(recs.values()):
            uds.append(float(sal.ud_table({"ap": recs["ap"]}, recs["clean"]).loc["ap", "ud"]))
            seeds.append(s)
    if not uds:
        return untested()
    m = Measure(uds)
    lo, hi = m.interval()
    ours = f"AP: UD {m.mean:.3f} (" + (f"seed {seeds[0]}; one seed: no spread measured" if len(uds) == 1
                                        else f"mean over {len(uds)} seeds") + ")"
    c = Check("UD − 1", m.mean - 1, lo - 1, hi - 1, above(lo, hi, 1.0), lo - 1)
    return Outcome(c.verdict, ours, str(c))


# ----------------------------------------------------------------------------- defenses: Tables 4 and 5

@claim("at", "MI-UE is the strongest UE under adversarial training at 6/255 and 8/255", "MI-UE Table 4",
       "lowest accuracy under AT-6 and AT-8 (45.55%, 70.56%)", "11_adversarial_training")
def _at(ctx):
    from .chapters import at_defense, at_lists
    p, lists = ctx.p, at_lists(ctx.p)
    ues = [m for m in lists["methods"] if m != "clean"]
    if "miue" not in ues or not {6, 8} <= set(lists["budgets"]):
        return untested()
    acc = {(m, b): ctx.one(lambda s: ex.victim_spec(p, m, s, defense=at_defense(b)), m) for m in ues for b in (6, 8)}
    if None in acc.values():
        return untested()
    checks = [exceeds(f"AT-{b}: {_label(u)} − MI-UE", acc[(u, b)], acc[("miue", b)]) for b in (6, 8)
              for u in ues if u != "miue"]
    low = {b: min(ues, key=lambda m: acc[(m, b)].mean) for b in (6, 8)}
    ours = "; ".join(f"AT-{b}: MI-UE {acc[('miue', b)].mean:.1f}%, lowest {_label(low[b])} "
                     f"{acc[(low[b], b)].mean:.1f}%" for b in (6, 8)) + f" ({ctx.used_text()})"
    return combined(checks, ours)


@claim("at-robust", "REM and SEM lose their effect when the AT budget ρ exceeds 4/255 (half their budget)",
       "MI-UE Sec. 6.3 (Table 4)", "effective only below half the poison budget", "11_adversarial_training")
def _at_robust(ctx):
    from .chapters import at_defense, at_lists
    p, lists = ctx.p, at_lists(ctx.p)
    robust = [m for m in ("rem", "sem") if m in lists["methods"]]
    big, small = [b for b in lists["budgets"] if b > 4], [b for b in lists["budgets"] if b <= 4]
    if not robust or not big or not small:
        return untested()
    above, at = min(big), max(small)
    acc = {(m, b): ctx.one(lambda s: ex.victim_spec(p, m, s, defense=at_defense(b)), m)
           for m in ["clean", *robust] for b in small + [above]}
    if None in acc.values():
        return untested()
    checks = [exceeds(f"{_label(m)}: AT-{above} − AT-{at}", acc[(m, above)], acc[(m, at)], 5) for m in robust]
    checks += [exceeds(f"AT-{b}: clean − {_label(m)}", acc[("clean", b)], acc[(m, b)], 3)
               for m in robust for b in small]
    ours = "; ".join(f"{_label(m)} {acc[(m, at)].mean:.1f}% at AT-{at}, {acc[(m, above)].mean:.1f}% at AT-{above}"
                     for m in robust) + f"; clean {acc[('clean', at)].mean:.1f}% at AT-{at} ({ctx.used_text()})"
    return combined(checks, ours)


def defenders_best(acc: dict) -> tuple[dict, list, dict]:
    """MI-UE Table 5's worst-case claim on ``acc`` ((UE, defense) → victim accuracy, %).

    Returns ``best``: each UE's best defense from the defender's side, (defense, accuracy), over every defense it
    ran; ``pairs``: for each other UE, (its best, MI-UE's best) over the defenses both ran; and ``beaten``: the
    UEs whose best there is not above MI-UE's. Comparing over common defenses keeps a UE that skipped the costly
    diffusion purifiers from looking stronger than it is."""
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


@claim("defenses", "MI-UE has the lowest worst case under the defenses: 86.18% (AVA), every other UE's higher",
       "MI-UE Table 5", "CIFAR-10: MI-UE 86.18% (AVA), next SEM 88.55% (D-VAE), the rest above 90%",
       "12_augmentations_and_purifications")
def _defenses(ctx):
    from .chapters import DIFFUSION_DEFENSES, defense_lists
    p, dl = ctx.p, defense_lists(ctx.p)
    ues = [m for m in dl["methods"] if m != "clean"]
    cells = {(m, d): ctx.one(lambda s: ex.victim_spec(p, m, s, defense=d), m) for m in ues for d in dl["defenses"]
             if d not in DIFFUSION_DEFENSES or m in dl["diffusion_methods"]}
    if "miue" not in ues or None in cells.values():
        return untested()
    best, _, pairs = defenders_best({k: v.mean for k, v in cells.items()})
    if not pairs:
        return untested("no other UE recorded")
    mine = {d for m, d in cells if m == "miue"}
    checks = []
    for u in pairs:
        common = [d for m, d in cells if m == u and d in mine]
        du = max(common, key=lambda d: cells[(u, d)].mean)
        dm = max(common, key=lambda d: cells[("miue", d)].mean)
        checks.append(exceeds(f"{_label(u)} ({_label(du)}) − MI-UE ({_label(dm)})", cells[(u, du)], cells[("miue", dm)]))
    ours = (f"MI-UE {best['miue'][1]:.1f}% ({_label(best['miue'][0])}); the others over the same defenses: "
            + ", ".join(f"{_label(u)} {pairs[u][0]:.1f}%" for u in pairs) + f" ({ctx.used_text()})")
    out = combined(checks, ours)
    # a defense that erases every poison leaves nothing to rank: each UE's best lies within (or above) the
    # clean victim's interval under that defense
    erased = []
    for u, (d, a) in best.items():
        c = ctx.one(lambda s: ex.victim_spec(p, "clean", s, defense=d), "clean")
        if c is not None:
            erased.append(np.isfinite(c.interval()[0]) and a >= c.interval()[0])
    if erased and len(erased) == len(best) and all(erased) and out.verdict != HOLDS:
        out.verdict, out.note = INCONCLUSIVE, "each UE's best defense brings it within the clean victim's interval"
    return out


# ------------------------------------------------------------------------ ablations: Tables 6-10, 20, 22

def _ablation(ctx: Context, **settings) -> Measure | None:
    return ctx.one(lambda s: ex.victim_spec(ctx.p, "miue", s, **settings), "miue")


@claim("terms", "The similarity term of Eq. 2 matters more than the distance term", "MI-UE Table 6",
       "CIFAR-10: full 9.95%, without similarity 51.65%, without distance 10.09%", "13_what_makes_miue_work")
def _terms(ctx):
    from .chapters import TERMS
    t = {k: _ablation(ctx, **TERMS[k]) for k in ("full", "no-similarity", "no-distance")}
    if None in t.values():
        return untested()
    checks = [exceeds("without similarity − full", t["no-similarity"], t["full"], 5),
              exceeds("without similarity − without distance", t["no-similarity"], t["no-distance"], 5)]
    nd = exceeds("without distance − full", t["no-distance"], t["full"])
    ns = t["no-similarity"].mean - t["full"].mean
    move = (f"{-nd.estimate:.1f} points stronger" if nd.estimate < 0 else f"{nd.estimate:.1f} points weaker")
    ours = (f"full {t['full'].mean:.1f}%; without similarity {ns:+.1f} points; removing the distance term makes "
            f"MI-UE {move} ({nd}) ({ctx.used_text()})")
    return combined(checks, ours)


def _zetas(ctx: Context):
    from .chapters import ablation_lists
    z = {v: _ablation(ctx, zeta=float(v)) for v in ablation_lists(ctx.p)["zetas"]}
    if None in z.values():
        return None
    return {v: a for v, a in z.items() if v <= 1}, {v: a for v, a in z.items() if v >= 10}


@claim("zeta-large", "A balancing strength ζ ≥ 10 destroys the effect", "MI-UE Table 7",
       "CIFAR-10: ζ ≤ 1 9.95 to 10.31%, ζ = 10 and 100 45.90% and 45.47%", "13_what_makes_miue_work")
def _zeta_large(ctx):
    got = _zetas(ctx)
    if got is None or not got[0] or not got[1]:
        return untested()
    small, large = got
    checks = [exceeds(f"ζ={l:g} − ζ={s:g}", large[l], small[s], 10) for l in large for s in small]
    ours = (f"ζ ≤ 1: {min(a.mean for a in small.values()):.1f} to {max(a.mean for a in small.values()):.1f}%; "
            f"ζ ≥ 10: {min(a.mean for a in large.values()):.1f} to {max(a.mean for a in large.values()):.1f}% "
            f"({ctx.used_text()})")
    return combined(checks, ours)


@claim("zeta-small", "A balancing strength ζ ≤ 1 changes little", "MI-UE Table 7", "CIFAR-10: 9.95 to 10.31%",
       "13_what_makes_miue_work")
def _zeta_small(ctx):
    got = _zetas(ctx)
    if got is None or len(got[0]) < 2:
        return untested()
    small = got[0]
    checks = [close(f"ζ={a:g} − ζ={b:g}", small[a], small[b], 5) for a, b in itertools.combinations(small, 2)]
    return combined(checks, f"ζ ≤ 1: {min(a.mean for a in small.values()):.1f} to "
                            f"{max(a.mean for a in small.values()):.1f}% ({ctx.used_text()})")


@claim("epochs", "Fewer generation epochs weaken MI-UE", "MI-UE Table 9",
       "CIFAR-10: 15.39% after 20 of 100 epochs, 9.95% after 100", "13_what_makes_miue_work")
def _epochs(ctx):
    from .chapters import ablation_lists
    e0, short_e = ex.attack_config(ctx.p, "miue")["epochs"], int(min(ablation_lists(ctx.p)["epochs"]))
    short, full = _ablation(ctx, epochs=short_e), _ablation(ctx, epochs=int(e0))
    if short is None or full is None or short_e >= e0:
        return untested()
    return combined([exceeds("shortest − default", short, full, 2)],
                    f"{short.mean:.1f}% after {short_e} of {e0} epochs, {full.mean:.1f}% after {e0} ({ctx.used_text()})")


@claim("budget", "The budget ε barely matters (4/255 to 16/255)", "MI-UE Table 10",
       "CIFAR-10: 10.49% at 4/255, 9.97% at 16/255", "13_what_makes_miue_work")
def _budget(ctx):
    from .chapters import ablation_lists
    b = ablation_lists(ctx.p)["budgets"]
    lo, hi = min(b), max(b)
    a, z = _ablation(ctx, eps=lo / 255), _ablation(ctx, eps=hi / 255)
    if a is None or z is None or lo >= hi:
        return untested()
    return combined([close(f"{lo:g}/255 − {hi:g}/255", a, z, 5)],
                    f"{a.mean:.1f}% at {lo:g}/255, {z.mean:.1f}% at {hi:g}/255 ({ctx.used_text()})")


@claim("step", "The PGD step barely matters (0.1/255 to 0.8/255)", "MI-UE Table 22", "CIFAR-10, 100 epochs: 9.93 to 10.00%",
       "13_what_makes_miue_work")
def _step(ctx):
    from .chapters import ablation_lists
    steps = [a for a in ablation_lists(ctx.p)["steps"] if a <= 0.8]
    acc = {a: _ablation(ctx, step_size=a / 255) for a in steps}
    if len(steps) < 2 or None in acc.values():
        return untested()
    checks = [close(f"{a:g}/255 − {b:g}/255", acc[a], acc[b], 5) for a, b in itertools.combinations(steps, 2)]
    e0 = ex.attack_config(ctx.p, "miue")["epochs"]
    return combined(checks, f"{min(a.mean for a in acc.values()):.1f} to {max(a.mean for a in acc.values()):.1f}% "
                            f"at {e0} epochs ({ctx.used_text()})")


@claim("regularizer", "Adding the MI term to EM and AP makes them stronger", "MI-UE Table 8",
       "CIFAR-10: EM 24.17% → 15.62%, AP 11.21% → 10.01%", "13_what_makes_miue_work")
def _regularizer(ctx):
    from .chapters import ablation_lists
    L, p = ablation_lists(ctx.p), ctx.p
    if set(L["regularized"]) != {"em", "ap"}:
        return untested()
    base = {m: ctx.one(lambda s: ex.victim_spec(p, m, s), m) for m in ("em", "ap")}
    reg = {(m, w): ctx.one(lambda s: ex.victim_spec(p, m, s, mi_weight=w), m) for m in base for w in L["mi_weights"]}
    if None in base.values() or None in reg.values():
        return untested()
    per = [[exceeds(f"weight {w:g}: {_label(m)} − regularised", base[m], reg[(m, w)], 1) for m in base]
           for w in L["mi_weights"]]
    verdicts = [all_of(c.verdict for c in cs) for cs in per]
    v = any_of(verdicts)
    chosen = per[verdicts.index(v)] if v in verdicts else min(per, key=lambda cs: -min(c.margin for c in cs))
    ours = ("; ".join(f"{_label(m)} {base[m].mean:.1f}% → " + ", ".join(f"{reg[(m, w)].mean:.1f}%" for w in L["mi_weights"])
                      for m in base) + f" at weights {', '.join(f'{w:g}' for w in L['mi_weights'])} ({ctx.used_text()})")
    c = deciding(chosen, all_of(x.verdict for x in chosen))
    return Outcome(v, ours, str(c))


@claim("contrastive", "A-MI-UE works against contrastive (SimCLR) victims while EM does not", "MI-UE Table 20",
       "CIFAR-10 SimCLR victims: clean 91.71%, EM 89.54%, A-MI-UE 52.84%", "13_what_makes_miue_work")
def _contrastive(ctx):
    p = ctx.p
    sim = {k: ctx.one(lambda s: ex.victim_spec(p, m, s, contrastive={}, **extra), m) for m, extra, k in
           [("clean", {}, "clean"), ("em", {}, "em"), ("miue", {"augment_mode": "contrastive"}, "a")]}
    if None in sim.values():
        return untested()
    return combined([exceeds("EM − A-MI-UE", sim["em"], sim["a"], 5)],
                    f"clean {sim['clean'].mean:.1f}%, EM {sim['em'].mean:.1f}%, A-MI-UE {sim['a'].mean:.1f}% "
                    f"({ctx.used_text()})")


# ----------------------------------------------------------------------------------- transfer, speed

def transfer_verdicts(acc: dict, ues: list, archs: list) -> dict:
    """Table 3, per architecture: is MI-UE's victim clearly the lowest of ``ues`` there (``acc``: (UE, arch) →
    :class:`Measure`)? Architecture → (verdict, deciding check)."""
    out = {}
    for a in archs:
        checks = [exceeds(f"{a}: {_label(u)} − MI-UE", acc[(u, a)], acc[("miue", a)]) for u in ues if u != "miue"]
        v = all_of(c.verdict for c in checks)
        out[a] = (v, deciding(checks, v))
    return out


def transfer_verdict(per_arch: dict) -> str:
    """Holds if MI-UE is clearly lowest on at least half of the architectures, fails if it cannot be."""
    n = len(per_arch)
    wins = sum(v == HOLDS for v, _ in per_arch.values())
    maybe = sum(v == INCONCLUSIVE for v, _ in per_arch.values())
    return HOLDS if n and wins >= n / 2 else FAILS if wins + maybe < n / 2 else INCONCLUSIVE


@claim("transfer", "MI-UE transfers best: the lowest accuracy on every victim architecture", "MI-UE Table 3",
       "CIFAR-10: MI-UE lowest on all 8 (9.93 to 17.82%), next GUE (12.04 to 22.08%)", "14_how_transferable")
def _transfer(ctx):
    from .chapters import transfer_lists, transfer_victim_spec
    tl, p = transfer_lists(ctx.p), ctx.p
    ues = [m for m in tl["methods"] if m not in ("clean", "random")]
    acc = {(m, a): ctx.one(lambda s: transfer_victim_spec(p, m, a, s), m) for m in ues for a in tl["archs"]}
    if "miue" not in ues or None in acc.values():
        return untested()
    per = transfer_verdicts(acc, ues, tl["archs"])
    v = transfer_verdict(per)
    wins = [a for a, (x, _) in per.items() if x == HOLDS]
    maybe = [a for a, (x, _) in per.items() if x == INCONCLUSIVE]
    ours = (f"MI-UE clearly lowest on {len(wins)} of {len(tl['archs'])} architectures"
            + (f" ({', '.join(wins)})" if wins else "") + (f", within the noise on {', '.join(maybe)}" if maybe else "")
            + f" among {len(ues)} UEs ({ctx.used_text()})")
    decide = [c for x, c in per.values() if x == v] or [c for _, c in per.values()]
    return Outcome(v, ours, str(decide[0]) if decide and decide[0] else "")


@claim("speed", "SEM generates its noise 3.91× faster than REM", "SEM paper (CIFAR-10)", "3.91×", "09_how_strong")
def _speed(ctx):
    gen = {m: ctx.get(ex.poison_spec(ctx.p, m)) for m in ("rem", "sem")}
    secs = {m: (r or {}).get("metrics", {}).get("generation_seconds") for m, r in gen.items()}
    if not (all(gen.values()) and all(secs.values())):
        return untested()
    prov = {m: r["provenance"] for m, r in gen.items()}
    if prov["rem"].get("hostname") != prov["sem"].get("hostname"):
        return untested("REM and SEM were timed on different machines: a ratio across devices is not a result")
    device = prov["rem"].get("device", "cpu") + (f" ({prov['rem']['device_name']})" if prov["rem"].get("device_name")
                                                  else "")
    ratio = secs["rem"] / secs["sem"]
    v = HOLDS if 3.91 / 1.5 <= ratio <= 3.91 * 1.5 else FAILS
    return Outcome(v, f"{ratio:.2f}× ({secs['rem']:.0f} s against {secs['sem']:.0f} s of generation, wall time on "
                      f"{device}, torch threads {prov['rem'].get('torch_threads', '?')}, one run each)",
                   f"ratio {ratio:.2f} against the band [2.61, 5.87]")


# ------------------------------------------------------------------------------------------- tables

PAIRS = (("reduce", "reduce-excess"), ("tracks", "tracks-excess", "tracks-ksg"))


def verdict(key: str, p: Profile, store: RunStore | None = None) -> Outcome:
    """The claim ``key`` (a key of :data:`RULES`) decided on profile ``p``'s records: what a chapter states."""
    for c in CLAIMS:
        if c.key == key:
            return c.decide(Context(p, store or RunStore()))
    raise ValueError(f"unknown claim {key!r}; choose from {', '.join(RULES)}")


def claims_table(p: Profile, store: RunStore | None = None) -> pd.DataFrame:
    """One row per claim: key, claim, source, paper, ours, interval, verdict, note, rule, chapter."""
    from .chapters import PAGES
    ctx = Context(p, store or RunStore())
    rows = []
    for c in CLAIMS:
        ctx.borrowed.clear()
        ctx.used.clear()
        out = c.decide(ctx)
        if ctx.borrowed and out.verdict != NOT_TESTED:
            out.note = "; ".join(filter(None, [out.note, "seed spreads borrowed from the " + ", ".join(
                sorted(ctx.borrowed)) + " profile"]))
        if out.verdict not in VERDICTS:
            raise AssertionError(f"claim {c.key} returned verdict {out.verdict!r}")
        rows.append({"key": c.key, "claim": c.claim, "source": c.source, "paper": c.paper, f"ours ({p.name})": out.ours,
                     "interval": out.interval, "verdict": out.verdict, "note": out.note, "rule": RULES[c.key],
                     "chapter": c.chapter if c.chapter in PAGES else ""})
    t = pd.DataFrame(rows)
    for group in PAIRS:  # one claim decided with several estimators: say where they disagree
        sub = t[t["key"].isin(group) & (t["verdict"] != NOT_TESTED)]
        if sub["verdict"].nunique() > 1:
            t.loc[sub.index, "note"] = ("the estimators disagree: " + ", ".join(
                f"{k} {v}" for k, v in zip(sub["key"], sub["verdict"])))
    return t


SCALE_RULES = ("reduce", "reduce-excess", "tracks", "tracks-excess", "lowest")


def claims_by_profile(profiles: dict, store: RunStore | None = None, rules=SCALE_RULES) -> pd.DataFrame:
    """The claims of ``rules`` (keys of :data:`RULES`) side by side at several profiles: one row per claim,
    one column per entry of ``profiles`` (label → :class:`Profile`), each cell "verdict: ours [interval]" as
    :func:`claims_table` computes it from the records (so the same rule decides at every size)."""
    unknown = [r for r in rules if r not in RULES]
    if unknown:
        raise ValueError(f"unknown rule {unknown[0]!r}; choose from {', '.join(RULES)}")
    store = store or RunStore()
    cols = {}
    for label, p in profiles.items():
        t = claims_table(p, store)
        t = t[t["key"].isin(rules)].set_index("claim")
        cols[label] = t["verdict"] + ": " + t[f"ours ({p.name})"] + t["interval"].map(lambda s: f" [{s}]" if s else "")
    return pd.DataFrame(cols)


def verdict_counts(table: pd.DataFrame) -> dict:
    return {k: int(v) for k, v in table["verdict"].value_counts().items()}


def statement(key: str, p: Profile, store: RunStore | None = None) -> str:
    """The sentence a chapter prints for claim ``key``: the claim, the paper's number, the verdict on this
    profile's records, ours and the comparison that decided it (Markdown)."""
    c = next((c for c in CLAIMS if c.key == key), None)
    if c is None:
        raise ValueError(f"unknown claim {key!r}; choose from {', '.join(RULES)}")
    out = c.decide(Context(p, store or RunStore()))
    phrase = {HOLDS: "holds", FAILS: "does not hold", INCONCLUSIVE: "is inconclusive",
              NOT_TESTED: "is not tested"}[out.verdict]
    text = f"The paper's claim \"{c.claim}\" ({c.source}: {c.paper}) **{phrase} here**: {out.ours}"
    if out.interval:
        text += f"; the comparison that decides it, with its 95% interval: {out.interval}"
    if out.note:
        text += f" ({out.note})"
    return text + f". Rule: {RULES[key]}."
