"""The papers' reference numbers, loaded from the tidy CSVs in ``data/paper/`` (copied from the
transcriptions in ``shared/paper/tables``; every value traces to a source line of the paper).

``table(1)`` gives MI-UE Table 1 as a long DataFrame; ``table(1, paper="SAL/UD")`` the seed paper's.
These are facts quoted from the papers, never measurements of this code. ``_load`` is the checks' reader
(every column as text, a key and a label per cell); ``sources`` lists the CSV files read, with SHA-256 prefixes.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

import pandas as pd

PAPER_DIR = Path(__file__).resolve().parent.parent.parent / "data" / "paper"
CITATION = {"MI-UE": "Why Do Unlearnable Examples Work: A Novel Perspective of Mutual Information (ICLR 2026)",
            "SAL/UD": "How Far Are We from True Unlearnability? (arXiv 2509.08058)"}
_PREFIX = {"MI-UE": "miue", "SAL/UD": "salud"}

# our registry names → the papers' method labels: the book's own label (miue.methods), except that the
# authors' code variant is reported against the paper's MI-UE row
PAPER_LABEL_EXCEPTIONS = {"miue-code": "MI-UE"}


class _PaperLabels(dict):
    def get(self, key, default=None):
        from ..methods import label
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


_META = ("paper", "table", "metric", "value", "printed", "source_line", "note", "v")
METRIC_NAMES = {"test_acc_pct": "acc", "acc_gap_pct": "acc gap", "mi": "MI", "mi_gap": "MI gap",
                "train_acc_pct": "train acc", "lp": "#LP", "ud": "UD", "ud_delta": "ΔUD"}
_READ: dict[str, Path] = {}


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
    """The CSV files the checks of ``miue.paper`` have read so far, with row counts and SHA-256 prefixes."""
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
