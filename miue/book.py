"""What every chapter repeats, in one place (d2l-style: helpers live in the library, not in notebooks).

* parameters: :func:`begin` (first cell), :func:`declare` (end of the ``parameters`` cell) and
  :func:`check_parameters` (the cell after papermill's injected one) refuse a parameter the chapter does not
  declare and check each value against its default's type, with one message;
* :func:`profile_for` builds the chapter's profile (``dataset=None`` keeps the profile's dataset; every
  override, ``None`` included, is applied and checked);
* :func:`mean_std` and :func:`fmt_mean_std`: mean ± sample std and the rule for one seed (no ± and the seed
  named), so every number says what it averages;
* :func:`setting_table`: "our setting vs the paper's", which every chapter opens with;
* :func:`provenance`: the runs behind a page as a collapsed table.
"""

from __future__ import annotations

import html

import pandas as pd

from .data import display_name
from .profiles import Profile, profile as _profile
from .stats import finite, mean_std  # noqa: F401 - book.mean_std and book.finite, as the notebooks call them

_IPYTHON = {"In", "Out", "exit", "quit", "get_ipython", "open"}


def begin(ns: dict) -> None:
    """First code cell of a chapter: remember which names exist before the parameters."""
    ns["__miue_before__"] = set(ns)


def declare(ns: dict, **optional) -> None:
    """Last line of the ``parameters`` cell: remember the declared parameters and their defaults. A parameter
    whose default is None names its other type here (``book.declare(globals(), dataset=str, methods=list)``);
    every other parameter takes its default's type."""
    before = ns.get("__miue_before__", set())
    ns["__miue_declared__"] = {k: ns[k] for k in set(ns) - before
                               if not k.startswith("_") and k not in _IPYTHON and not callable(ns[k])}
    unknown = set(optional) - set(ns["__miue_declared__"])
    if unknown:
        raise RuntimeError(f"declare: {', '.join(sorted(unknown))} is no parameter of this chapter")
    ns["__miue_optional__"] = optional


def _type_ok(default, value, optional: type | None = None) -> bool:
    if default is None:
        return value is None or optional is None or _type_ok(optional(), value)
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(default, (list, tuple)):
        return isinstance(value, (list, tuple))
    return isinstance(value, type(default))


class ParameterError(TypeError):
    """A chapter was given a parameter it does not declare, or a value of the wrong type."""


def check_parameters(ns: dict) -> dict:
    """Refuse parameters the chapter does not declare (papermill only warns) and values whose type differs
    from the default's; returns {name: value} of the declared parameters."""
    declared = ns.get("__miue_declared__")
    if declared is None:
        raise RuntimeError("call miue.book.begin(globals()) first and miue.book.declare(globals()) at the end "
                           "of the parameters cell")
    known = ns["__miue_before__"] | set(declared) | {"__miue_declared__", "__miue_optional__"}
    extra = sorted(k for k in set(ns) - known if not k.startswith("_") and k not in _IPYTHON)
    if extra:
        raise ParameterError(f"this chapter has no parameter(s) {', '.join(extra)}; its parameters are "
                             f"{', '.join(sorted(declared))}")
    optional = ns.get("__miue_optional__", {})
    for name, default in declared.items():
        if not _type_ok(default, ns[name], optional.get(name)):
            t = optional.get(name) if default is None else type(default)
            kind = "a number" if t is float else f"a {t.__name__}" + (" or None" if default is None else "")
            raise ParameterError(f"parameter {name} must be {kind}, got {ns[name]!r}")
    return {k: ns[k] for k in declared}


def check_methods(methods, need_clean: bool = True, name: str = "methods") -> list:
    """The ``methods`` parameter (or another list of methods, ``name``), checked: a list of registered method
    names, with ``clean`` (every gap is measured against it) unless ``need_clean`` is False."""
    from .experiments import CLEAN, check_method
    if not isinstance(methods, (list, tuple)) or (need_clean and CLEAN not in methods):
        need = " that includes 'clean'" if need_clean else ""
        raise ParameterError(f"parameter {name} must be a list{need}, got {methods!r}")
    for m in methods:
        check_method(m)
    return list(methods)


def check_archs(archs) -> list:
    """The ``archs`` parameter, checked: a non-empty list of :data:`miue.models.MODELS` names."""
    from .models import MODELS
    if not isinstance(archs, (list, tuple)) or not archs or not all(a in MODELS for a in archs):
        raise ParameterError(f"parameter archs must be a non-empty list of {', '.join(MODELS)}, got {archs!r}")
    return list(archs)


