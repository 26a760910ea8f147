"""``summary``: every inconsistency the checks of ``miue.paper`` find, one row each, most serious first."""

from __future__ import annotations

import pandas as pd

from .checks import (UD_R18, _num, _shown, average_checks, cross_table_checks, gap_checks, precision_checks,
                     printed_token_checks, ud_checks)
from .prose import claim_checks, monotonicity_checks, spearman_checks


_SEVERITY = ("error", "typo", "scope", "claim", "rounding", "cosmetic")


def summary(tolerance: float = 1.0) -> pd.DataFrame:
    """Every inconsistency the checks of ``miue.paper`` find, one row each, most serious first. Severity:
    'error' (numbers that cannot all be right), 'typo' (a printed character or digit is wrong, the arithmetic
    shows which), 'scope' (a quoted statistic holds only for another set of columns than the text says),
    'claim' (a statement of the prose the table does not bear out), 'rounding' (off by less than rounding of the
    printed inputs allows: not an error) and 'cosmetic' (fewer decimals than the column)."""
    gaps, avgs, cross, uds = gap_checks(tolerance), average_checks(tolerance), cross_table_checks(), ud_checks(tolerance)
    prec = precision_checks(pd.concat([gaps, avgs, cross, uds], ignore_index=True))
    lost = dict(zip(prec.loc[prec["kind"] == "digit lost", "key"], prec.loc[prec["kind"] == "digit lost", "implied"]))
    rows = []

    def add(sev, kind, r, finding, printed=None, recomputed=None):
        rows.append({"severity": sev, "kind": kind, "paper": r["paper"], "table": r["table"], "cells": r["cells"],
                     "printed": r["printed"] if printed is None else printed,
                     "recomputed": r.get("recomputed") if recomputed is None else recomputed,
                     "finding": finding, "source_line": r["source_line"]})

    for _, r in pd.concat([gaps, avgs], ignore_index=True).iterrows():
        if r["verdict"] == "sign typo":
            add("typo", "sign typo", r, f"{r['computation']} = {_num(r['recomputed'])}: the minus sign is missing")
        elif r["verdict"] == "mismatch":
            digit = [k for k in r["inputs"] if k in lost]
            if digit:
                cell = prec.set_index("key").loc[digit[0]]
                add("typo", "digit lost", r, f"{r['computation']} = {_num(r['recomputed'])} ≠ printed {r['printed']}; "
                    f"the printed gap implies {cell['printed']} is {lost[digit[0]]:.{cell['column decimals']}f}")
            else:
                add("error", "arithmetic", r, f"{r['computation']} = {r['recomputed']:.2f}, printed {r['printed']}")
    for _, r in cross[cross["verdict"] == "mismatch"].iterrows():
        add("error", "same setting, two values", r, f"{r['computation']} (difference {r['difference']:+.2f})")
    alt = uds[uds["check"] == UD_R18].set_index(["table", "cells"])
    for _, r in uds[(uds["check"] != UD_R18) | (uds["table"] == "2")].iterrows():
        if r["verdict"] == "mismatch":
            a = alt.loc[(r["table"], r["cells"])]
            add("error", "UD denominator", r, f"{r['computation']} = {r['recomputed']:.3f}, printed {r['printed']}; "
                f"{a['computation']} = {a['recomputed']:.4f} ({a['verdict']})")
        elif r["verdict"] == "rounding":
            add("rounding", "UD rounding", r, f"{r['computation']} = {r['recomputed']:.4f}, printed {r['printed']}: "
                f"within the ±{r['bound']:.4f} the 2-decimal #LP allows")
    for _, r in spearman_checks().iterrows():
        if r["verdict"] != "reproduced":
            add("scope", "Spearman set", r, f"{r['computation']} gives {r['recomputed']:.4f}, not {r['printed']}")
    for _, r in monotonicity_checks().iterrows():
        if r["verdict"] == "fails":
            add("claim", "depth claim", r, f"{r['check']}, but the gap shrinks by {abs(r['recomputed']):.4g}",
                recomputed=_shown(r["recomputed"], r["printed"].split(" → ")[1]))
    for _, r in claim_checks().iterrows():
        if r["verdict"].startswith(("fails", "holds for", "tie")):
            add("claim", "prose vs table", {**r, "printed": r["claimed"]}, f"'{r['quote']}': {r['verdict']}",
                recomputed=r["computed"])
    for _, r in printed_token_checks().iterrows():
        if r["kind"].endswith("(typo)"):
            add("typo", "stray character", {**r, "cells": r["cell"]}, f"printed '{r['printed']}'", r["printed"],
                r["value"])
    for _, r in prec[prec["kind"] != "digit lost"].iterrows():
        add("cosmetic", "fewer decimals", {**r, "cells": r["cell"]},
            f"{r['column decimals']} decimals elsewhere in the column; {r['kind']}", r["printed"], None)
    out = pd.DataFrame(rows)
    out["recomputed"] = [_shown(x, p) for x, p in zip(out["recomputed"], out["printed"])]
    out["severity"] = pd.Categorical(out["severity"], categories=_SEVERITY, ordered=True)
    return out.sort_values("severity", kind="stable").reset_index(drop=True)
