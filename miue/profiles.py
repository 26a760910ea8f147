"""Profiles: the scale of every experiment as data (smoke, cpu, full, cifar, gpu, paper), overridable field by field.

``profile("cpu", dataset="cifar10", seeds=[0])`` returns a frozen :class:`Profile`; unknown fields and
values of the wrong type are rejected with one message that names the valid fields.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field

from .settings import SettingError, coerce


# Study sizes of the estimator validation (repeats are independent columns estimated at once, vectorized).
_MI_STUDY = {
    "smoke": {"ns": [300], "rhos": [0.0, 0.9], "repeats": 4, "mine_repeats": 1, "dims": [1, 16],
              "sliced_n": 500, "slices": 16, "mine_slices": 1, "paper_n": 5000, "paper_slices": 50,
              "timing_slices": {"histogram": 100, "kde": 2, "ksg": 4, "mine": 1}, "timing_classes": 2,
              "mine": {"iterations": 50, "batch_size": 300}},
    "cpu": {"ns": [100, 300, 1000, 3000], "rhos": [0.0, 0.3, 0.6, 0.9], "repeats": 40, "mine_repeats": 8,
            "dims": [1, 8, 64, 512], "sliced_n": 1000, "slices": 200, "mine_slices": 16, "paper_n": 5000,
            "paper_slices": 2000, "timing_slices": {"histogram": 2000, "kde": 100, "ksg": 400, "mine": 8},
            "timing_classes": 10, "mine": {}},
}
# Samples per class for the estimators, 1-D slices per class, Monte-Carlo draws, random models, grid sizes.
_THEOREMS = {
    "smoke": dict(n_per_class=300, n_slices=6, n_mc=4000, n_draws=40, n_grid=12, n_dirs=4000, n_1d=1000),
    "cpu": dict(n_per_class=1000, n_slices=16, n_mc=20000, n_draws=200, n_grid=30, n_dirs=20000, n_1d=4000),
    "gpu": dict(n_per_class=2000, n_slices=48, n_mc=100000, n_draws=500, n_grid=60, n_dirs=100000, n_1d=10000),
}


@dataclass(frozen=True)
class Profile:
    """Sizes and hyperparameters of one scale. ``attacks`` maps attack name → setting overrides."""

    name: str
    dataset: str = "fashion-mnist"
    n_train: typing.Optional[int] = None  # stratified training subset (None: the whole split)
    n_test: typing.Optional[int] = None  # stratified test subset (None: the whole split)
    model: str = "resnet18"  # victim architecture (and source model of the attacks)
    width: float = 1.0  # channel multiplier of the victim and source models
    victim_epochs: int = 200
    victim_batch_size: int = 128
    victim_lr: float = 0.5
    victim_weight_decay: float = 1e-4
    seeds: typing.Tuple[int, ...] = (0,)  # victim seeds (mean ± std over them)
    attacks: typing.Dict[str, dict] = field(default_factory=dict)
    trials: typing.Dict[str, dict] = field(default_factory=dict)  # calibration: name → {"method", **settings}
    sizes: typing.Tuple[int, ...] = ()  # calibration: smaller training subsets for the gap-vs-size table
    mi_slices: int = 2000
    mi_bins: int = 100
    # slices for the slower 1-D estimators (Fig. 1); the histogram uses mi_slices
    estimator_slices: typing.Dict[str, int] = field(default_factory=lambda: {"kde": 2000, "ksg": 2000, "mine": 2000})
    mine_iterations: int = 500  # MINE training steps per estimate (App. F.1: 500)
    # how the KDE estimator evaluates its densities: exact O(N²) sums, or FFT-binned (thousands per class)
    kde_evaluation: str = "exact"
    kde_grid: int = 256  # points per axis of the binned KDE's grid (its binning error falls as the grid grows)
    archs: typing.Tuple[str, ...] = ()  # victims of the depth chapter (Fig. 2, Tables 13-15); names from MODELS
    sal_samples: int = 1000  # SAL (SAL/UD Eq. 3): training images each weight-perturbation pass uses
    sal_every: int = 1  # SAL is measured every this many epochs of the victim's training
    sal_steps: int = 10  # ascent steps of the l2 weight perturbation (SAL/UD Sec. 3.3)
    # sizes of the estimator validation studies (chapter "Measuring mutual information", miue.validation)
    mi_study: typing.Dict[str, object] = field(default_factory=lambda: dict(_MI_STUDY["cpu"]))
    # sample sizes of the theorem illustrations (chapter "The theorems on examples", miue.theory)
    theorems: typing.Dict[str, object] = field(default_factory=lambda: dict(_THEOREMS["cpu"]))
    # defense settings at this profile (defense name → settings, as ``attacks``), and the victim recipe a
    # defense trains with where it is not the profile's (defense name → Recipe fields: the paper's AT schedule)
    defenses: typing.Dict[str, dict] = field(default_factory=dict)
    defense_recipes: typing.Dict[str, dict] = field(default_factory=dict)
    # the SimCLR victims' settings at this profile (miue.contrastive.SimCLRConfig fields; Table 20)
    simclr: typing.Dict[str, object] = field(default_factory=dict)
    device: str = "auto"
    # arithmetic of victims and attacks: 'auto' (bf16 autocast on CUDA, float32 on the CPU) or 'bf16'
    # (bf16 autocast on the CPU too); a run's precision is part of its address when not 'auto'
    precision: str = "auto"

    def __post_init__(self):
        validate(self)

    def override(self, **changes) -> "Profile":
        """A copy with ``changes`` applied, each checked against the field's type."""
        hints = typing.get_type_hints(Profile)
        names = {f.name for f in dataclasses.fields(self)}
        clean = {}
        for key, value in changes.items():
            if key not in names:
                raise ValueError(f"profile has no field {key!r}; fields are: {', '.join(sorted(names))}")
            clean[key] = _coerce(key, value, hints[key])
        return dataclasses.replace(self, **clean)

    def attack_settings(self, method: str) -> dict:
        return dict(self.attacks.get(method, {}))


