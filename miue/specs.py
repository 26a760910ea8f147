"""Runs as values: the frozen spec of every expensive step, built once from a profile, hashed into its address.

A :class:`PoisonSpec` says which attack, with which settings, on which training subset; a :class:`VictimSpec`
holds its poison's spec (None for clean data), the victim's architecture and recipe, its seed and an optional
defense; an estimate (:class:`MISpec`, :class:`CovarianceSpec`) holds its victim's spec. ``spec.config()``
is the dict stored in the record and hashed into the address (:func:`miue.runs.config_hash`); settings added
after records exist are left out at their default (:func:`miue.settings.address`), so adding one never
moves an existing record. ``spec.compute`` names the function that computes the run (most live in
:mod:`miue.experiments`), and :func:`miue.experiments.run` reads or computes any spec; a chapter can list its specs
without computing anything.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar, Optional

from . import settings
from .runs import config_hash
from .train import Recipe


class Spec:
    kind: ClassVar[str]

    def config(self) -> dict:
        raise NotImplementedError

    def compute(self, ctx, store, progress: bool, device) -> dict:
        """This run's record body (metrics, history, artifacts saved through ``ctx``), computed when the store
        lacks it; :func:`miue.experiments.run` reads the record or calls this. Each kind names its function."""
        raise NotImplementedError(f"{type(self).__name__} names no computation")

    @property
    def hash(self) -> str:
        return config_hash(self.kind, self.config())

    @property
    def address(self) -> str:
        """``kind/hash``: where the record lives under the store's root."""
        return f"{self.kind}/{self.hash}"

    def dependencies(self) -> list["Spec"]:
        """The specs this run reads (its poison, its victim …), nearest first."""
        return []

    def describe(self) -> str:
        return self.address


@dataclass(frozen=True)
class PoisonSpec(Spec):
    """A poison: ``method`` with its full ``attack`` config on a stratified training subset.

    ``classes`` (one-class or class-wise poisoning, App. G.1) and ``fraction`` (partial poisoning) restrict
    which images keep their perturbation; the attack always generates on the whole subset. ``fraction`` draws
    that share of the whole set at random (seeded), then keeps those in ``classes``: within a class the
    poisoned share is about, not exactly, ``fraction``.

    ``after_epoch`` k ≥ 1 is a snapshot: δ as published after generation epoch k of the same run (the finished
    run's own schedule, not a shorter run's), for the methods whose δ is a poison after every epoch (MI-UE). All
    snapshots of a run come from one generation (Table 9's per-epoch curve)."""

    method: str
    attack: object  # the attack's frozen Config
    dataset: str
    n_train: Optional[int]
    subset_seed: int = 0
    classes: Optional[tuple] = None
    fraction: float = 1.0
    after_epoch: int = 0
    kind: ClassVar[str] = "poison"

    def __post_init__(self):
        import numbers
        if self.classes is not None:
            c = self.classes
            if isinstance(c, (str, bytes)) or not hasattr(c, "__iter__") or not c or not all(
                    isinstance(i, numbers.Integral) and not isinstance(i, bool) and i >= 0 for i in c):
                raise ValueError(f"poison classes must be a non-empty list of class indices (integers >= 0), "
                                 f"got {c!r}")
            object.__setattr__(self, "classes", tuple(sorted({int(i) for i in c})))
        f = self.fraction
        if isinstance(f, bool) or not isinstance(f, numbers.Real) or not 0 < float(f) <= 1:
            raise ValueError(f"poison fraction must be a number in (0, 1], got {f!r}")
        object.__setattr__(self, "fraction", float(f))
        k = self.after_epoch
        if k:
            from .attacks import ATTACKS
            epochs = getattr(self.attack, "epochs", None)
            if not getattr(ATTACKS.get(self.method), "snapshots", False):
                raise ValueError(f"poison after_epoch: {self.method} keeps no per-epoch snapshots (only "
                                 f"{', '.join(n for n, a in ATTACKS.items() if a.snapshots)} do); leave after_epoch 0")
            if isinstance(k, bool) or not isinstance(k, numbers.Integral) or not 1 <= k <= epochs:
                raise ValueError(f"poison after_epoch must be an epoch of the run, 1 to {epochs} (0: the finished "
                                 f"poison), got {k!r}")

    def compute(self, ctx, store, progress, device) -> dict:
        from .experiments import compute_poison
        return compute_poison(self, ctx, store, progress, device)

    def config(self) -> dict:
        cfg = {"dataset": self.dataset, "n_train": self.n_train, "subset_seed": self.subset_seed,
               "method": self.method, "attack": settings.address(self.attack)}
        if self.classes is not None:
            cfg["classes"] = list(self.classes)
        if self.fraction != 1.0:
            cfg["fraction"] = float(self.fraction)
        if self.after_epoch:
            cfg["after_epoch"] = int(self.after_epoch)
        return cfg

    @property
    def restricted(self) -> bool:
        return self.classes is not None or self.fraction != 1.0

    def whole(self) -> "PoisonSpec":
        """The same poison on every image: what a one-class or partial poison is cut from (App. G.1)."""
        return dataclasses.replace(self, classes=None, fraction=1.0)

    def finished(self) -> "PoisonSpec":
        """The run a snapshot is taken from: the same spec after its last epoch."""
        return dataclasses.replace(self, after_epoch=0)

    def dependencies(self) -> list["Spec"]:
        # a snapshot's run is computed by the snapshot itself, which asks it to keep its per-epoch snapshots
        return [self.whole()] if self.restricted else []

    def describe(self) -> str:
        extra = "" if not self.after_epoch else f", after epoch {self.after_epoch}"
        extra += "" if self.classes is None else f", classes {list(self.classes)}"
        extra += "" if self.fraction == 1.0 else f", {self.fraction:.0%} of images"
        return f"poison {self.method}{extra}"


