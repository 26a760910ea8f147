"""The recomputations of ``miue.paper`` find exactly the inconsistencies documented for the papers' tables
(shared/paper/tables/INDEX.md, section 5) and reproduce the Spearman values the MI-UE text quotes."""

import pandas as pd
import pytest

from miue import paper


def problems(df: pd.DataFrame) -> pd.DataFrame:
    return df[~df["verdict"].isin(paper.OK_VERDICTS)]


def cells(df: pd.DataFrame) -> set:
    return {(r.table, r.cells) for r in df.itertuples()}


@pytest.fixture(scope="module")
def gaps():
    return paper.gap_checks()


def test_existing_loaders_unchanged():
    t1 = paper.table1()
    assert list(t1.index[:3]) == ["Clean", "Random", "EM"]
    assert t1.loc["Clean", "test_acc_pct"] == 94.45 and t1.loc["MI-UE", "mi"] == 0.4969
    assert paper.table(3, paper="SAL/UD")["v"].notna().all()
    with pytest.raises(ValueError, match="paper must be one of"):
        paper.table(1, paper="nope")


def test_every_gap_is_checked(gaps):
    per_table = gaps.groupby("table").size().to_dict()
    # T1: 10 methods x 2 gaps; T8: 5 x 2; T12: 4 defenses x 10 x 2; T13: 6 models x 4 x 2; T14: 5 x 4 x 2; T15: 3 x 4 x 2
    assert per_table == {"1": 20, "8": 10, "12": 80, "13": 48, "14": 40, "15": 24}


def test_gap_arithmetic_finds_the_documented_errors(gaps):
    bad = problems(gaps).set_index(["table", "cells"])
    assert set(bad.index) == {("12", "AT · REM · acc gap"), ("12", "AT · SEM · acc gap"),
                              ("12", "UER · MI-UE · acc gap"), ("14", "ResNet-101 · EM · MI gap"),
                              ("15", "ViT-Base · EM · MI gap")}
    assert bad.loc[("12", "AT · REM · acc gap"), "printed"] == "-0.79"
    assert bad.loc[("12", "AT · REM · acc gap"), "recomputed"] == pytest.approx(-0.89)
    assert bad.loc[("12", "UER · MI-UE · acc gap"), ["printed", "recomputed"]].tolist() == ["25.14", 26.14]
    assert bad.loc[("14", "ResNet-101 · EM · MI gap"), "recomputed"] == pytest.approx(0.614 - 0.7022)
    assert bad.loc[("15", "ViT-Base · EM · MI gap"), "verdict"] == "sign typo"
    assert (bad["verdict"] == "mismatch").sum() == 4
    assert (gaps.loc[~gaps.index.isin(problems(gaps).index), "verdict"] == "exact").all()


def test_tolerance_parameter(gaps):
    loose = paper.gap_checks(tolerance=7)  # 7 units of the last decimal hide -0.0876 vs -0.0882, not -0.79 vs -0.89
    assert len(problems(loose)) == len(problems(gaps)) - 1
    with pytest.raises(TypeError):
        paper.gap_checks(tolerance="1")


def test_table11_averages_add_up():
    av = paper.average_checks()
    assert len(av) == 8 and set(av["verdict"]) <= {"exact", "rounding"}


def test_repeated_values_clash_only_between_tables_3_and_13():
    cross = paper.cross_table_checks()
    assert len(cross) > 150
    bad = problems(cross)
    assert set(bad["table"]) == {"3 vs 13"}
    assert cells(bad) == {("3 vs 13", f"{m} · 3-NN · acc") for m in ("Clean", "EM", "REM", "GUE", "MI-UE")} | \
        {("3 vs 13", "MI-UE · LeNet-5 · acc")}
    mi_ue = bad.set_index("cells").loc["MI-UE · 3-NN · acc"]
    assert (mi_ue["printed"], mi_ue["recomputed"]) == ("14.16", 11.43)
    ok = cross[cross["table"] == "3 vs 13"]
    assert {c.split(" · ")[1] for c in ok.loc[~ok.index.isin(bad.index), "cells"]} == {"2-NN", "LeNet-5"}


