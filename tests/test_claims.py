"""The claims' verdicts: three values from intervals over seeds, one rule set for the Claims page and chapters."""

import warnings

import numpy as np
import pytest

from miue import claims
from miue import experiments as ex
from miue import stats
from miue.profiles import profile
from miue.runs import RunStore
from miue.stats import FAILS, HOLDS, INCONCLUSIVE, Measure


# --------------------------------------------------------------------------------------- the statistics

def test_the_difference_interval_is_welchs():
    from scipy.stats import ttest_ind
    a, b = [50.0, 52.5, 55.0, 51.0], [40.0, 41.0, 46.0]
    d, lo, hi = stats.difference(Measure(a), Measure(b))
    ci = ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert d == pytest.approx(np.mean(a) - np.mean(b))
    assert (lo, hi) == (pytest.approx(ci.low), pytest.approx(ci.high))


def test_a_single_seed_has_an_interval_only_with_a_borrowed_spread():
    assert np.isnan(stats.difference(Measure([50.0]), Measure([40.0, 41.0]))[1])  # one seed, no spread
    lo, hi = Measure([50.0], spread=2.0, spread_n=3).interval()
    from scipy.stats import t
    assert (hi - lo) / 2 == pytest.approx(t.ppf(0.975, 2) * 2.0)  # the spread's own degrees of freedom
    assert Measure([3.0, 3.0]).interval() == (3.0, 3.0)
    with pytest.raises(ValueError, match="at least one value"):
        Measure([])


def test_three_valued_logic():
    assert stats.above(0.1, 2.0, 0) == HOLDS and stats.above(-2, -0.1, 0) == FAILS
    assert stats.above(-0.1, 2.0, 0) == INCONCLUSIVE and stats.above(float("nan"), 1, 0) == INCONCLUSIVE
    assert stats.within(-1, 1, 5) == HOLDS and stats.within(6, 9, 5) == FAILS and stats.within(3, 7, 5) == INCONCLUSIVE
    assert stats.all_of([HOLDS, HOLDS]) == HOLDS and stats.all_of([HOLDS, INCONCLUSIVE]) == INCONCLUSIVE
    assert stats.all_of([INCONCLUSIVE, FAILS]) == FAILS and stats.all_of([]) == INCONCLUSIVE
    assert stats.any_of([FAILS, HOLDS]) == HOLDS and stats.any_of([FAILS, INCONCLUSIVE]) == INCONCLUSIVE
    assert stats.any_of([FAILS, FAILS]) == FAILS


def test_the_bootstrap_is_deterministic_and_brackets_the_statistic():
    pts = [[(float(i), 2.0 * i + e)] for i, e in enumerate([0.3, -0.2, 0.1, 0.4, -0.1, 0.2, 0.0, -0.3])]
    rho = lambda obs: stats.spearman([o[0] for o in obs], [o[1] for o in obs])  # noqa: E731
    one = stats.bootstrap_interval(rho, pts)
    assert one == stats.bootstrap_interval(rho, pts) and one[0] == pytest.approx(1.0)
    assert one[1] <= one[0] <= one[2] and one[1] > 0.5
    noisy = [[(float(i), v) for v in (i, 7 - i)] for i in range(8)]  # each point's seeds disagree
    assert stats.bootstrap_interval(rho, noisy)[1] < 0 < stats.bootstrap_interval(rho, noisy)[2]


# ------------------------------------------------------------------------------------------- the rules

def test_c3_needs_mi_ue_clearly_below_every_other_ue_of_table_2():
    tight = lambda v: Measure([v - 0.5, v, v + 0.5])  # noqa: E731
    acc = {"em": tight(50), "ap": tight(30), "miue": tight(20), "tue": tight(40)}
    assert claims.lowest(acc).verdict == HOLDS
    assert claims.lowest({**acc, "tue": tight(10)}).verdict == FAILS  # TUE is one of Table 2's UEs
    assert "TUE" in claims.lowest({**acc, "tue": tight(10)}).interval
    assert claims.lowest({**acc, "miue-code": tight(5), "tue": tight(10)}).verdict == HOLDS  # the code's settings
    assert claims.lowest({**acc, "ap": Measure([10, 25, 40])}).verdict == INCONCLUSIVE  # AP's seeds straddle
    assert claims.lowest({"em": tight(50), "ap": tight(30)}) is None  # no MI-UE: not tested
    assert claims.lowest({**acc, "random": tight(1)}).verdict == HOLDS  # Random is not a UE


