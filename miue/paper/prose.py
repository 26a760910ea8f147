"""The papers' prose against their tables: the Spearman values the MI-UE text quotes (``spearman_checks``),
its depth claims (``monotonicity_checks``), and the other quantitative statements of both papers' text that
their tables can decide (``claim_checks``).
"""

from __future__ import annotations

from itertools import pairwise

import pandas as pd

from ..stats import spearman
from .checks import _COLUMNS, _EPS, _GAPS, _MINUS, _frame, _row
from .tables import _load, _one, text_claims


def spearman_checks() -> pd.DataFrame:
    """The three Spearman correlations the MI-UE text quotes (claims M3–M5), recomputed from Tables 1 and
    21: Acc Gap vs MI Gap over Table 1's columns with and without Random noise, and Acc Gap (Table 1) vs
    the linear probe's training accuracy on the noises and on the poisoned datasets (Table 21)."""
    t1, t21, claims = _load(1), _load(21), text_claims().set_index("claim_id")
    gap = {m: _one(t1, method=m, metric="acc_gap_pct") for m in t1["method"].drop_duplicates() if m != "Clean"}
    mig = {m: _one(t1, method=m, metric="mi_gap") for m in gap}
    ues = [m for m in gap if m != "Random"]
    rows = []

    def add(claim, cells, xs, ys, methods, inputs):
        c = claims.loc[claim]
        cell = {"value": c["value"], "v": float(c["value"]), "source_line": c["source_line"],
                "key": f"MI-UE text {claim}"}
        r = spearman(xs, ys)
        row = _row("Spearman as quoted", "MI-UE", "1" if claim == "M3" else "1, 21", cells,
                   f"Spearman over {len(methods)}: {', '.join(methods)}", cell, r, 0.5e-4, inputs)
        row["verdict"] = "reproduced" if row["verdict"] == "exact" else row["verdict"]
        row["n"] = len(methods)
        rows.append(row)

    for name, ms in (("incl. Random", list(gap)), ("UEs only (no Random)", ues)):
        add("M3", f"T1 acc gap vs T1 MI gap, {len(ms)} columns {name}", [gap[m]["v"] for m in ms],
            [mig[m]["v"] for m in ms], ms, [gap[m] for m in ms] + [mig[m] for m in ms])
    ms = [m for m in t21["method"].drop_duplicates() if m != "Clean"]
    for claim, ft in (("M4", "unlearnable_noises"), ("M5", "unlearnable_datasets")):
        ys = [_one(t21, method=m, fit_target=ft) for m in ms]
        add(claim, f"T1 acc gap vs T21 linear train acc on {ft.replace('_', ' ')}, {len(ms)} UEs",
            [gap[m]["v"] for m in ms], [y["v"] for y in ys], ms, [gap[m] for m in ms] + ys)
    return pd.DataFrame(rows, columns=[*_COLUMNS, "n"])


def monotonicity_checks() -> pd.DataFrame:
    """The depth claims: F.3 (Table 13, Linear → ResNet-18: 'when the networks become deeper ... the drop of
    test accuracy as well as the reduction of MI become greater') and F.4 (Tables 14 and 15: the gaps 'always
    become bigger'). One row per method, gap and pair of neighbouring models in the tables' (depth) order;
    ``recomputed`` is the change of the gap's magnitude, and the verdict 'holds' when it grows."""
    rows = []
    for n, claim in ((13, "F.3: gap grows with depth"), (14, "F.4: gap always grows with depth"),
                     (15, "F.4: gap always grows with depth")):
        t = _load(n)
        models = list(t["model"].drop_duplicates())
        for m in t.loc[t["method"] != "Clean", "method"].drop_duplicates():
            for _, gap, name in _GAPS:
                for a, b in pairwise(models):
                    ca, cb = _one(t, method=m, model=a, metric=gap), _one(t, method=m, model=b, metric=gap)
                    change = abs(cb["v"]) - abs(ca["v"])
                    rows.append({"check": claim, "paper": "MI-UE", "table": str(n),
                                 "cells": f"{m} · {name} · {a} → {b}",
                                 "computation": f"|{cb['value']}| {_MINUS} |{ca['value']}|",
                                 "printed": f"{ca['value']} → {cb['value']}", "recomputed": round(change, 6),
                                 "difference": round(change, 6), "bound": 0.0,
                                 "verdict": "holds" if change > _EPS else "fails",
                                 "source_line": f"{ca['source_line']}", "key": cb["key"],
                                 "inputs": (ca["key"], cb["key"]), "input_values": (ca["v"], cb["v"])})
    return _frame(rows)


