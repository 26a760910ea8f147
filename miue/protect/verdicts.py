"""Whether the protection works, from a verify record: intervals, the verdict, and its words.

Held-out accuracies get 95% Wilson intervals; the accuracy gap (control − protected) gets Newcombe's interval.
The protection works when the whole interval lies at or above the minimum gap, does not when it lies below,
and otherwise the held-out set is too small to tell.
"""

from __future__ import annotations

import math

from .errors import _count


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a proportion k/n (95% at z = 1.96); honest at small n and at 0 or n."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def gap_interval(k_control: int, k_protected: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% interval of the accuracy gap control − protected on the same n held-out images (Newcombe's
    MOVER-Wilson interval for a difference of proportions; it ignores the pairing, so it errs wide)."""
    p1, p2 = k_control / n, k_protected / n
    l1, u1 = wilson(k_control, n, z)
    l2, u2 = wilson(k_protected, n, z)
    d = p1 - p2
    return d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2), d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)


MIN_GAP = 0.10  # the protection "works" when it lowers held-out accuracy by at least this much (10 points)


def verdict(k_control: int, k_protected: int, n: int, min_gap: float = MIN_GAP) -> dict:
    """Whether the protection works: the gap's 95% interval entirely at or above ``min_gap`` (works), entirely
    below it (does not work), or straddling it (cannot tell; then how many held-out images would decide at
    the same accuracies)."""
    lo, hi = gap_interval(k_control, k_protected, n)
    gap = (k_control - k_protected) / n
    out = {"gap": gap, "gap_low": lo, "gap_high": hi, "min_gap": min_gap, "n_test": n}
    if lo >= min_gap:
        return {**out, "verdict": "works"}
    if hi < min_gap:
        return {**out, "verdict": "does not work"}
    needed = None
    if abs(gap - min_gap) > 1e-9:
        for m in (int(n * 1.25 ** i) + 1 for i in range(1, 60)):  # the same accuracies at m images
            lo_m, hi_m = gap_interval(round(k_control / n * m), round(k_protected / n * m), m)
            if lo_m >= min_gap or hi_m < min_gap:
                needed = m
                break
    return {**out, "verdict": "cannot tell", "needed_test": needed}


def record_verdict(record: dict, min_gap: float = MIN_GAP) -> dict:
    """:func:`verdict` of a verify record (older records without counts: from the accuracies)."""
    m = record["metrics"]
    n = m["n_test_owner"]
    k = {a: m[a].get("correct", round(m[a]["protected_classes_acc"] * n)) for a in ("protected", "control")}
    return verdict(k["control"], k["protected"], n, min_gap)


def verdict_line(v: dict) -> str:
    """The verdict in one line."""
    gap = (f"gap {100 * v['gap']:.1f} points (95% interval {100 * v['gap_low']:.1f} to {100 * v['gap_high']:.1f}) "
           f"on {v['n_test']} held-out images")
    if v["verdict"] == "works":
        return f"protection works: {gap}, at least {100 * v['min_gap']:g} points"
    if v["verdict"] == "does not work":
        return f"protection does not work: {gap}, below {100 * v['min_gap']:g} points"
    need = (f"about {v['needed_test']} held-out images (about {math.ceil(v['needed_test'] / 0.25)} images at the "
            "default --holdout) would decide at these accuracies" if v.get("needed_test")
            else "the gap sits at the threshold, so more images would not decide it")
    return f"cannot tell whether the protection works: {gap} straddles {100 * v['min_gap']:g} points; {need}"


def verify_table(record: dict, min_gap: float = MIN_GAP) -> str:
    m = record["metrics"]
    n = m["n_test_owner"]
    lines = [f"{'':<46}{'protected':>22}{'control':>22}"]

    def cell(arm):
        k = m[arm].get("correct", round(m[arm]["protected_classes_acc"] * n))
        lo, hi = wilson(k, n)
        return f"{m[arm]['protected_classes_acc']:.1%} [{lo:.0%}, {hi:.0%}]"
    lines.append(f"{'held-out accuracy of the protected class(es)':<46}{cell('protected'):>22}{cell('control'):>22}")
    for label, key in (("accuracy on the reference test set", "reference_acc"), ("final training accuracy",
                                                                                 "train_acc")):
        if key in m["protected"]:
            lines.append(f"{label:<46}{m['protected'][key]:>22.1%}{m['control'][key]:>22.1%}")
    for name, acc in m["protected"]["protected_class_acc"].items():
        lines.append(f"{'  class ' + name:<46}{acc:>22.1%}{m['control']['protected_class_acc'][name]:>22.1%}")
    lines.append(f"({_count(m['n_train_owner'], 'protected training image', 'protected training images')}, "
                 f"{_count(n, 'held-out original', 'held-out originals')}, "
                 f"{_count(m['n_reference'], 'reference image', 'reference images')}; [95% Wilson intervals])")
    lines.append(verdict_line(record_verdict(record, min_gap)))
    return "\n".join(lines)


def accuracy_text(record: dict, arm: str) -> str:
    """'86.0% [77.9, 91.5]': an arm's held-out accuracy with its 95% Wilson interval, in percent."""
    m = record["metrics"]
    n = m["n_test_owner"]
    k = m[arm].get("correct", round(m[arm]["protected_classes_acc"] * n))
    lo, hi = wilson(k, n)
    return f"{100 * k / n:.1f}% [{100 * lo:.1f}, {100 * hi:.1f}]"


def gap_text(record: dict) -> str:
    v = record_verdict(record)
    return f"{100 * v['gap']:.1f} [{100 * v['gap_low']:.1f}, {100 * v['gap_high']:.1f}]"


def verdicts_text(records: dict) -> str:
    """One sentence per verdict outcome over ``records`` (label → verify record), in words computed from them."""
    by = {}
    for label, rec in records.items():
        by.setdefault(record_verdict(rec)["verdict"], []).append(label)
    n = {rec["metrics"]["n_test_owner"] for rec in records.values()}
    parts = []
    if "works" in by:
        parts.append(f"The protection works for {', '.join(by['works'])}: the 95% interval of the gap lies at or "
                     f"above {100 * MIN_GAP:g} points.")
    if "does not work" in by:
        parts.append(f"**It does not work for {', '.join(by['does not work'])}**: the gap's 95% interval lies "
                     f"below {100 * MIN_GAP:g} points, so a victim trained on the protected images still "
                     "recognises the held-out originals almost as often as the control.")
    if "cannot tell" in by:
        parts.append(f"For {', '.join(by['cannot tell'])} the {'/'.join(str(x) for x in sorted(n))} held-out images "
                     f"cannot tell: the gap's interval straddles {100 * MIN_GAP:g} points.")
    return " ".join(parts)
