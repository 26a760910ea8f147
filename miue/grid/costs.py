"""The cost model: a run's seconds on the recording device (2 CPU cores), recorded, or estimated from the records
of its class scaled by its unit of work; what regenerating the cached inputs a run reads costs; and how close
the estimates come."""

from __future__ import annotations

import statistics

from ..data import SIDES, TRAIN_SIZES as SPLIT_SIZES
from ..runs import RunStore, compute_seconds

PIXELS = {name: side * side for name, side in SIDES.items()}


def _work(config: dict, kind: str) -> tuple[str, float] | None:
    """(class of run, units of work) of a config: images × epochs × width² × pixels for a victim; the
    method's passes per image (:meth:`miue.attacks.base.Attack.work`) × width² × pixels for a poison (one cut
    from a whole-set poison is a class of its own, next to free beside it); for a SAL run its victim's work,
    at the rate of the recorded SAL runs of that architecture; images × pixels × epochs for a purifier,
    steps × batch × width² × pixels for a denoiser, images × slices for an MI estimate (the victim whose
    features it reads may need computing too: not counted)."""
    n = config.get("n_train") or SPLIT_SIZES.get(config.get("dataset"), 0)
    px = PIXELS.get(config.get("dataset"), 32 * 32)
    if kind == "victim":
        cost = 1.0
        if config.get("defense"):
            from ..defenses import create_defense
            cost = create_defense(config["defense"]).relative_cost
        return (f"victim/{config['model']}",
                n * config["recipe"]["epochs"] * config.get("width", 1.0) ** 2 * px * cost)
    if kind == "purifier":  # its fitting and the purification of every image
        d = config["defense"]
        return f"purifier/{d['name']}", n * px * d.get("epochs", 1)
    if kind == "denoiser":
        return "denoiser", config["steps"] * config["batch_size"] * config.get("width", 1) ** 2 * px
    if kind == "mi":
        v = config["victim"]
        m = v.get("n_train") or SPLIT_SIZES.get(v.get("dataset"), 0)
        return f"mi/{config['estimator']}", m * config.get("n_slices", 1)
    if kind == "sal":
        v = _work(config["victim"], "victim")
        return None if v is None else (f"sal/{config['victim']['model']}", v[1])
    if kind == "poison":
        a = config["attack"]
        if config.get("classes") is not None or config.get("fraction", 1.0) != 1.0:
            return "poison/cut", n * px  # cut from its whole-set poison, a run of its own: loading and masking
        from ..attacks import ATTACKS
        attack = ATTACKS.get(config["method"])
        units = attack.work(a, n) if attack else n * a.get("epochs", 1) * (1 + a.get("pgd_steps", 0))
        return f"poison/{config['method']}", units * a.get("width", 1.0) ** 2 * px
    return None


NEAR_RECORDS = 3  # records of the same shape that an estimate prefers to all of its kind's


def _shape(config: dict, kind: str) -> tuple:
    """What makes two runs of one class the same size: training images, width (for a victim also whether it
    runs a defense, and its epochs; for an MI estimate its victim's images and the slices), then the dataset
    and the precision, last, so that :func:`_scaled` can fall back to the records of the same dataset and
    precision at any size (a CIFAR-10 victim in bf16 is not costed at a Fashion-MNIST float32 rate)."""
    if kind == "mi":
        v = config["victim"]
        return v.get("n_train"), config.get("n_slices"), v.get("dataset"), _precision(v["recipe"])
    if kind == "victim":
        return (config.get("n_train"), config.get("width", 1.0), bool(config.get("defense")),
                config["recipe"]["epochs"], config.get("dataset"), _precision(config["recipe"]))
    if kind == "poison":
        return (config.get("n_train"), config["attack"].get("width", 1.0), config.get("dataset"),
                _precision(config["attack"]))
    return (kind,)


def _precision(settings: dict) -> str:
    return settings.get("precision", "auto")