def test_transfer_needs_half_the_architectures_clearly():
    t = lambda v: Measure([v - 0.5, v, v + 0.5])  # noqa: E731
    acc = {("miue", "a"): t(10), ("em", "a"): t(20), ("miue", "b"): t(30), ("em", "b"): t(25),
           ("miue", "c"): Measure([20, 40, 60]), ("em", "c"): t(41)}
    per = claims.transfer_verdicts(acc, ["em", "miue"], ["a", "b", "c"])
    assert [v for v, _ in per.values()] == [HOLDS, FAILS, INCONCLUSIVE]
    assert claims.transfer_verdict(per) == INCONCLUSIVE  # 1 clear of 3, the third could make it 2
    assert claims.transfer_verdict({k: per[k] for k in ("a", "b")}) == HOLDS  # one of two: half
    assert claims.transfer_verdict({"b": per["b"]}) == FAILS


def test_defenders_best_compares_over_common_defenses():
    acc = {("miue", "jpeg"): 40, ("miue", "ava"): 60, ("em", "jpeg"): 50, ("ap", "jpeg"): 30, ("ap", "ava"): 70}
    best, beaten, pairs = claims.defenders_best(acc)
    assert best == {"miue": ("ava", 60), "em": ("jpeg", 50), "ap": ("ava", 70)}
    assert beaten == [] and pairs == {"em": (50, 40), "ap": (70, 60)}
    assert claims.defenders_best({**acc, ("ap", "ava"): 55})[1] == ["ap"]
    with pytest.raises(ValueError, match="no MI-UE row"):
        claims.defenders_best({("em", "jpeg"): 50})


def _fake_victims(acc, spread=0.5):
    """A stand-in for ``RunStore.lookup``: ``acc(method, config) -> % or None`` for victims; an undefended victim's seeds
    1 and 2 lie ``spread`` above and below seed 0's."""
    def get(store, spec):
        c = spec.config()
        if spec.kind != "victim":
            return None
        m = c["poison"]["method"] if c["poison"] else "clean"
        a = acc(m, c)
        if a is None:
            return None
        if not c.get("defense") and not c.get("contrastive"):
            a += spread * {0: 0, 1: 1, 2: -1}[c["seed"]]
        return {"metrics": {"test_acc": a / 100}}
    return get


def test_the_defense_claim_and_a_defense_that_erases_every_poison(monkeypatch):
    row = "defenses"

    def acc(low_em=False, erase=False):
        def f(m, c):
            d = (c.get("defense") or {}).get("name")
            if d is None:
                return 30.0
            if erase:
                return 80.0
            if m == "miue":
                return 60.0 if d == "ava" else 30.0
            return (50.0 if low_em and m == "em" else 80.0) if d == "jpeg" else 30.0
        return f
    monkeypatch.setattr(RunStore, "lookup", _fake_victims(acc()))
    out = claims.verdict(row, profile("cpu"))
    assert out.verdict == HOLDS and "MI-UE 60.0% (AVA)" in out.ours
    monkeypatch.setattr(RunStore, "lookup", _fake_victims(acc(low_em=True)))
    assert claims.verdict(row, profile("cpu")).verdict == FAILS  # EM's best (50) is below MI-UE's (60)
    monkeypatch.setattr(RunStore, "lookup", _fake_victims(acc(erase=True)))
    t = claims.claims_table(profile("cpu")).set_index("key")
    assert t.loc[row, "verdict"] == INCONCLUSIVE and "clean victim's interval" in t.loc[row, "note"]


def test_the_regulariser_claim_needs_one_weight_that_strengthens_both_ues(monkeypatch):
    def acc(rule):
        def f(m, c):
            if c.get("defense") or c.get("contrastive") or m == "clean":
                return None if m != "clean" else 90.0
            return rule(m, c["poison"]["attack"].get("mi_weight", 0))
        return f
    monkeypatch.setattr(RunStore, "lookup", _fake_victims(acc(lambda m, w: 40 - 5 * (w == 10))))
    out = claims.verdict("regularizer", profile("cpu"))
    assert out.verdict == HOLDS and "EM 40.0% → 40.0%, 35.0%, 40.0%" in out.ours
    monkeypatch.setattr(RunStore, "lookup", _fake_victims(acc(lambda m, w: 40 - 5 * ((m, w) in {("em", 1), ("ap", 100)})),
                                                        spread=0.1))
    assert claims.verdict("regularizer", profile("cpu")).verdict == FAILS
    # the same 5-point drop inside a 10-point seed spread decides nothing
    monkeypatch.setattr(RunStore, "lookup", _fake_victims(acc(lambda m, w: 40 - 5 * (w == 10)), spread=10))
    assert claims.verdict("regularizer", profile("cpu")).verdict == INCONCLUSIVE