def _coerce(key: str, value, hint):
    """``value`` checked as the field's type (:func:`miue.settings.coerce`); a TypeError names the field."""
    try:
        return coerce("profile", key, value, hint)
    except SettingError as err:
        raise TypeError(str(err)) from None


def profile(name: str, **overrides) -> Profile:
    """The named profile (smoke | cpu | full | cifar | gpu | paper) with ``overrides`` applied.

    ``None`` is a value, not "no override": ``n_train=None`` asks for the whole training split. A field
    that cannot be None rejects it with one message."""
    if not isinstance(name, str) or name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; choose one of {', '.join(PROFILES)}")
    return PROFILES[name].override(**overrides)


class ProfileError(ValueError):
    """A profile field is out of range."""


def validate(p: Profile) -> None:
    """Range checks on every field, one message naming the field, its value and what is allowed."""
    from .attacks import ATTACKS
    from .data import DATASETS
    from .models import MODELS

    def need(ok: bool, field_name: str, allowed: str):
        if not ok:
            raise ProfileError(f"profile {p.name!r}: field {field_name!r} = {getattr(p, field_name)!r} is not "
                               f"allowed; it must be {allowed}")

    need(p.dataset in DATASETS, "dataset", "one of " + ", ".join(DATASETS))
    need(p.n_train is None or p.n_train >= 10, "n_train", "None (the whole split) or at least 10 (one per class)")
    need(p.n_test is None or p.n_test >= 10, "n_test", "None (the whole split) or at least 10 (one per class)")
    need(p.model in MODELS, "model", "one of " + ", ".join(MODELS))
    need(0 < p.width <= 16, "width", "in (0, 16]")
    need(p.victim_epochs >= 1, "victim_epochs", "at least 1")
    need(p.victim_batch_size >= 1, "victim_batch_size", "at least 1")
    need(0 < p.victim_lr < 100, "victim_lr", "in (0, 100)")
    need(0 <= p.victim_weight_decay < 1, "victim_weight_decay", "in [0, 1)")
    need(len(p.seeds) >= 1 and min(p.seeds) >= 0 and len(set(p.seeds)) == len(p.seeds), "seeds",
         "a non-empty list of distinct integers >= 0")
    need(all(m in ATTACKS for m in p.attacks), "attacks", "keyed by attack names: " + ", ".join(ATTACKS))
    need(all(n >= 10 for n in p.sizes), "sizes", "subset sizes >= 10")
    need(p.mi_slices >= 1, "mi_slices", "at least 1")
    need(p.mi_bins >= 2, "mi_bins", "at least 2")
    need(all(k in ("kde", "ksg", "mine") and v >= 1 for k, v in p.estimator_slices.items()), "estimator_slices",
         "a map from kde/ksg/mine to slice counts >= 1")
    need(p.mine_iterations >= 1, "mine_iterations", "at least 1")
    need(p.kde_evaluation in ("exact", "binned-fft"), "kde_evaluation", "'exact' or 'binned-fft'")
    need(p.kde_grid >= 16, "kde_grid", "at least 16")
    need(all(a in MODELS for a in p.archs), "archs", "names from " + ", ".join(MODELS))
    need(p.sal_samples >= 1 and p.sal_every >= 1 and p.sal_steps >= 1, "sal_samples",
         "at least 1 (as are sal_every and sal_steps)")
    need(p.precision in ("auto", "bf16"), "precision", "'auto' or 'bf16'")
    need(p.device == "auto" or p.device == "cpu" or p.device.startswith("cuda") or p.device == "mps", "device",
         "'auto', 'cpu', 'cuda[:N]' or 'mps'")
    for method, chosen in p.attacks.items():  # each attack's settings checked by the attack itself
        try:
            ATTACKS[method](**chosen)
        except (TypeError, ValueError) as exc:
            raise ProfileError(f"profile {p.name!r}: attacks[{method!r}]: {exc}") from None
    from . import settings
    from .defenses import DEFENSES
    from .train import Recipe
    need(all(d in DEFENSES for d in p.defenses), "defenses", "keyed by defense names: " + ", ".join(DEFENSES))
    need(all(d in DEFENSES for d in p.defense_recipes), "defense_recipes",
         "keyed by defense names: " + ", ".join(DEFENSES))
    for name, chosen in p.defenses.items():  # each defense's settings checked by the defense itself
        try:
            DEFENSES[name](**chosen)
        except (TypeError, ValueError) as exc:
            raise ProfileError(f"profile {p.name!r}: defenses[{name!r}]: {exc}") from None
    for name, chosen in p.defense_recipes.items():
        try:
            settings.configure(f"defense_recipes[{name!r}]", Recipe, None, chosen)
        except (TypeError, ValueError) as exc:
            raise ProfileError(f"profile {p.name!r}: defense_recipes[{name!r}]: {exc}") from None
    from .contrastive import SimCLRConfig
    try:
        settings.configure("simclr", SimCLRConfig, None, p.simclr)
    except (TypeError, ValueError) as exc:
        raise ProfileError(f"profile {p.name!r}: simclr: {exc}") from None
    for name, trial in p.trials.items():
        trial = dict(trial)
        method = trial.pop("method", None)
        if method not in ATTACKS:
            raise ProfileError(f"profile {p.name!r}: trial {name!r} needs a 'method' among {', '.join(ATTACKS)}")
        try:
            ATTACKS[method](**trial)
        except (TypeError, ValueError) as exc:
            raise ProfileError(f"profile {p.name!r}: trial {name!r}: {exc}") from None


