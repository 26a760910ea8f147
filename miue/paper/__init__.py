"""The papers' reference numbers, loaded from the tidy CSVs in ``data/paper/`` (``tables``), and the
consistency checks that recompute what the papers' own tables allow (the "Notes on the papers" chapter):
the tables against themselves (``checks``), the prose against the tables (``prose``), and ``summary`` of every
inconsistency they find (``findings``).

``table(1)`` gives MI-UE Table 1 as a long DataFrame; ``table(1, paper="SAL/UD")`` the seed paper's.
The checks: ``gap_checks``, ``average_checks``, ``cross_table_checks``, ``spearman_checks``,
``monotonicity_checks``, ``ud_checks``, ``printed_token_checks``, ``precision_checks``, ``claim_checks``, and
``summary``; ``sources`` lists the CSV files read, with SHA-256 prefixes.
"""

from ..stats import spearman  # noqa: F401 - paper.spearman, as the notebooks call it
from .checks import (CLEAN_MINUS_METHOD, METHOD_MINUS_CLEAN, OK_VERDICTS, UD_DELTA, UD_OWN, UD_R18, average_checks,
                     cross_table_checks, decimals, gap_checks, precision_checks, printed_token_checks, ud_checks)
from .findings import summary
from .prose import SALUD_CLAIMS, claim_checks, monotonicity_checks, spearman_checks
from .tables import (CITATION, DEFENSE_LABELS, METHOD_LABELS, METRIC_NAMES, PAPER_DIR, PAPER_LABEL_EXCEPTIONS,
                     sources, standard_training, table, table1, text_claims)

__all__ = ["CITATION", "CLEAN_MINUS_METHOD", "DEFENSE_LABELS", "METHOD_LABELS", "METHOD_MINUS_CLEAN", "METRIC_NAMES",
           "OK_VERDICTS", "PAPER_DIR", "PAPER_LABEL_EXCEPTIONS", "SALUD_CLAIMS", "UD_DELTA", "UD_OWN", "UD_R18",
           "average_checks", "claim_checks", "cross_table_checks", "decimals", "gap_checks", "monotonicity_checks",
           "precision_checks", "printed_token_checks", "sources", "spearman", "spearman_checks", "standard_training",
           "summary", "table", "table1", "text_claims", "ud_checks"]
