"""Recomputing the papers' own arithmetic from the printed cells (the "Notes on the papers" chapter): the
tables against themselves. ``gap_checks``, ``average_checks``, ``cross_table_checks`` and ``ud_checks``
recompute printed numbers from other printed cells; ``printed_token_checks`` and ``precision_checks`` read
how the cells are printed. The row format and the verdicts of every check are defined here.
"""

from __future__ import annotations

import pandas as pd

from .tables import _META, _PREFIX, PAPER_DIR, _has, _load, _one

# ---------------------------------------------------------------------------------------------------------
# Every check returns a DataFrame with one row per relation checked and the columns
#   check, paper, table, cells, computation, printed, recomputed, difference, bound, verdict, source_line
# plus bookkeeping columns: ``key`` (the checked cell), ``inputs`` and ``input_values`` (the cells the
# recomputation used, as keys and numbers).
# ``printed`` is the number as printed; ``recomputed`` what the other printed cells give; ``difference`` is
# printed − recomputed; ``bound`` is the largest difference that rounding of the printed inputs explains,
# times ``tolerance``. Verdicts: "exact" (the recomputed number rounds to the printed one), "rounding"
# (within ``bound``), "sign typo" (right magnitude, wrong sign), "mismatch" (anything else).
# ---------------------------------------------------------------------------------------------------------

OK_VERDICTS = ("exact", "rounding", "holds", "reproduced")
_EPS = 1e-9
_MINUS = "\u2212"


def decimals(text: str) -> int:
    """Digits after the decimal point of a printed number ('0.614' → 3, '88' → 0)."""
    return len(text.split(".")[1]) if "." in text else 0


def _unit(text: str) -> float:
    return 10.0 ** -decimals(text)


def _num(x: float, digits: int = 4) -> str:
    return f"{x:.{digits}f}"


def _shown(x, printed: str) -> str:
    """``x`` with the printed number's decimals, or one more where those would hide a difference."""
    if x is None or isinstance(x, str):
        return "" if x is None else x
    d = decimals(printed)
    return f"{x:.{d}f}" if abs(x - round(x, d)) < _EPS else f"{x:.{d + 1}f}"


def _judge(printed: float, text: str, recomputed: float, bound: float) -> str:
    half = 0.5 * _unit(text)
    d = abs(printed - recomputed)
    if d <= half + _EPS:
        return "exact"
    if d <= bound + _EPS:
        return "rounding"
    if abs(printed + recomputed) <= max(bound, half) + _EPS and abs(recomputed) > half:
        return "sign typo"
    return "mismatch"


_COLUMNS = ["check", "paper", "table", "cells", "computation", "printed", "recomputed", "difference", "bound",
            "verdict", "source_line", "key", "inputs", "input_values"]


def _row(check, paper, tab, cells, computation, cell, recomputed, bound, inputs=()) -> dict:
    return {"check": check, "paper": paper, "table": str(tab), "cells": cells, "computation": computation,
            "printed": cell["value"], "recomputed": round(float(recomputed), 6),
            "difference": round(float(cell["v"] - recomputed), 6), "bound": round(float(bound), 6),
            "verdict": _judge(cell["v"], cell["value"], recomputed, bound), "source_line": cell["source_line"],
            "key": cell["key"], "inputs": tuple(c["key"] for c in inputs),
            "input_values": tuple(c["v"] for c in inputs)}


def _frame(rows) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=_COLUMNS)


def _check_tolerance(tolerance) -> float:
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or tolerance < 0:
        raise TypeError(f"tolerance must be a non-negative number, got {tolerance!r}")
    return float(tolerance)


_GAPS = (("test_acc_pct", "acc_gap_pct", "acc gap"), ("mi", "mi_gap", "MI gap"))
CLEAN_MINUS_METHOD = "gap = clean − method"
METHOD_MINUS_CLEAN = "gap = method − clean"