_CPU_ATTACKS = {
    # Chosen by the calibration trials below (their records are in data/runs; the first chapter shows them).
    "em": {"max_rounds": 6, "pgd_steps": 10, "step_size": 1.6 / 255},
    "ap": {"source_epochs": 10, "restarts": 1, "iterations": 20, "step_ratio": 0.15},
    "miue": {"epochs": 8, "step_size": 2 / 255, "lr": 0.1},
    "miue-code": {"epochs": 8, "step_size": 2 / 255, "step_size_final": 4 / 255},
    # REM/SEM: 8 passes over the set (256 steps of 128, against the paper's 5,000), one transform draw per δu
    # step, 5 δu steps of 2/255 and 3 δa steps of 2/255 (ρa = 4/255 kept)
    "rem": {"steps": 256, "eot": 1, "pgd_steps": 5, "step_size": 2 / 255, "adv_steps": 3, "adv_step_size": 2 / 255,
            "lr_decay_every": 100},
    "sem": {"steps": 256, "eot": 1, "pgd_steps": 5, "step_size": 2 / 255, "adv_steps": 3, "adv_step_size": 2 / 255,
            "lr_decay_every": 100},
    # EntF: a 10-epoch AT reference model (PGD-10 at 4/255) and AP's cpu crafting budget (20 steps of 0.15·ε)
    "entf": {"source_epochs": 10, "iterations": 20, "step_ratio": 0.15},
    # NTGA: the official kernel and steps; 2,000 validation images outside each block (official: 10,000)
    "ntga": {"val_size": 2000},
    # GUE: 10 epochs of the BOME game (official 50), a width-16 generator (about 36 s an epoch here)
    "gue": {"epochs": 10, "generator_width": 16},
    # TUE: 10 epochs (official 40 at 0.8/255 × 20) of 10 PGD steps of 1.6/255 (EM's cpu scaling)
    "tue": {"epochs": 10, "pgd_steps": 10, "step_size": 1.6 / 255},
    # DC: 3 outer epochs of 5 classifier epochs (official 1,000 of 20: "5 to 7 days on a GPU")
    "dc": {"epochs": 3, "classifier_epochs": 5, "generator_width": 16},
}
_CPU_TRIALS = {
    "MI-UE, paper step 0.2/255 and source lr 0.5": {"method": "miue", "step_size": 0.2 / 255, "lr": 0.5},
    "MI-UE, no augmentation in generation": {"method": "miue", "augment": False},
    "MI-UE, authors' code (lr 0.1, ζ=0, step 2→4/255, batch 128, flip of x only, normalized net)": {
        "method": "miue-code"},
    "MI-UE, larger PGD step 4/255": {"method": "miue", "step_size": 4 / 255},
    "MI-UE, temperature τ = 0.5": {"method": "miue", "tau": 0.5},
    "EM, official steps (20 × 0.8/255), 4 rounds": {"method": "em", "pgd_steps": 20, "step_size": 0.8 / 255,
                                                    "max_rounds": 4},
}