# SAL/UD statements about its Tables 1–3 (the paper has no claims file; quotes verbatim from the text).
SALUD_CLAIMS = (
    ("U1", 1, "192", "Bolded numbers indicate the smallest unlearnable distance"),
    ("U2", 1, "204", "Except for EM, all methods have relatively large UD ( $> 1$ )"),
    ("U3", 1, "204", "TAP still has the lowest test accuracy and the largest UD"),
    ("U4", 2, "217", "With the exception of TAP, most defense methods can increase UD"),
    ("U5", 2, "217", "Among these defense techniques, JPEG compression performs the best."),
    ("U6", 3, "228", "ranging from a minimum of 0.157 to a maximum of 1.639"),
)


def _claim_row(paper, cid, tab, line, quote, relation, claimed, cells, computed, verdict) -> dict:
    return {"paper": paper, "claim": cid, "table": str(tab), "quote": quote, "relation": relation,
            "claimed": claimed, "cells": cells, "computed": computed, "verdict": verdict, "source_line": line}


def _compare(relation: str, claimed: float, cells: list) -> tuple[str, str]:
    vals = [c["v"] for c in cells]
    lo, hi = min(cells, key=lambda c: c["v"]), max(cells, key=lambda c: c["v"])
    span = f"{lo['value']} ({lo['method']}) to {hi['value']} ({hi['method']})" if len(cells) > 1 else cells[0]["value"]
    if relation == ">":
        bad = [c for c in cells if not c["v"] > claimed]
        return span, "holds" if not bad else f"fails for {len(bad)} of {len(cells)}"
    if relation == "=":
        return span, "holds" if abs(vals[0] - claimed) < _EPS else "fails"
    dev = max(abs(v - claimed) for v in vals) / claimed
    return span, f"approximate (largest deviation {dev:.0%})"