@dataclass(frozen=True)
class VictimSpec(Spec):
    """A victim trained on the (poisoned, possibly defended) training subset and tested on clean test data."""

    poison: Optional[PoisonSpec]
    method: str
    dataset: str
    n_train: Optional[int]
    n_test: Optional[int]
    model: str
    width: float
    recipe: Recipe
    seed: int
    defense: Optional[tuple] = None  # (name, ((setting, value), ...)) — hashable; see defense_dict
    contrastive: Optional[tuple] = None  # SimCLR settings ((setting, value), ...): a contrastive victim (Table 20)
    kind: ClassVar[str] = "victim"

    @property
    def defense_dict(self) -> dict | None:
        return None if self.defense is None else {"name": self.defense[0], **dict(self.defense[1])}

    def compute(self, ctx, store, progress, device) -> dict:
        from .experiments import compute_victim
        return compute_victim(self, ctx, store, progress, device)

    def config(self) -> dict:
        cfg = {"poison": None if self.poison is None else self.poison.config(), "dataset": self.dataset,
               "n_train": self.n_train, "n_test": self.n_test, "model": self.model, "width": self.width,
               "recipe": settings.address(self.recipe), "seed": self.seed}
        if self.defense is not None:
            cfg["defense"] = self.defense_dict
        if self.contrastive is not None:
            cfg["contrastive"] = dict(self.contrastive)
        return cfg

    def purifier(self) -> "PurifierSpec | None":
        """The fitted purifier this victim's defense needs (None unless the defense is fitted)."""
        if self.defense is None:
            return None
        from .defenses import create_defense
        if not create_defense(self.defense_dict).fitted:
            return None
        return PurifierSpec(self.poison, self.method, self.dataset, self.n_train, self.defense,
                            int(dict(self.defense[1]).get("seed", 0)))  # the defense's seed, not the victim's

    def dependencies(self):
        p = self.purifier()
        return ([] if p is None else [p]) + ([] if self.poison is None else [self.poison])

    def describe(self) -> str:
        d = "" if self.defense is None else f" + {self.defense[0]}"
        kind = "SimCLR victim" if self.contrastive is not None else "victim"
        size = "all" if self.n_train is None else f"{self.n_train:,}"
        bf16 = ", bf16" if self.recipe.precision != "auto" else ""
        return (f"{kind} {self.model} ×{self.width:g} on {self.method}{d}, seed {self.seed} ({self.dataset}, {size} "
                f"images, {self.recipe.epochs} epochs{bf16})")


@dataclass(frozen=True)
class PurifierSpec(Spec):
    """A fitted data-side defense learned on a published (poisoned) training set: its state is an artifact."""

    poison: Optional[PoisonSpec]
    method: str
    dataset: str
    n_train: Optional[int]
    defense: tuple  # (name, ((setting, value), ...))
    seed: int = 0
    kind: ClassVar[str] = "purifier"

    def compute(self, ctx, store, progress, device) -> dict:
        from .experiments import compute_purifier
        return compute_purifier(self, ctx, store, progress, device)

    def config(self) -> dict:
        return {"poison": None if self.poison is None else self.poison.config(), "dataset": self.dataset,
                "n_train": self.n_train, "defense": {"name": self.defense[0], **dict(self.defense[1])},
                "seed": self.seed}

    def denoiser(self) -> Optional["DenoiserSpec"]:
        """The clean-data diffusion model this purifier needs (AVA, LE), else None."""
        from .defenses import create_defense
        d = create_defense({"name": self.defense[0], **dict(self.defense[1])})
        if not getattr(d, "needs_denoiser", False):
            return None
        s = d.denoiser_settings()
        return DenoiserSpec(self.dataset, self.n_train, s.images, s.steps, s.batch_size, s.lr, s.width,
                            s.label_dropout, s.seed)

    def dependencies(self):
        den = self.denoiser()
        return ([] if den is None else [den]) + ([] if self.poison is None else [self.poison])

    def describe(self) -> str:
        return f"purifier {self.defense[0]} fitted on {self.method}"


