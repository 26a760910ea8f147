"""The papers' reference numbers, loaded from the tidy CSVs in ``data/paper/`` (copied from the
transcriptions in ``shared/paper/tables``; every value traces to a source line of the paper).

``table(1)`` gives MI-UE Table 1 as a long DataFrame; ``table(1, paper="SAL/UD")`` the seed paper's.
These are facts quoted from the papers, never measurements of this code.

The second half recomputes what the papers' own tables allow (the "Notes on the papers" chapter):
``gap_checks``, ``average_checks``, ``cross_table_checks``, ``spearman_checks``, ``monotonicity_checks``,
``ud_checks``, ``printed_token_checks``, ``precision_checks``, ``claim_checks``, and ``summary`` (every
inconsistency they find); ``sources`` lists the CSV files read, with SHA-256 prefixes.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from itertools import pairwise
from pathlib import Path

import pandas as pd

from .stats import spearman  # noqa: F401 - paper.spearman, as the notebooks call it

PAPER_DIR = Path(__file__).resolve().parent.parent / "data" / "paper"
CITATION = {"MI-UE": "Why Do Unlearnable Examples Work: A Novel Perspective of Mutual Information (ICLR 2026)",
            "SAL/UD": "How Far Are We from True Unlearnability? (arXiv 2509.08058)"}
_PREFIX = {"MI-UE": "miue", "SAL/UD": "salud"}

# our registry names → the papers' method labels: the book's own label (miue.methods), except that the
# authors' code variant is reported against the paper's MI-UE row
PAPER_LABEL_EXCEPTIONS = {"miue-code": "MI-UE"}


class _PaperLabels(dict):
    def get(self, key, default=None):
        from .methods import label
        return PAPER_LABEL_EXCEPTIONS.get(key) or label(key)

    def __getitem__(self, key):
        return self.get(key)


METHOD_LABELS = _PaperLabels()

# our defense names → the column labels of MI-UE Tables 5 and 12 (ISS is JPEG compression at quality 10)
DEFENSE_LABELS = {"cutout": "Cutout", "cutmix": "Cutmix", "mixup": "Mixup", "ueraser": "UER", "jpeg": "ISS",
                  "op": "OP", "ava": "AVA", "d-vae": "D-VAE", "le": "LE", "at": "AT"}


def table(number: int, paper: str = "MI-UE") -> pd.DataFrame:
    """Table ``number`` of ``paper`` ('MI-UE' or 'SAL/UD') as printed, with a float column ``v``."""
    if paper not in _PREFIX:
        raise ValueError(f"paper must be one of {list(_PREFIX)}, got {paper!r}")
    files = sorted(PAPER_DIR.glob(f"{_PREFIX[paper]}_table{number:02d}_*.csv"))
    if not files:
        raise ValueError(f"no table {number} of {paper} in {PAPER_DIR}")
    df = pd.read_csv(files[0], dtype={"value": str})
    df["v"] = df["value"].astype(float)
    return df


def standard_training() -> pd.DataFrame:
    """Every method's test accuracy (%) under standard training of a ResNet-18, per dataset, with its source:
    MI-UE Table 2 first, then Table 4's ST column (AR, ENTF, GUE: CIFAR-10 only), then the SAL/UD paper's
    Table 1 (LSP, OPS, TAP, DC, on CIFAR-10/100 and ImageNet-100). Columns: method, dataset, value, source."""
    rows = []
    t2 = table(2)
    rows += [(r.method, r.dataset, r.v, "MI-UE Table 2") for r in t2.itertuples() if r.metric == "test_acc_pct"]
    t4 = table(4)
    rows += [(r.method, r.dataset, r.v, "MI-UE Table 4 (ST)") for r in t4.itertuples()
             if r.defense == "ST" and r.metric == "test_acc_pct"]
    s1 = table(1, paper="SAL/UD")
    names = {"Vanilla": "Clean", "TAP": "AP"}
    rows += [(names.get(r.method, r.method), r.dataset, r.v, "SAL/UD Table 1") for r in s1.itertuples()
             if r.metric == "test_acc_pct"]
    df = pd.DataFrame(rows, columns=["method", "dataset", "value", "source"])
    return df.drop_duplicates(["method", "dataset"], keep="first").reset_index(drop=True)


def table1() -> pd.DataFrame:
    """MI-UE Table 1 (CIFAR-10, ResNet-18, histogram sliced MI) as one row per method."""
    df = table(1)
    wide = df.pivot_table(index="method", columns="metric", values="v", sort=False)
    return wide.reindex(df["method"].drop_duplicates())


# ---------------------------------------------------------------------------------------------------------
# Recomputing the papers' own arithmetic from the printed cells ("Notes on the papers" chapter).
#
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
_META = ("paper", "table", "metric", "value", "printed", "source_line", "note", "v")
METRIC_NAMES = {"test_acc_pct": "acc", "acc_gap_pct": "acc gap", "mi": "MI", "mi_gap": "MI gap",
                "train_acc_pct": "train acc", "lp": "#LP", "ud": "UD", "ud_delta": "ΔUD"}
_EPS = 1e-9
_READ: dict[str, Path] = {}
_MINUS = "\u2212"


def _file(number: int, paper: str) -> Path:
    if paper not in _PREFIX:
        raise ValueError(f"paper must be one of {list(_PREFIX)}, got {paper!r}")
    files = sorted(PAPER_DIR.glob(f"{_PREFIX[paper]}_table{number:02d}_*.csv"))
    if not files:
        raise ValueError(f"no table {number} of {paper} in {PAPER_DIR}")
    return files[0]


def _load(number: int, paper: str = "MI-UE") -> pd.DataFrame:
    """Like ``table`` but every column as text (entity labels such as '0.1' stay as printed), with a key per
    cell, and the file remembered for ``sources()``."""
    path = _file(number, paper)
    _READ[path.name] = path
    return _read(path, f"{paper} T{number}", path.stat().st_mtime_ns).copy()


@lru_cache(maxsize=64)
def _read(path: Path, name: str, mtime_ns: int) -> pd.DataFrame:
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    df["v"] = df["value"].astype(float)
    ents = [c for c in df.columns if c not in _META]
    df["key"] = f"{name}: " + df[ents + ["metric"]].agg(" | ".join, axis=1)
    varying = [c for c in ents if df[c].nunique() > 1]
    df["label"] = df[varying].agg(" · ".join, axis=1) + " · " + df["metric"].map(METRIC_NAMES).fillna(df["metric"])
    return df


def text_claims() -> pd.DataFrame:
    """The numbers stated in the MI-UE prose (``miue_text_claims.csv``), one row per claim."""
    path = PAPER_DIR / "miue_text_claims.csv"
    _READ[path.name] = path
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def sources() -> pd.DataFrame:
    """The CSV files the checks of this module have read so far, with row counts and SHA-256 prefixes."""
    rows = [{"file": name, "rows": len(pd.read_csv(path, dtype=str)),
             "sha256": hashlib.sha256(path.read_bytes()).hexdigest()[:16]} for name, path in sorted(_READ.items())]
    return pd.DataFrame(rows, columns=["file", "rows", "sha256"])


def _one(df: pd.DataFrame, **sel) -> pd.Series:
    m = pd.Series(True, index=df.index)
    for k, val in sel.items():
        m &= df[k] == val
    hit = df[m]
    if len(hit) != 1:
        raise KeyError(f"{len(hit)} cells match {sel}")
    return hit.iloc[0]


def _has(df: pd.DataFrame, **sel) -> bool:
    m = pd.Series(True, index=df.index)
    for k, val in sel.items():
        m &= df[k] == val
    return bool(m.any())


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


_SEVERITY = ("error", "typo", "scope", "claim", "rounding", "cosmetic")


def summary(tolerance: float = 1.0) -> pd.DataFrame:
    """Every inconsistency the checks of this module find, one row each, most serious first. Severity:
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