def claim_checks() -> pd.DataFrame:
    """The quantitative statements of the two papers' prose that their tables can decide: the MI-UE claims of
    ``miue_text_claims.csv`` that point at a table (M3–M5, the Spearman values, are in ``spearman_checks``;
    the settings M14–M16, M19, M20 cannot be recomputed) and SAL/UD's statements on its Tables 1–3."""
    claims = text_claims().set_index("claim_id")
    t1, t4, t5, t10, t11, t12, t13 = (_load(n) for n in (1, 4, 5, 10, 11, 12, 13))
    ues5 = [m for m in t5["method"].drop_duplicates() if m != "Clean"]

    def rows_of(df, **sel):
        m = pd.Series(True, index=df.index)
        for k, val in sel.items():
            m &= df[k].isin(val) if isinstance(val, list) else df[k] == val
        return [r for _, r in df[m].iterrows()]

    def row_max(m):
        return max(rows_of(t5, method=m), key=lambda c: c["v"])

    spec = {
        "M1": ("13", "Linear victim, the four UEs", rows_of(t13, model="Linear", method=["EM", "REM", "GUE", "MI-UE"],
                                                              metric="test_acc_pct")),
        "M2": ("1", "MI-UE", rows_of(t1, method="MI-UE", metric="test_acc_pct")),
        "M6": ("4", "MI-UE at AT-6", rows_of(t4, method="MI-UE", defense="AT-6")),
        "M7": ("5, 12", "UER: AP (T12), REM, SEM, MI-UE (T5)",
               rows_of(t12, method="AP", defense="UER", metric="test_acc_pct")
               + rows_of(t5, method=["REM", "SEM", "MI-UE"], defense="UER")),
        "M8": ("5", "OP: REM, SEM, MI-UE (AP has no OP cell)", rows_of(t5, method=["REM", "SEM", "MI-UE"], defense="OP")),
        "M9": ("5", "ISS and AVA, every UE", rows_of(t5, method=ues5, defense=["ISS", "AVA"])),
        "M10": ("5", "largest MI-UE cell", [row_max("MI-UE")]),
        "M11": ("5", "largest SEM cell", [row_max("SEM")]),
        "M12": ("5", "largest cell of every other UE", [row_max(m) for m in ues5 if m not in ("SEM", "MI-UE")]),
        "M13": ("11", "every UE at every JPEG quality",
                rows_of(t11, method=[m for m in t11["method"].unique() if m != "Clean"],
                        quality=[q for q in t11["quality"].unique() if q != "average"])),
        "M17": ("10", "MI-UE, budgets 4/255 to 16/255, CIFAR-10", rows_of(t10, dataset="CIFAR-10")),
        "M18": ("10", "MI-UE, budgets 4/255 to 16/255, CIFAR-100", rows_of(t10, dataset="CIFAR-100")),
    }
    out = []
    for cid, (tab, cells_name, cells) in spec.items():
        c = claims.loc[cid]
        span, verdict = _compare(c["relation"], float(c["value"]), cells)
        if verdict.startswith("fails for"):
            below = [x for x in cells if not x["v"] > float(c["value"])]
            span += "; not above: " + ", ".join(f"{x['method']} {x['value']}"
                                                + (f" (q{x['quality']})" if "quality" in x else "") for x in below)
        out.append(_claim_row("MI-UE", cid, tab, c["source_line"], c["quote"], c["relation"], c["value"],
                              f"{cells_name} ({len(cells)} cells)", span, verdict))

    s1, s2, s3 = _load(1, "SAL/UD"), _load(2, "SAL/UD"), _load(3, "SAL/UD")
    q = {cid: (tab, line, quote) for cid, tab, line, quote in SALUD_CLAIMS}

    def add(cid, relation, claimed, cells, computed, verdict):
        tab, line, quote = q[cid]
        out.append(_claim_row("SAL/UD", cid, tab, line, quote, relation, claimed, cells, computed, verdict))

    bold = s1[s1["printed"].str.startswith("<b>")]
    smallest = {ds: g.loc[g["v"].idxmin()] for ds, g in s1[s1["metric"] == "ud"].groupby("dataset", sort=False)}
    agree = all(smallest[r["dataset"]]["key"] == r["key"] for _, r in bold.iterrows()) and len(bold) == len(smallest)
    add("U1", "=", "smallest UD", "Table 1, bold UD cells vs each dataset's smallest UD",
        "; ".join(f"{ds}: smallest {r['method']} {r['value']}" for ds, r in smallest.items()),
        "holds" if agree else "fails")
    ud_in = [r for _, r in s1[(s1["dataset"] == "ImageNet-100") & (s1["metric"] == "ud")].iterrows()]
    others = [r for r in ud_in if r["method"] != "EM"]
    span, verdict = _compare(">", 1.0, others)
    add("U2", ">", "1", "ImageNet-100 UD of every method but EM", span, verdict)
    acc = s1[(s1["dataset"] == "ImageNet-100") & (s1["metric"] == "test_acc_pct") & (s1["method"] != "Vanilla")]
    lowest = acc[acc["v"] == acc["v"].min()]
    top = max(ud_in, key=lambda r: r["v"])
    tap_lowest = "TAP" in set(lowest["method"])
    verdict = ("holds" if tap_lowest and len(lowest) == 1 else
               f"tie: lowest accuracy shared by {', '.join(lowest['method'])}" if tap_lowest else "fails")
    if top["method"] != "TAP":
        verdict = "fails"
    add("U3", "=", "TAP lowest acc, largest UD", "ImageNet-100 test accuracy and UD",
        f"lowest accuracy {lowest['value'].iloc[0]} ({', '.join(lowest['method'])}); largest UD {top['value']} "
        f"({top['method']})", verdict)
    deltas = s2[s2["metric"] == "ud_delta"]
    up = {m: int((g["v"] > 0).sum()) for m, g in deltas.groupby("method", sort=False)}
    n_def = deltas["defense"].nunique()
    holds = all(v > n_def / 2 for m, v in up.items() if m != "TAP") and up.get("TAP", 0) <= n_def / 2
    add("U4", ">", "0 (most ΔUD)", "Table 2 ΔUD per method",
        "; ".join(f"{m}: {v} of {n_def} defenses raise UD" for m, v in up.items()), "holds" if holds else "fails")
    best = {m: g.loc[g["v"].idxmax()] for m, g in deltas[deltas["method"] != "TAP"].groupby("method", sort=False)}
    jpeg = [m for m, r in best.items() if r["defense"] == "JPEG"]
    add("U5", "=", "JPEG raises UD most", "Table 2, largest ΔUD per UE (TAP excluded, as in the text)",
        "; ".join(f"{m}: {r['defense']} {r['value']}" for m, r in best.items()),
        "holds" if len(jpeg) == len(best) else f"holds for {', '.join(jpeg) or 'no UE'} only")
    u3 = s3[s3["metric"] == "ud"]
    lo, hi = u3.loc[u3["v"].idxmin()], u3.loc[u3["v"].idxmax()]
    add("U6", "=", "0.157 to 1.639", "Table 3 printed UDs", f"{lo['value']} to {hi['value']}",
        "holds" if (lo["value"], hi["value"]) == ("0.157", "1.639") else "fails")
    return pd.DataFrame(out)