def test_the_ablation_claims_decide_each_half(monkeypatch):
    from miue.chapters import TERMS

    def acc(values):
        def f(m, c):
            if m != "miue" or c.get("defense") or c.get("contrastive"):
                return 90.0 if m == "clean" else None
            a = c["poison"]["attack"]
            for k, v in values.items():
                if all(a.get(f) == x for f, x in v.items()):
                    return k
            return 10.0
        return f
    paper7 = {10.09: {"zeta": 0.0}, 10.03: {"zeta": 0.001}, 10.08: {"zeta": 0.01}, 10.31: {"zeta": 1.0},
              45.90: {"zeta": 10.0}, 45.47: {"zeta": 100.0}}
    monkeypatch.setattr(RunStore, "lookup", _fake_victims(acc(paper7)))
    assert claims.verdict("zeta-large", profile("cpu")).verdict == HOLDS
    assert claims.verdict("zeta-small", profile("cpu")).verdict == HOLDS
    monkeypatch.setattr(RunStore, "lookup", _fake_victims(acc({**{k: v for k, v in paper7.items() if v != {"zeta": 0.01}}, 40.0: {"zeta": 0.01}})))
    assert claims.verdict("zeta-small", profile("cpu")).verdict == FAILS  # ζ = 0.01 far from the rest
    paper6 = {51.65: TERMS["no-similarity"], 10.09: TERMS["no-distance"], 9.95: TERMS["full"]}
    monkeypatch.setattr(RunStore, "lookup", _fake_victims(acc(paper6)))
    out = claims.verdict("terms", profile("cpu"))
    assert out.verdict == HOLDS and "0.1 points weaker" in out.ours
    with pytest.raises(ValueError, match="unknown claim"):
        claims.verdict("fastest", profile("cpu"))


# --------------------------------------------------------------------------------------- the records

def test_the_claims_page_gives_three_valued_verdicts_with_intervals():
    cpu = claims.claims_table(profile("cpu"))
    assert set(cpu["verdict"]) <= set(claims.VERDICTS) and INCONCLUSIVE in set(cpu["verdict"])
    assert list(cpu["key"]) == [c.key for c in claims.CLAIMS] and set(cpu["key"]) == set(claims.RULES)
    tested = cpu[cpu["verdict"] != claims.NOT_TESTED]
    assert len(tested) >= 18 and all("not run" not in o for o in tested["ours (cpu)"])
    assert all(tested["interval"].str.len() > 0)  # every verdict shows what decided it
    t = cpu.set_index("key")
    assert "TUE" in t.loc["lowest", "ours (cpu)"]  # Table 2's set, TUE included
    assert "n = 14 UEs" in t.loc["separability", "ours (cpu)"]  # every UE with a separability record
    assert "points stronger" in t.loc["terms", "ours (cpu)"]  # C5: removing the distance term helps MI-UE
    assert "wall time on cpu" in t.loc["speed", "ours (cpu)"] and "torch threads 2" in t.loc["speed", "ours (cpu)"]
    smoke = claims.claims_table(profile("smoke"))  # no smoke records are committed: nothing is claimed
    assert set(smoke["verdict"]) == {claims.NOT_TESTED}
    full = claims.claims_table(profile("full")).set_index("key")  # seed 0 of its three is recorded
    assert "(seed 0)" in full.loc["lowest", "ours (full)"] and "cpu profile" in full.loc["lowest", "note"]


def test_claims_by_profile_puts_each_profiles_verdicts_side_by_side():
    t = claims.claims_by_profile({"4,000": profile("cpu"), "smoke": profile("smoke")})
    assert list(t.columns) == ["4,000", "smoke"] and len(t) == len(claims.SCALE_RULES)
    assert all(v.split(":")[0] in (HOLDS, FAILS, INCONCLUSIVE) for v in t["4,000"])
    assert all(v.startswith(claims.NOT_TESTED) for v in t["smoke"])
    low = t.loc["MI-UE gives the lowest test accuracy of all UEs", "4,000"]
    assert "MI-UE" in low and "AP" in low and "[" in low  # the numbers and the interval the verdict rests on
    with pytest.raises(ValueError, match="unknown rule"):
        claims.claims_by_profile({"x": profile("cpu")}, rules=("lowest", "fastest"))