# Defenses at the cpu profile: OP's linear model takes batches of 128 (4,000 images in batches of 1,024 would
# give it 80 SGD steps instead of the official run's ~1,000); D-VAE trains 10 epochs a stage (official 60);
# AVA and LE share one width-16 denoiser trained 3,000 steps on 4,000 held-out images, and LE takes 10 reverse
# steps a round (respaced over its 20 diffusion steps)
_CPU_DENOISER = {"denoiser_images": 4000, "denoiser_steps": 3000, "denoiser_width": 16}
_CPU_DEFENSES = {"op": {"batch_size": 128}, "d-vae": {"epochs": 10}, "ava": dict(_CPU_DENOISER),
                 "le": {"reverse_steps": 10, **_CPU_DENOISER}}
_SMOKE_DENOISER = {"denoiser_images": 500, "denoiser_steps": 100, "denoiser_width": 16}

# CIFAR-10 (JPEG q75 copy) on 2 CPU cores: the cpu profile's attack budgets in passes over the training set
# (REM's and SEM's steps scaled with it: 8 passes over 20,000 images in batches of 128)
_CIFAR_ATTACKS = {**_CPU_ATTACKS,
                  "rem": {**_CPU_ATTACKS["rem"], "steps": 1250}, "sem": {**_CPU_ATTACKS["sem"], "steps": 1250}}