def estimate_seconds(spec, store: RunStore, _rates: dict | None = None) -> tuple[float | None, str]:
    """(seconds, how) for ``spec``: its recorded compute time (:func:`miue.runs.compute_seconds`), or an
    estimate from the records of the same kind and method in ``store`` scaled by its unit of work
    (:func:`_work`), from the records of the same size (:func:`_shape`) where there are at least
    :data:`NEAR_RECORDS`, else from all (None when there is nothing to scale); :func:`estimate_errors` says
    how close such estimates come.

    A run recorded on another device (a lent GPU) takes the median time of its measured regenerations on a
    CPU (:meth:`miue.runs.RunStore.regenerations`) where there are any, else it is estimated as if missing, so
    that the seconds are always the recording device's (2 CPU cores); ``how`` then starts with "recorded" too."""
    rec = store.lookup(spec)
    elsewhere = None
    if rec is not None:
        device = rec["provenance"].get("device", "cpu")
        if device == "cpu":
            return compute_seconds(rec), "recorded"
        elsewhere = f"recorded on {device} in {compute_seconds(rec):.0f} s"
        here = _regenerated_seconds(store, rec)
        if here:
            return statistics.median(here), f"{elsewhere}; regenerated on the CPU in {statistics.median(here):.0f} s"
    if spec.config().get("after_epoch"):  # read from its run's cache; the run itself is listed on its own
        return 0.0, "a snapshot of its run"
    w = _work(spec.config(), spec.kind)
    if w is None:
        return (None, elsewhere) if elsewhere else (None, "no estimate")
    per_unit = _rates_of(w[0], store, _rates if _rates is not None else {})
    if not per_unit:
        return (None, elsewhere) if elsewhere else (None, "no estimate")
    sec, how = _scaled(per_unit, _shape(spec.config(), spec.kind), w[1])
    return sec, (f"{elsewhere}; " if elsewhere else "") + how


def _rates_of(cls: str, store: RunStore, rates: dict) -> list:
    """(seconds per unit of work, shape, hash) of every CPU record of class ``cls`` (kind and method) and of
    every record made elsewhere that was regenerated on a CPU (its median regeneration), kept in ``rates``; a
    snapshot's record is left out (its time is its run's, or nothing)."""
    if cls not in rates:
        rates[cls] = []
        for r in store.records(cls.split("/")[0]):
            if r["config"].get("after_epoch"):
                continue
            rw = _work(r["config"], r["kind"])
            if not (rw and rw[0] == cls and rw[1] > 0):
                continue
            cpu = [compute_seconds(r)] if r["provenance"].get("device", "cpu") == "cpu" else \
                _regenerated_seconds(store, r)
            if cpu:
                rates[cls].append((statistics.median(cpu) / rw[1], _shape(r["config"], r["kind"]), r["hash"]))
    return rates[cls]


def _regenerated_seconds(store: RunStore, record: dict) -> list:
    """The compute time of each measured regeneration of ``record``'s run on a CPU (2 threads or not, as
    recorded; a regeneration on a GPU says nothing about the CPU)."""
    return [compute_seconds({"provenance": g}) for g in store.regenerations(record["kind"], record["hash"])
            if str(g.get("device", "cpu")).startswith("cpu") and g.get("wall_time_s") is not None]