@dataclass(frozen=True)
class DenoiserSpec(Spec):
    """The defender's denoising diffusion model (AVA, LE): trained on ``images`` clean images of ``dataset``'s
    training split held out from the published subset of ``exclude_n_train`` images (see
    :mod:`miue.defenses.diffusion`)."""

    dataset: str
    exclude_n_train: Optional[int]
    images: int
    steps: int
    batch_size: int
    lr: float
    width: int
    label_dropout: float
    seed: int = 0
    kind: ClassVar[str] = "denoiser"

    def compute(self, ctx, store, progress, device) -> dict:
        from .experiments import compute_denoiser
        return compute_denoiser(self, ctx, store, progress, device)

    def config(self) -> dict:
        return {"dataset": self.dataset, "exclude_n_train": self.exclude_n_train, "images": self.images,
                "steps": self.steps, "batch_size": self.batch_size, "lr": self.lr, "width": self.width,
                "label_dropout": self.label_dropout, "seed": self.seed}

    def describe(self) -> str:
        return f"denoiser ({self.images} held-out clean {self.dataset} images, {self.steps} steps)"


@dataclass(frozen=True)
class MISpec(Spec):
    """Sliced, class-conditional MI I(g(X); g(X')) of a victim's features (App. F), with its shuffled baseline."""

    victim: VictimSpec
    estimator: str = "histogram"
    n_slices: int = 2000
    bins: Optional[int] = 100
    shared_directions: bool = False
    estimator_settings: Optional[tuple] = None
    seed: int = 0
    kind: ClassVar[str] = "mi"

    def compute(self, ctx, store, progress, device) -> dict:
        from .experiments import compute_mi
        return compute_mi(self, ctx, store, progress, device)

    def config(self) -> dict:
        cfg = {"victim": self.victim.config(), "estimator": self.estimator, "sliced": True,
               "n_slices": self.n_slices, "bins": self.bins, "shared_directions": bool(self.shared_directions),
               "class_conditional": True, "features": "train", "seed": self.seed}
        if self.estimator_settings is not None:
            cfg["settings"] = dict(self.estimator_settings)
        return cfg

    def dependencies(self):
        return [self.victim, *self.victim.dependencies()]

    def describe(self) -> str:
        how = self.estimator + (", shared directions" if self.shared_directions else "")
        return f"MI ({how}) of {self.victim.describe()}"


@dataclass(frozen=True)
class CovarianceSpec(Spec):
    """Intra-class covariance of a victim's features (Theorem 5.1, Fig. 3)."""

    victim: VictimSpec
    ridge: float
    kind: ClassVar[str] = "covariance"

    def compute(self, ctx, store, progress, device) -> dict:
        from .experiments import compute_covariance
        return compute_covariance(self, ctx, store, progress, device)

    def config(self) -> dict:
        return {"victim": self.victim.config(), "statistic": "class_covariance", "features": "train",
                "ridge": self.ridge}

    def dependencies(self):
        return [self.victim, *self.victim.dependencies()]


@dataclass(frozen=True)
class SeparabilitySpec(Spec):
    """Linear separability of a method's noises or poisoned set (App. G.5, Table 21)."""

    poison: Optional[PoisonSpec]
    method: str
    dataset: str
    n_train: Optional[int]
    target: str
    recipe: Recipe
    kind: ClassVar[str] = "separability"

    def compute(self, ctx, store, progress, device) -> dict:
        from .experiments import compute_separability
        return compute_separability(self, ctx, store, progress, device)

    def config(self) -> dict:
        return {"poison": None if self.poison is None else self.poison.config(), "dataset": self.dataset,
                "n_train": self.n_train, "target": self.target, "model": "linear",
                "recipe": settings.address(self.recipe), "seed": 0}

    def dependencies(self):
        return [] if self.poison is None else [self.poison]


def freeze(d: dict | None) -> tuple | None:
    """A settings dict as a hashable, ordered tuple (for spec fields)."""
    return None if d is None else tuple(sorted(d.items()))


def replace(spec, **changes):
    return dataclasses.replace(spec, **changes)
