"""The papers' reference numbers, loaded from the tidy CSVs in ``data/paper/`` (copied from the
transcriptions in ``shared/paper/tables``; every value traces to a source line of the paper).

``table(1)`` gives MI-UE Table 1 as a long DataFrame; ``table(1, paper="SAL/UD")`` the seed paper's.
These are facts quoted from the papers, never measurements of this code.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

PAPER_DIR = Path(__file__).resolve().parent.parent / "data" / "paper"
CITATION = {"MI-UE": "Why Do Unlearnable Examples Work: A Novel Perspective of Mutual Information (ICLR 2026)",
            "SAL/UD": "How Far Are We from True Unlearnability? (arXiv 2509.08058)"}
_PREFIX = {"MI-UE": "miue", "SAL/UD": "salud"}

# our registry names → the papers' method labels
METHOD_LABELS = {"clean": "Clean", "random": "Random", "em": "EM", "ap": "AP", "miue": "MI-UE",
                 "miue-code": "MI-UE"}


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


def table1() -> pd.DataFrame:
    """MI-UE Table 1 (CIFAR-10, ResNet-18, histogram sliced MI) as one row per method."""
    df = table(1)
    wide = df.pivot_table(index="method", columns="metric", values="v", sort=False)
    return wide.reindex(df["method"].drop_duplicates())