def gap_checks(tolerance: float = 1.0) -> pd.DataFrame:
    """Every printed Acc Gap and MI Gap of MI-UE Tables 1, 8, 12, 13, 14 and 15, recomputed from the accuracy
    and MI cells of the same table (Table 8 from Table 1's Clean column, as its caption's gaps are relative to
    clean CIFAR-10). Signs as printed: clean − method in Tables 1, 8, 12; method − clean in Tables 13–15.
    The rounding bound is ``tolerance`` units of the gap's last printed decimal: a difference of two numbers
    rounded to that decimal is off the rounded true difference by at most one unit."""
    tol = _check_tolerance(tolerance)
    rows = []

    def add(n, df, group, clean, sub, cm):
        for (src, gap, name) in _GAPS:
            for m in df.loc[df["metric"] == gap, "method"].drop_duplicates():
                g = _one(sub, method=m, metric=gap)
                c, x = _one(clean, metric=src), _one(sub, method=m, metric=src)
                if cm:
                    rec, comp, check = c["v"] - x["v"], f"{c['value']} {_MINUS} {x['value']}", CLEAN_MINUS_METHOD
                else:
                    rec, comp, check = x["v"] - c["v"], f"{x['value']} {_MINUS} {c['value']}", METHOD_MINUS_CLEAN
                cells = " · ".join([*group, m, name])
                rows.append(_row(check, "MI-UE", n, cells, comp, g, rec, tol * _unit(g["value"]), (c, x)))

    t1 = _load(1)
    add(1, t1, [], t1[t1["method"] == "Clean"], t1, True)
    t8 = _load(8)  # no Clean row: the gaps are relative to Table 1's clean CIFAR-10 numbers
    add(8, t8, [], t1[t1["method"] == "Clean"], t8, True)
    t12 = _load(12)
    for d in t12["defense"].drop_duplicates():
        sub = t12[t12["defense"] == d]
        add(12, sub, [d], sub[sub["method"] == "Clean"], sub, True)
    for n in (13, 14, 15):
        t = _load(n)
        for mod in t["model"].drop_duplicates():
            sub = t[t["model"] == mod]
            add(n, sub, [mod], sub[sub["method"] == "Clean"], sub, False)
    return _frame(rows)


def average_checks(tolerance: float = 1.0) -> pd.DataFrame:
    """MI-UE Table 11: the printed 'Average' of each row against the mean of its seven printed qualities.
    Each input is off by at most half a unit, so is their mean; the printed average adds half a unit."""
    tol = _check_tolerance(tolerance)
    t = _load(11)
    rows = []
    for m in t["method"].drop_duplicates():
        sub = t[(t["method"] == m) & (t["quality"] != "average")]
        avg = _one(t, method=m, quality="average")
        vals = list(sub.itertuples())
        comp = f"mean({', '.join(r.value for r in vals)})"
        rows.append(_row("average = mean of the 7 qualities", "MI-UE", 11, f"{m} · average", comp, avg,
                         sub["v"].mean(), tol * _unit(avg["value"]), [r for _, r in sub.iterrows()]))
    return _frame(rows)


def _same(rows, a, b, cells, sign=1.0, paper="MI-UE"):
    (na, ra), (nb, rb) = a, b
    rec = sign * rb["v"]
    other = rb["value"] if sign > 0 else f"{_MINUS}({rb['value']})"
    rows.append(_row("same number in two tables", paper, f"{na} vs {nb}", cells,
                     f"T{na} {ra['value']} vs T{nb} {other}", ra, rec, 0.0, (rb,)))