def test_spearman_values_are_reproduced():
    sp = paper.spearman_checks()
    got = [round(r, 4) for r in sp["recomputed"]]
    assert got == [0.7818, 0.7000, 0.0333, 0.2833]
    assert sp["n"].tolist() == [10, 9, 9, 9]
    assert sp["verdict"].tolist() == ["reproduced", "mismatch", "reproduced", "reproduced"]
    assert "Random" in sp.loc[0, "computation"] and "Random" not in sp.loc[1, "computation"]
    assert paper.spearman([1, 2, 3], [1, 1, 2]) == pytest.approx(0.8660254)


def test_depth_claims_fail_once_per_claim():
    mono = paper.monotonicity_checks()
    assert len(mono) == 4 * 2 * (5 + 4 + 2)
    bad = problems(mono)
    assert cells(bad) == {("14", "GUE · acc gap · ResNet-34 → ResNet-50"), ("13", "REM · MI gap · Linear → 2-NN")}
    assert bad.set_index("table").loc["14", "recomputed"] == pytest.approx(82.17 - 82.61)


def test_ud_ratios():
    ud = paper.ud_checks()
    own = ud[ud["check"] == paper.UD_OWN]
    t1 = own[own["table"] == "1"]
    assert len(t1) == 18 and (t1["verdict"] == "exact").all()
    t2 = ud[ud["table"] == "2"]
    assert len(t2) == 20 + 15
    assert cells(t2[t2["verdict"] == "rounding"]) == {("2", "UEraser-max · TAP · UD"), ("2", "MixUp · Vanilla · UD"),
                                                      ("2", "MixUp · TAP · UD")}
    assert (t2.loc[t2["verdict"] != "rounding", "verdict"] == "exact").all()
    t3 = own[own["table"] == "3"]
    assert cells(problems(t3)) == {("3", f"{m} · {x} · UD") for m in ("ResNet-50", "SENet-18", "ViT")
                                   for x in ("TAP", "OPS")}
    r18 = ud[(ud["check"] == paper.UD_R18) & (ud["table"] == "3")].set_index("cells")
    for c in cells(problems(t3)):  # the six are ratios to ResNet-18's vanilla #LP 3.32
        assert r18.loc[c[1], "verdict"] in ("exact", "rounding")
        assert r18.loc[c[1], "computation"].split(" / ")[1].startswith("3.32")


def test_printed_typos_and_precision():
    tok = paper.printed_token_checks()
    typos = tok[tok["kind"].str.endswith("(typo)")]
    assert set(typos["printed"]) == {"-75.35)", "-78.15)"}
    prec = paper.precision_checks()
    lost = prec[prec["kind"] == "digit lost"]
    assert lost["printed"].tolist() == ["0.614"] and lost["implied"].tolist() == [0.6146]
    dropped = set(prec.loc[prec["kind"] == "trailing zero dropped", "printed"])
    assert {"32.5", "13.3", "15.8"} <= dropped


def test_claims():
    cl = paper.claim_checks().set_index("claim")
    assert cl.loc["M13", "verdict"] == "fails for 10 of 49"
    assert cl.loc["U5", "verdict"] == "holds for OPS only"
    assert cl.loc["U3", "verdict"].startswith("tie")
    assert all(cl.loc[c, "verdict"] == "holds" for c in ("M1", "M6", "M9", "M10", "M11", "M12", "U1", "U2", "U6"))


def test_summary_counts():
    s = paper.summary()
    assert s["severity"].value_counts().to_dict() == {"error": 15, "typo": 4, "scope": 1, "claim": 5,
                                                      "rounding": 5, "cosmetic": 7}
    assert s["severity"].is_monotonic_increasing
    src = paper.sources()
    assert src["sha256"].str.len().eq(16).all() and "miue_table12_mi_under_defenses_cifar10.csv" in set(src["file"])