def test_the_claims_page_says_not_tested_where_no_ue_is_effective_or_the_ranks_are_undefined(tmp_path):
    p = profile("smoke")
    store = RunStore(tmp_path / "runs", tmp_path / "cache")
    for m, acc in {"clean": 90.0, "em": 85.0, "ap": 88.0, "miue": 86.0}.items():
        v, i = ex.victim_spec(p, m, p.seeds[0]), ex.mi_spec(p, m, p.seeds[0])
        store.get_or_compute(v.kind, v.config(), lambda ctx, a=acc: {"metrics": {"test_acc": a / 100}}, device="cpu")
        store.get_or_compute(i.kind, i.config(), lambda ctx: {"metrics": {"mi": 0.4, "mi_shuffled": 0.3}},
                             device="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy: the rank correlation of a constant input is undefined
        table = claims.claims_table(p, store).set_index("key")
    assert table.loc["reduce", "verdict"] == claims.NOT_TESTED
    assert table.loc["reduce", "ours (smoke)"].startswith("0 effective UEs")
    assert table.loc["tracks", "verdict"] == claims.NOT_TESTED and "undefined" in table.loc["tracks", "ours (smoke)"]
    c3 = table.loc["lowest"]  # one seed, and no other profile of the dataset with this store's spreads
    assert c3["verdict"] == INCONCLUSIVE and "EM 85.0%" in c3["ours (smoke)"] and "no interval" in c3["interval"]
    empty = claims.claims_table(p, RunStore(tmp_path / "none", tmp_path / "cache")).set_index("key")
    assert empty.loc["tracks", "ours (smoke)"] == "not run at this profile"


def test_one_tolerance_per_method_covers_its_seed_spread_and_a_change_of_threads():
    """Chapter 5's re-runs (+6.2 points for AP, -5.1 for MI-UE) are one config trained at 1 and at 2 threads;
    at equal threads and one commit a SAL/UD run and a victim run agree exactly."""
    from miue import audit
    t = audit.method_tolerances(profile("cpu"))
    assert (t["tolerance"] >= 2 * t["seed std"] - 1e-9).all() and (t["seeds"] == 3).all()
    assert t.loc["ap", "1 vs 2 threads: largest difference"] == pytest.approx(6.2, abs=0.05)
    assert t.loc["miue", "1 vs 2 threads: largest difference"] == pytest.approx(5.09, abs=0.05)
    assert (t["tolerance"] >= t["1 vs 2 threads: largest difference"].fillna(0)).all()
    pairs = audit.retrained_pairs()
    same = [q for q in pairs if q["threads (SAL run)"] == q["threads (victim)"]]
    assert sum(q["acc (SAL run)"] == q["acc (victim)"] for q in same) >= 10


def test_a_one_seed_setting_reads_every_seed_the_verdict_seeds_study_records(tmp_path):
    from miue.chapters import at_defense, chapter_specs
    p = profile("cpu")
    study = chapter_specs("verdict_seeds", p)
    victims = [s for s in study if s.kind == "victim" and s.defense is not None and s.defense_dict["name"] == "at"]
    assert victims and all(s.seed in p.seeds[1:] for s in victims)
    assert ex.victim_spec(p, "miue", 1, defense=at_defense(8)).address in {s.address for s in study}
    store = RunStore(tmp_path / "runs", tmp_path / "cache")
    for s, a in ((0, 50.0), (1, 54.0), (2, 52.0)):
        v = ex.victim_spec(p, "miue", s, defense=at_defense(8))
        store.get_or_compute(v.kind, v.config(), lambda ctx, a=a: {"metrics": {"test_acc": a / 100}}, device="cpu")
    ctx = claims.Context(p, store)
    m = ctx.one(lambda s: ex.victim_spec(p, "miue", s, defense=at_defense(8)), "miue")
    assert m.values == (50.0, 54.0, 52.0) and ctx.used_text() == "3 seeds each"
    assert ctx.one(lambda s: ex.victim_spec(p, "em", s, defense=at_defense(8)), "em") is None  # seed 0 missing


def test_rem_and_sem_lose_their_effect_above_half_their_budget(monkeypatch):
    """The at-robust rule: each robust UE's victim rises by more than 5 points from the largest AT budget at or
    below 4/255 to the smallest above it, and neither is erased (within 3 points of clean) at or below 4/255."""
    def acc(rise=25.0, erased_at=None):
        def f(m, c):
            d = c.get("defense")
            if d is None or d.get("name") != "at":
                return 30.0 if m != "clean" else 80.0
            b = round(d["eps"] * 255)
            if m == "clean":
                return 80.0
            if b == erased_at and m == "rem":
                return 79.0
            return 40.0 + (rise if b > 4 else 0.0)
        return f
    monkeypatch.setattr(RunStore, "lookup", _fake_victims(acc()))
    out = claims.verdict("at-robust", profile("cpu"))
    assert out.verdict == HOLDS and "REM 40.0% at AT-4, 65.0% at AT-6" in out.ours
    monkeypatch.setattr(RunStore, "lookup", _fake_victims(acc(rise=1.0)))
    assert claims.verdict("at-robust", profile("cpu")).verdict == FAILS  # no rise above 4/255
    monkeypatch.setattr(RunStore, "lookup", _fake_victims(acc(erased_at=2)))
    out = claims.verdict("at-robust", profile("cpu"))
    assert out.verdict == FAILS and "AT-2: clean − REM" in out.interval  # erased below half the budget
    assert claims.verdict("at-robust", profile("smoke")).verdict == claims.NOT_TESTED  # smoke runs neither