def cross_table_checks() -> pd.DataFrame:
    """Numbers the MI-UE paper prints in two places (the same setting in two tables) and the SAL/UD Table 3
    ResNet-18 row against its Table 1, compared as printed (bound 0)."""
    T = {n: _load(n) for n in (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 13, 14, 15, 19, 22, 23)}
    rows = []
    acc = "test_acc_pct"
    for m in T[1]["method"].drop_duplicates():
        a = (1, _one(T[1], method=m, metric=acc))
        if _has(T[2], method=m, dataset="CIFAR-10"):
            _same(rows, a, (2, _one(T[2], method=m, dataset="CIFAR-10")), f"{m} · CIFAR-10 · ResNet-18 · acc")
        if _has(T[3], method=m, model="ResNet-18"):
            _same(rows, a, (3, _one(T[3], method=m, model="ResNet-18")), f"{m} · ResNet-18 · acc")
        if _has(T[4], method=m, defense="ST"):
            _same(rows, a, (4, _one(T[4], method=m, defense="ST")), f"{m} · ST · acc")
        for n in (13, 14):
            if _has(T[n], method=m, model="ResNet-18"):
                for met, name, sign in (("test_acc_pct", "acc", 1), ("mi", "MI", 1),
                                        ("acc_gap_pct", "acc gap (sign flipped)", -1),
                                        ("mi_gap", "MI gap (sign flipped)", -1)):
                    if _has(T[1], method=m, metric=met):
                        _same(rows, (1, _one(T[1], method=m, metric=met)),
                              (n, _one(T[n], method=m, model="ResNet-18", metric=met)),
                              f"{m} · ResNet-18 · {name}", sign)
    for m in T[4]["method"].drop_duplicates():
        if _has(T[12], method=m, defense="AT"):
            _same(rows, (4, _one(T[4], method=m, defense="AT-8")),
                  (12, _one(T[12], method=m, defense="AT", metric=acc)), f"{m} · AT(-8) · acc")
    for m in T[5]["method"].drop_duplicates():
        for d in ("Cutout", "UER", "ISS"):
            if _has(T[12], method=m, defense=d):
                _same(rows, (5, _one(T[5], method=m, defense=d)),
                      (12, _one(T[12], method=m, defense=d, metric=acc)), f"{m} · {d} · acc")
    for a_mod, n, b_mod in (("2-NN", 13, "2-NN"), ("3-NN", 13, "3-NN"), ("LeNet-5", 13, "LeNet-5"),
                            ("ResNet-50", 14, "ResNet-50"), ("ViT-B", 15, "ViT-Base")):
        for m in T[n]["method"].drop_duplicates():
            if _has(T[3], method=m, model=a_mod):
                _same(rows, (3, _one(T[3], method=m, model=a_mod)),
                      (n, _one(T[n], method=m, model=b_mod, metric=acc)), f"{m} · {a_mod} · acc")
    for m in T[2]["method"].drop_duplicates():
        if _has(T[19], method=m, model="ResNet-18"):
            _same(rows, (2, _one(T[2], method=m, dataset="CIFAR-100")),
                  (19, _one(T[19], method=m, model="ResNet-18")), f"{m} · CIFAR-100 · ResNet-18 · acc")
    for m8, m1 in (("UE", "EM"), ("AP", "AP"), ("MI-UE", "MI-UE")):
        for met, name in (("test_acc_pct", "acc"), ("mi", "MI")):
            _same(rows, (8, _one(T[8], method=m8, metric=met)), (1, _one(T[1], method=m1, metric=met)),
                  f"{m8} (T8) = {m1} (T1) · {name}")
    mi2 = {ds: (2, _one(T[2], method="MI-UE", dataset=ds)) for ds in ("CIFAR-10", "CIFAR-100", "ImageNet-subset")}
    for ds, cell in mi2.items():
        _same(rows, (6, _one(T[6], method="MI-UE", dataset=ds)), cell, f"MI-UE · {ds} · acc")
    _same(rows, (6, _one(T[6], method="w/o Distance Term", dataset="CIFAR-10")), (7, _one(T[7], strength="0")),
          "w/o distance term = strength ζ 0 · CIFAR-10 · acc")
    _same(rows, (7, _one(T[7], strength="0.1")), mi2["CIFAR-10"], "MI-UE · default ζ 0.1 · acc")
    for ds in ("CIFAR-10", "CIFAR-100"):
        for n, sel, name in ((9, {"epochs": "100"}, "100 epochs"), (10, {"budget": "8/255"}, "budget 8/255"),
                             (22, {"step_size": "0.2/255"}, "step 0.2/255")):
            _same(rows, (n, _one(T[n], dataset=ds, **sel)), mi2[ds], f"MI-UE · default {name} · {ds} · acc")
    _same(rows, (23, _one(T[23], epochs="50")), mi2["ImageNet-subset"],
          "MI-UE · default 50 epochs · ImageNet-subset · acc")
    s1, s3 = _load(1, "SAL/UD"), _load(3, "SAL/UD")
    for m in s3["method"].drop_duplicates():
        for met in ("lp", "ud"):
            if _has(s3, model="ResNet-18", method=m, metric=met):
                _same(rows, (3, _one(s3, model="ResNet-18", method=m, metric=met)),
                      (1, _one(s1, method=m, dataset="CIFAR-10", metric=met)),
                      f"{m} · ResNet-18 (T3) = CIFAR-10 (T1) · {'#LP' if met == 'lp' else 'UD'}", paper="SAL/UD")
    return _frame(rows)