PROFILES: dict[str, Profile] = {
    "smoke": Profile("smoke", n_train=1000, n_test=1000, width=0.125, victim_epochs=5, victim_lr=0.1,
                     victim_weight_decay=5e-4, seeds=(0,), mi_slices=200, mi_bins=20,
                     attacks={"em": {"max_rounds": 2, "pgd_steps": 10, "step_size": 1.6 / 255},
                              "ap": {"source_epochs": 3, "restarts": 1, "iterations": 10, "step_ratio": 0.2},
                              # 5 PGD steps a batch (cpu: 10): the smoke profile checks the plumbing
                              "miue": {"epochs": 3, "pgd_steps": 5, "step_size": 2 / 255, "lr": 0.1},
                              # the code's ramp (0.2 → 0.4/255, ×2) scaled like the cpu profile's: 2 → 4/255
                              "miue-code": {"epochs": 3, "pgd_steps": 5, "step_size": 2 / 255,
                                            "step_size_final": 4 / 255},
                              "rem": {"steps": 8, "eot": 1, "pgd_steps": 2, "step_size": 4 / 255, "adv_steps": 1,
                                      "adv_step_size": 4 / 255, "lr_decay_every": 8},
                              "sem": {"steps": 8, "eot": 1, "pgd_steps": 2, "step_size": 4 / 255, "adv_steps": 1,
                                      "adv_step_size": 4 / 255, "lr_decay_every": 8},
                              "entf": {"source_epochs": 2, "robust_steps": 2, "iterations": 5, "step_ratio": 0.3},
                              "tue": {"epochs": 2, "pgd_steps": 5, "step_size": 2 / 255},
                              "ntga": {"block_size": 256, "val_size": 300, "steps": 3},
                              "gue": {"epochs": 1, "generator_width": 8},
                              "dc": {"epochs": 1, "classifier_epochs": 1, "generator_width": 8}},
                     trials={"MI-UE without augmentation": {"method": "miue", "augment": False}},
                     estimator_slices={"kde": 20, "ksg": 20, "mine": 2}, mine_iterations=30, archs=("linear", "lenet5", "resnet18"),
                     sal_samples=128, sal_every=5, sal_steps=3, mi_study=_MI_STUDY["smoke"],
                     theorems=_THEOREMS["smoke"],
                     defenses={"at": {"steps": 2, "step_size": 4 / 255}, "ueraser": {"repeats": 2},
                               "op": {"epochs": 5}, "d-vae": {"epochs": 2},
                               "ava": {"reverse_steps": 2, **_SMOKE_DENOISER},
                               "le": {"rounds": 2, "reverse_steps": 2, **_SMOKE_DENOISER}},
                     simclr={"epochs": 2, "batch_size": 128}),
    "cpu": Profile("cpu", n_train=4000, width=0.125, victim_epochs=20, victim_lr=0.1, victim_weight_decay=5e-4,
                   seeds=(0, 1, 2), attacks=_CPU_ATTACKS, trials=_CPU_TRIALS,
                   sizes=(1000, 2000), estimator_slices={"kde": 500, "ksg": 500, "mine": 20},
                   # ViT-B is left to the gpu profile: at width 1/8 it took about 100 s an epoch here (20 epochs
                   # about 35 min per victim, 5 victims per architecture)
                   archs=("linear", "2-nn", "3-nn", "lenet5", "vgg11", "resnet18", "resnet34"),
                   sal_samples=256, sal_every=4, defenses=_CPU_DEFENSES, simclr={"epochs": 30}),
    # the whole Fashion-MNIST training set (6,000 images per class, the paper's sample-size regime) at the cpu
    # profile's width and recipe: the scale issue's profile, run in the background over sessions
    "full": Profile("full", n_train=None, n_test=None, width=0.125, victim_epochs=20, victim_lr=0.1,
                    victim_weight_decay=5e-4, seeds=(0, 1, 2), attacks=_CPU_ATTACKS,
                    # the MI study at 6,000 points per class (chapter "At the paper's sample size"): slice counts
                    # from the per-slice spread measured on these features (the mean per-class SD over 20 slices
                    # of the clean victim's: KSG 0.19 nats, KDE 0.18, histogram 0.15), the KDE FFT-binned on a
                    # 512-point grid (within 0.004 nats of the exact sums on heavy-tailed data at this size)
                    estimator_slices={"kde": 100, "ksg": 30, "mine": 20}, kde_evaluation="binned-fft", kde_grid=512,
                    archs=("resnet18",), sal_samples=256, sal_every=4),
    # CIFAR-10 (JPEG q75 copy), calibrated by measurement (study cifar_calibration, clean victims, seed 0, 2 CPU
    # cores, bf16): 20,000 training images at width 1/4 for 30 epochs: 81.7% in 9.4 min. All 50,000 at 1/4 for
    # 15 epochs reached 84.8% in 11.9 min, but every poison would cost 2.5 times as much (about 41 h for Table 2
    # against about 19 h): the paper's size is the size question's larger point. The cpu recipe (4,000 images at
    # width 1/8, 20 epochs): 49.0%. The paper: 50,000 images, full width, 200 epochs, 94.45% on the originals.
    "cifar": Profile("cifar", dataset="cifar10-jpeg", n_train=20000, n_test=None, width=0.25, victim_epochs=30,
                     victim_lr=0.1, victim_weight_decay=5e-4, seeds=(0, 1, 2), attacks=_CIFAR_ATTACKS,
                     precision="bf16", estimator_slices={"kde": 500, "ksg": 500, "mine": 20},
                     archs=("resnet18",), sal_samples=256, sal_every=4, defenses=_CPU_DEFENSES,
                     simclr={"epochs": 30}),
    "gpu": Profile("gpu", n_train=None, width=1.0, victim_epochs=40, victim_lr=0.1, victim_weight_decay=5e-4,
                   seeds=(0, 1, 2), attacks={"em": {"max_rounds": 30}, "ap": {"restarts": 1},
                                             "miue": {"epochs": 30}, "miue-code": {"epochs": 30}},
                   device="cuda",
                   archs=("linear", "2-nn", "3-nn", "lenet5", "vgg11", "resnet18", "resnet34", "resnet50",
                          "resnet101", "resnet152", "vit-b", "vit-l", "vit-h"), sal_samples=1000, sal_every=2, theorems=_THEOREMS["gpu"],
                   # the paper's AT schedule (×0.1 at 40% and 80% of the epochs) over the gpu profile's 40 epochs
                   defense_recipes={"at": {"schedule": "multistep", "milestones": (16, 32)}}),
    "paper": Profile("paper", dataset="cifar10", n_train=None, width=1.0, victim_epochs=200, victim_lr=0.5,
                     victim_weight_decay=1e-4, seeds=(0,),
                     archs=("linear", "2-nn", "3-nn", "lenet5", "vgg11", "resnet18", "resnet34", "resnet50",
                            "resnet101", "resnet152", "vit-b", "vit-l", "vit-h"), sal_samples=50000,
                     theorems=_THEOREMS["gpu"],
                     # App. E.4: AT trains 100 epochs, lr 0.1 ×0.1 at 40 and 80, weight decay 5e-4 (the code's)
                     defense_recipes={"at": {"epochs": 100, "lr": 0.1, "weight_decay": 5e-4, "schedule": "multistep",
                                             "milestones": (40, 80)}}),
}