def _scaled(per_unit: list, shape: tuple, units: float) -> tuple[float, str]:
    """The median rate × ``units``: the rate per unit is not constant across sizes and widths (per-epoch test
    passes, caches, matrix shapes; a narrow network's time is mostly overhead, not its width² FLOPs), so the
    records of the same shape decide where there are at least :data:`NEAR_RECORDS` of them, else those of the
    same shape at any training-set size (the same width, dataset, defense, epochs and precision: a shape's
    first field is its training images), else the fewer records of either, else those of the same dataset
    and precision (a shape's last two fields), else all. A single record of the very run's shape beats many
    of other widths: a narrow network's time is mostly overhead, so width² scaling runs high (a CIFAR victim
    at width 1/4 was estimated at 70.7 min from one at 1/8; it took 9.4)."""
    same, width = (shape, " of the same size"), (shape[1:], " of the same width (any size)")
    levels = [(*same, NEAR_RECORDS), (*width, NEAR_RECORDS), (*same, 1), (*width, 1)]
    if len(shape) > 2:
        levels.append((shape[-2:], f" on {shape[-2]} at {shape[-1]} precision (any size or width)", 1))
    for level, which, enough in levels:
        near = [u for u, s, _ in per_unit if s[len(s) - len(level):] == level and len(s) == len(shape)]
        if len(near) >= enough:
            return statistics.median(near) * units, f"estimated from {len(near)} records{which}"
    return statistics.median([u for u, _, _ in per_unit]) * units, f"estimated from {len(per_unit)} records"


def estimate_errors(store: RunStore | None = None, kinds=("victim", "poison")):
    """How close :func:`estimate_seconds` comes: each CPU record of ``kinds`` estimated from the other records
    of its class (leave one out) against its recorded compute time. Per class (kind and method or
    architecture): records, the median and worst ratio estimate/recorded, and the share within 1.5× either
    way. The spread is the estimator's and the recordings' (2 cores shared with other work while recording)."""
    import pandas as pd
    store = store or RunStore()
    rates: dict = {}
    ratios: dict = {}
    for kind in kinds:
        for r in store.records(kind):
            w = _work(r["config"], kind)
            if w is None or w[1] <= 0 or r["config"].get("after_epoch") or \
                    r["provenance"].get("device", "cpu") != "cpu" or not compute_seconds(r):
                continue
            others = [u for u in _rates_of(w[0], store, rates) if u[2] != r["hash"]]
            if others:
                est = _scaled(others, _shape(r["config"], kind), w[1])[0]
                ratios.setdefault(w[0], []).append(est / compute_seconds(r))
    rows = []
    for cls, rs in sorted(ratios.items()):
        worst = max(rs, key=lambda x: max(x, 1 / x)) if rs else float("nan")
        rows.append({"class": cls, "records": len(rs), "median estimate / recorded": round(statistics.median(rs), 2),
                     "worst": round(worst, 2), "within 1.5x": round(sum(1 / 1.5 <= x <= 1.5 for x in rs) / len(rs), 2)})
    return pd.DataFrame(rows, columns=["class", "records", "median estimate / recorded", "worst", "within 1.5x"]
                        ).set_index("class")


def _artifacts_missing(kind: str, record: dict, store: RunStore) -> bool:
    names = record.get("artifacts") or {}
    return bool(names) and not all(store.artifact_path(kind, record["hash"], n).is_file() for n in names)


def regeneration_seconds(spec, store: RunStore, _rates: dict | None = None, _seen: set | None = None,
                         fresh_clone: bool = False) -> float:
    """Seconds to regenerate what ``spec`` reads but the cache lacks: every dependency (recursively) that has
    a record but not its artifacts (a fresh clone, a lost cache, a run made on another machine), at its cost
    on the recording CPU (:func:`estimate_seconds`). A dependency without a record is a run of its own.
    ``_seen`` (shared across a chapter) counts each dependency once. ``fresh_clone``: as if the cache were
    empty (what the published book quotes: the same on every machine)."""
    seen = set() if _seen is None else _seen
    rates = _rates if _rates is not None else {}
    total = 0.0
    for d in spec.dependencies():
        if d.address in seen:
            continue
        seen.add(d.address)
        rec = store.lookup(d)
        if rec is not None and (fresh_clone or _artifacts_missing(d.kind, rec, store)):
            total += ((estimate_seconds(d, store, rates)[0] or 0.0)
                      + regeneration_seconds(d, store, rates, seen, fresh_clone))
    return total