def _ratio_bound(lp, base, ud, tol):
    hl, hb = 0.5 * _unit(lp["value"]), 0.5 * _unit(base["value"])
    r = lp["v"] / base["v"]
    lo, hi = (lp["v"] - hl) / (base["v"] + hb), (lp["v"] + hl) / (base["v"] - hb)
    return r, tol * (max(hi - r, r - lo) + 0.5 * _unit(ud["value"]))


UD_OWN = "UD = #LP / #LP(Vanilla) of the same setting"
UD_R18 = "UD = #LP / #LP(ResNet-18 Vanilla, CIFAR-10)"
UD_DELTA = "ΔUD = UD − UD before defense (T1, CIFAR-10)"


def ud_checks(tolerance: float = 1.0) -> pd.DataFrame:
    """SAL/UD: every printed UD recomputed as #LP(method) / #LP(Vanilla) (Eq. 5; #LP is the average number
    of learnable parameters per layer): Table 1 per dataset, Table 2 against the undefended CIFAR-10 vanilla
    #LP of Table 1 (its deltas against Table 1's UDs), and Table 3 both against each architecture's own vanilla
    #LP and against ResNet-18's. The rounding bound is the range of ratios the 2-decimal #LP inputs allow plus
    half a unit of the printed UD, times ``tolerance``."""
    tol = _check_tolerance(tolerance)
    s1, s2, s3 = _load(1, "SAL/UD"), _load(2, "SAL/UD"), _load(3, "SAL/UD")
    rows = []

    def ratio(check, tab, cells, lp, base, ud, base_name):
        r, bound = _ratio_bound(lp, base, ud, tol)
        rows.append(_row(check, "SAL/UD", tab, cells, f"{lp['value']} / {base['value']} ({base_name})", ud, r,
                         bound, (lp, base)))

    for ds in s1["dataset"].drop_duplicates():
        base = _one(s1, method="Vanilla", dataset=ds, metric="lp")
        for m in s1.loc[(s1["metric"] == "ud") & (s1["dataset"] == ds), "method"]:
            ratio(UD_OWN, 1, f"{ds} · {m} · UD", _one(s1, method=m, dataset=ds, metric="lp"), base,
                  _one(s1, method=m, dataset=ds, metric="ud"), f"Vanilla {ds}")
    r18 = _one(s1, method="Vanilla", dataset="CIFAR-10", metric="lp")
    for d in s2["defense"].drop_duplicates():
        for m in s2["method"].drop_duplicates():
            ud = _one(s2, method=m, defense=d, metric="ud")
            ratio(UD_R18, 2, f"{d} · {m} · UD", _one(s2, method=m, defense=d, metric="lp"), r18, ud,
                  "Vanilla, T1 CIFAR-10")
            if _has(s2, method=m, defense=d, metric="ud_delta"):
                delta, before = _one(s2, method=m, defense=d, metric="ud_delta"), \
                    _one(s1, method=m, dataset="CIFAR-10", metric="ud")
                rows.append(_row(UD_DELTA, "SAL/UD", 2, f"{d} · {m} · ΔUD",
                                 f"{ud['value']} {_MINUS} {before['value']}", delta, ud["v"] - before["v"],
                                 tol * _unit(delta["value"]), (ud, before)))
    for mod in s3["model"].drop_duplicates():
        base = _one(s3, model=mod, method="Vanilla", metric="lp")
        for m in s3.loc[(s3["metric"] == "ud") & (s3["model"] == mod), "method"]:
            lp, ud = _one(s3, model=mod, method=m, metric="lp"), _one(s3, model=mod, method=m, metric="ud")
            ratio(UD_OWN, 3, f"{mod} · {m} · UD", lp, base, ud, f"Vanilla {mod}")
            ratio(UD_R18, 3, f"{mod} · {m} · UD", lp, r18, ud, "Vanilla ResNet-18, T1 CIFAR-10")
    return _frame(rows)