def profile_for(name: str, dataset: str | None = None, overrides: dict | None = None) -> Profile:
    """The chapter's profile: ``name`` with ``dataset`` (None: the profile's own) and ``overrides``."""
    if not isinstance(name, str):
        raise ParameterError(f"parameter profile must be a str, got {name!r}")
    if dataset is not None and not isinstance(dataset, str):
        raise ParameterError(f"parameter dataset must be a string or None, got {dataset!r}")
    if not isinstance(overrides or {}, dict):
        raise ParameterError(f"parameter overrides must be a dict of profile fields, got {overrides!r}")
    changes = dict(overrides or {})
    if dataset is not None:
        changes["dataset"] = dataset
    return _profile(name, **changes)


def fmt_mean_std(values, digits: int = 2, seeds=None) -> str:
    """'55.89 ± 2.03 (3 seeds)' or, for one value, '57.38 (seed 0)': every number says what it averages."""
    values = list(values)
    m, s = mean_std(values)
    if len(values) == 1:
        return f"{m:.{digits}f} (seed {seeds[0] if seeds else '?'})" if seeds is not None else f"{m:.{digits}f}"
    return f"{m:.{digits}f} ± {s:.{digits}f} ({len(values)} seeds)"


def fmt_recorded(records, seeds, digits: int = 2, metric: str = "test_acc") -> str:
    """:func:`fmt_mean_std` of ``metric`` (in %) over the seeds whose record exists (``records`` in the order of
    ``seeds``, None where not run yet), saying how many of the seeds it covers; "not run yet" when none is."""
    have = [(s, 100 * r["metrics"][metric]) for s, r in zip(seeds, records) if r is not None]
    if not have:
        return "not run yet"
    text = fmt_mean_std([v for _, v in have], digits, [s for s, _ in have])
    missing = [str(s) for s, r in zip(seeds, records) if r is None]
    return f"{text}; seed{'s' if len(missing) > 1 else ''} {', '.join(missing)} not run yet" if missing else text


# The paper's setting (MI-UE Sec. 6.1, App. E; see data/paper/ and book/07): what each chapter compares with.
PAPER_SETTING = {
    "dataset": "CIFAR-10 (also CIFAR-100, ImageNet-subset)",
    "training images": "50,000 (5,000 per class)",
    "test images": "10,000",
    "victim model": "ResNet-18, full width (512-d features)",
    "victim training": "200 epochs, SGD lr 0.5, cosine (Sec. 6.1); weight decay 1e-4 (App. E.4)",
    "MI-UE generation": "100 epochs × 10 PGD steps of 0.2/255, source lr 0.5 (Sec. 6.1, App. E.4)",
    "EM / AP": "EM: official code (20 steps of 0.8/255, until 99% train acc.); AP: 250 steps, 8 restarts",
    "budget": "ℓ∞ 8/255",
    "MI sample": "training features, about 5,000 per class; unit and bins: 100 bins (App. F), unit not stated",
}


def _feature_dim(p: Profile) -> int:
    from .models import create_model
    try:
        c, h = {"fashion-mnist": (1, 28), "digits": (1, 8)}.get(p.dataset, (3, 32))
        return create_model(p.model, 10, c, h, p.width).feature_dim
    except Exception:  # noqa: BLE001 - a descriptive table must not fail on an exotic model
        return -1


def setting_table(p: Profile, n_train: int | None = None, n_test: int | None = None, classes: int = 10) -> pd.DataFrame:
    """Our setting next to the paper's, row by row (the table each chapter opens with)."""
    from .experiments import attack_config
    mi = attack_config(p, "miue")
    em = attack_config(p, "em")
    ap = attack_config(p, "ap")
    n_tr = n_train if n_train is not None else p.n_train
    ours = {
        "dataset": display_name(p.dataset),
        "training images": "the whole split" if n_tr is None else f"{n_tr:,} ({n_tr // classes:,} per class)",
        "test images": "the whole split" if (n_test or p.n_test) is None else f"{(n_test or p.n_test):,}",
        "victim model": f"{p.model}, width {p.width:g} ({_feature_dim(p)}-d features)",
        "victim training": f"{p.victim_epochs} epochs, SGD lr {p.victim_lr:g}, cosine, weight decay "
                           f"{p.victim_weight_decay:g}, batch {p.victim_batch_size}"
                           + (", bf16 autocast" if p.precision == "bf16" else ""),
        "MI-UE generation": f"{mi['epochs']} epochs × {mi['pgd_steps']} PGD steps of {mi['step_size'] * 255:.2g}/255, "
                            f"source lr {mi['lr']:g}",
        "EM / AP": f"EM: {em['pgd_steps']} steps of {em['step_size'] * 255:.2g}/255, at most {em['max_rounds']} rounds; "
                   f"AP: {ap['iterations']} steps, {ap['restarts']} restart(s), source {ap['source_epochs']} epochs",
        "budget": f"ℓ∞ {mi['eps'] * 255:.3g}/255",
        "MI sample": f"training features, {'all' if n_tr is None else f'{n_tr // classes:,}'} per class; "
                     f"{p.mi_slices} slices, {p.mi_bins} bins; nats",
    }
    return pd.DataFrame({"ours": ours, "paper": PAPER_SETTING}).rename_axis("setting")


