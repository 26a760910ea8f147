"""The SAL/UD paper's tables from stored SAL records: Table 1/3 columns (:func:`ud_table`) and Table 2
(:func:`ud_defense_table`)."""

from __future__ import annotations

from .distance import _matrix, learnable_parameters, learnable_threshold, unlearnable_distance
from .run import sal_history


def ud_table(records: dict, clean: dict, reference_lp: float | None = None):
    """The paper's Table 1/3 columns for ``records`` (method → sal record) against the ``clean`` sal record.

    β (Eq. 4) comes from the clean record's SAL across its measured epochs; #LP is the mean number of layers
    above β per measured epoch; UD (Eq. 5) divides by the clean #LP of the same architecture. ``reference_lp``
    (e.g. the ResNet-18 clean #LP) adds ``ud_reference`` = #LP / reference_lp: the convention the paper's
    Table 3 used, inconsistently, for its TAP and OPS columns. Also given: the same count in weights
    (``lp_weights``, ``ud_weights``: learnable layers weighted by their number of weights). Returns a DataFrame
    indexed by method, with the clean model as row ``"clean"``.
    """
    import pandas as pd
    for name, rec in [("clean", clean), *records.items()]:
        if not isinstance(rec, dict) or rec.get("kind") != "sal" or not sal_history(rec):
            raise ValueError(f"record {name!r} is not a sal record with SAL history (from sal_run)")
    if any(r["config"]["victim"]["model"] != clean["config"]["victim"]["model"] for r in records.values()):
        raise ValueError("UD compares models of one architecture: every record must have the clean record's model")
    beta = learnable_threshold(sal_history(clean))
    sizes = clean["metrics"]["layer_params"]
    lp_c = learnable_parameters(sal_history(clean), beta)
    lw_c = learnable_parameters(sal_history(clean), beta, sizes)
    rows = []
    for m, rec in {"clean": clean, **{k: v for k, v in records.items() if v is not clean}}.items():
        hist = sal_history(rec)
        lp, lw = learnable_parameters(hist, beta), learnable_parameters(hist, beta, sizes)
        row = {"method": m, "model": rec["config"]["victim"]["model"], "test_acc": 100 * rec["metrics"]["test_acc"],
               "beta": beta, "lp": lp, "ud": unlearnable_distance(lp, lp_c) if lp_c > 0 else float("nan"),
               "lp_weights": lw, "ud_weights": lw / lw_c if lw_c > 0 else float("nan"),
               "layers": len(hist[0]), "epochs": len(hist), "mean_sal": float(_matrix(hist).mean())}
        if reference_lp is not None:
            row["ud_reference"] = lp / reference_lp if reference_lp > 0 else float("nan")
        rows.append(row)
    return pd.DataFrame(rows).set_index("method")


def ud_defense_table(defended: dict, undefended: dict, clean: dict):
    """SAL/UD Table 2: UD of victims trained under defenses, against the undefended clean model.

    ``defended`` maps (method, defense name) → sal record of a victim trained under that defense;
    ``undefended`` maps method → sal record without a defense (Table 1's runs); ``clean`` is the undefended clean
    record. As in the paper (its Table 2 divides every #LP by Table 1's vanilla 3.32), β (Eq. 4) and the #LP
    that UD (Eq. 5) divides by both come from ``clean``, so a defended clean victim can have UD above 1.
    ``ud_delta`` is the change from the method's undefended UD (the paper's red and blue ± values). Returns a
    DataFrame with one row per (method, defense), in the order given.
    """
    import pandas as pd
    if not defended:
        raise ValueError("defended is empty: pass (method, defense) → sal record of victims trained under defenses")
    keys = {f"{m}\x1f{d}": rec for (m, d), rec in defended.items()}
    keys.update({f"{m}\x1f": rec for m, rec in undefended.items()})
    tab = ud_table(keys, clean)
    rows = []
    for m, d in defended:
        row, base = tab.loc[f"{m}\x1f{d}"], f"{m}\x1f" if m != "clean" else "clean"
        before = tab.loc[base, "ud"] if base in tab.index else float("nan")
        rows.append({"method": m, "defense": d, "test_acc": row["test_acc"], "lp": row["lp"], "ud": row["ud"],
                     "ud_delta": row["ud"] - before, "ud_weights": row["ud_weights"], "beta": row["beta"]})
    return pd.DataFrame(rows)