def printed_token_checks() -> pd.DataFrame:
    """Cells whose printed token differs from its number: a leading '+' or bold tags are formatting, any
    other extra character is a typo (read off the ``printed`` column of every table)."""
    rows = []
    for paper, prefix in _PREFIX.items():
        for path in sorted(PAPER_DIR.glob(f"{prefix}_table*.csv")):
            n = int(path.name.split("_table")[1][:2])
            t = _load(n, paper)
            for _, c in t[t["printed"] != t["value"]].iterrows():
                p = c["printed"]
                if p == f"+{c['value']}":
                    kind = "explicit plus sign (formatting)"
                elif p == f"<b>{c['value']}</b>":
                    kind = "bold (formatting)"
                else:
                    extra = p.replace(c["value"], "", 1)
                    kind = f"stray {extra!r} (typo)"
                rows.append({"paper": paper, "table": str(n), "cell": c["label"],
                             "printed": p, "value": c["value"], "kind": kind, "source_line": c["source_line"],
                             "key": c["key"]})
    return pd.DataFrame(rows, columns=["paper", "table", "cell", "printed", "value", "kind", "source_line", "key"])


def precision_checks(checks: pd.DataFrame | None = None) -> pd.DataFrame:
    """Cells printed with fewer decimals than most cells of their table column (same metric, same entities but
    the method: the whole-percent poisoned-class column of Tables 17/18 is a column of its own), and what the
    arithmetic through them says: 'trailing zero dropped' when every check through the cell passes at the
    column's precision, 'digit lost' when one fails (then ``implied`` is the value the printed gap asks for),
    'no arithmetic uses it' otherwise. ``checks`` defaults to gaps, averages, repeated values and UDs."""
    if checks is None:
        checks = pd.concat([gap_checks(), average_checks(), cross_table_checks(), ud_checks()], ignore_index=True)
    rows = []
    for paper, prefix in _PREFIX.items():
        for path in sorted(PAPER_DIR.glob(f"{prefix}_table*.csv")):
            n = int(path.name.split("_table")[1][:2])
            t = _load(n, paper)
            t["decimals"] = t["value"].map(decimals)
            columns = ["metric"] + [c for c in t.columns if c not in (*_META, "key", "label", "decimals", "method")]
            for _, g in t.groupby(columns, sort=False):
                usual = int(g["decimals"].mode().max())
                for _, c in g[g["decimals"] < usual].iterrows():
                    used = checks[(checks["key"] == c["key"]) | checks["inputs"].map(lambda k, c=c: c["key"] in k)]
                    bad = used[~used["verdict"].isin(OK_VERDICTS)]
                    implied = None
                    if len(used) == 0:
                        kind = "no arithmetic uses it"
                    elif len(bad) == 0:
                        kind = "trailing zero dropped"
                    else:
                        kind = "digit lost"
                        for _, r in bad.iterrows():  # a gap: the method value the printed gap implies
                            if r["check"] in (CLEAN_MINUS_METHOD, METHOD_MINUS_CLEAN) and r["inputs"][1] == c["key"]:
                                clean, gap = r["input_values"][0], float(r["printed"])
                                implied = clean + gap if r["check"] == METHOD_MINUS_CLEAN else clean - gap
                    rows.append({"paper": paper, "table": str(n), "cell": c["label"],
                                 "printed": c["value"], "column decimals": usual, "checks through it": len(used),
                                 "failing": len(bad), "kind": kind,
                                 "implied": None if implied is None else round(implied, usual),
                                 "source_line": c["source_line"], "key": c["key"]})
    return pd.DataFrame(rows, columns=["paper", "table", "cell", "printed", "column decimals", "checks through it",
                                       "failing", "kind", "implied", "source_line", "key"])