def show_table(df: pd.DataFrame):
    """A table as HTML with nothing cut ("…"): long settings and notes stay whole, wrapped by the page."""
    from IPython.display import HTML
    with pd.option_context("display.max_colwidth", None):
        return HTML(df.to_html(border=0, classes="miue-table"))


def provenance(runs, title: str = "Provenance") -> "object":
    """The runs behind a page as a collapsed HTML table: ``runs`` is a list of (kind, what, record)."""
    from IPython.display import HTML
    rows, seen = [], set()
    for kind, what, rec in runs:
        if rec["hash"] in seen:
            continue
        seen.add(rec["hash"])
        pv = rec["provenance"]
        rows.append({"run": f"{kind}/{rec['hash']}", "what": what,
                     "device": f"{pv['device']} ({pv['device_name']})", "threads": pv.get("torch_threads", ""),
                     "commit": (pv.get("git_commit") or "")[:10],
                     "seed": "" if pv.get("seed") is None else pv["seed"],
                     "started": pv["started"], "wall (s)": round(pv["wall_time_s"], 1)})
    df = pd.DataFrame(rows)
    total = df["wall (s)"].sum() / 60 if len(df) else 0.0
    summary = f"{title}: {len(df)} runs, {total:.1f} min of compute in all (click to show)"
    table = df.to_html(index=False, border=0, classes="provenance") if len(df) else "<p>no runs</p>"
    return HTML(f"<details><summary>{html.escape(summary)}</summary>\n{table}\n</details>")


def code_commit(*paths: str) -> tuple[str, bool]:
    """(the last commit that changed ``paths``, whether they differ from it now): the code behind a page that
    reads no run record (``"unknown"`` outside a git checkout)."""
    import subprocess
    from pathlib import Path
    root = Path(__file__).resolve().parent.parent

    def git(*args) -> str:
        try:
            return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10,
                                  check=False).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""
    commit = git("log", "-1", "--format=%H", "--", *paths) or "unknown"
    return commit, bool(git("status", "--porcelain", "--", *paths))


def collapsed(df: pd.DataFrame, title: str = "Provenance"):
    """Any table as a collapsed HTML block (provenance, long audits): a summary line, the table on click."""
    from IPython.display import HTML
    summary = f"{title}: {len(df)} rows (click to show)"
    return HTML(f"<details><summary>{html.escape(summary)}</summary>\n{df.to_html(border=0)}\n</details>")


class CaptionNumber(str):
    """"Figure 3.1": a string to cite in later text that shows nothing when it ends a cell (no stray
    ``'Figure 3.1'`` result under the caption)."""

    def _ipython_display_(self):
        pass


class Captions:
    """Numbered captions for one chapter: ``cap = Captions(3)``; ``cap.figure("...")`` under a figure prints
    "**Figure 3.1.** ..." and ``cap.table("...")`` above a table "**Table 3.1.** ...". Numbers count up in
    the order the cells run, so they follow the page."""

    def __init__(self, chapter):
        self.chapter = chapter
        self.counts = {"Figure": 0, "Table": 0}

    def _show(self, kind: str, text: str) -> "CaptionNumber":
        from IPython.display import Markdown, display
        self.counts[kind] += 1
        number = CaptionNumber(f"{kind} {self.chapter}.{self.counts[kind]}")
        display(Markdown(f"**{number}.** {text}"))
        return number

    def figure(self, text: str) -> str:
        return self._show("Figure", text)

    def table(self, text: str) -> str:
        return self._show("Table", text)


