"""Which runs each chapter reads, as a list of specs, without computing anything.

``chapter_specs("01_at_a_glance", profile("cpu"))`` lists the specs chapter 01 executes with its default
parameters. The Reproduce page's cost table, ``miue grid`` (dispatch to a cluster) and the reproducibility
audit start from these lists; a test checks that every spec listed at the ``cpu`` profile has its committed
record, so a list that drifts from its notebook is caught.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from . import experiments as ex
from .profiles import Profile
from .runs import RunStore, compute_seconds
from .specs import Spec


@dataclass(frozen=True)
class StoredSpec(Spec):
    """A run computed by its own module (validation studies, the protection demo): its kind and config, to
    list and look up (its module's function computes it)."""

    kind: str
    config_json: str
    what: str = ""

    def config(self) -> dict:
        return json.loads(self.config_json)

    def describe(self) -> str:
        return self.what or self.address


def _stored(kind: str, cfg: dict, what: str) -> StoredSpec:
    return StoredSpec(kind, json.dumps(cfg, sort_keys=True), what)


def _with_deps(specs) -> list:
    """``specs`` and everything they read, transitively (a victim's purifier's denoiser too), each once."""
    out, seen = [], set()

    def add(s):
        if s.address not in seen:
            seen.add(s.address)
            out.append(s)
            for d in s.dependencies():
                add(d)

    for s in specs:
        add(s)
    return out


def _at_a_glance(p: Profile) -> list:
    methods = ["clean", "random", "em", "ap", "miue"]
    specs = [f(p, m, s) for m in methods for s in p.seeds for f in (ex.victim_spec, ex.mi_spec)]
    seed = p.seeds[0]
    from .data import TRAIN_SIZES
    train_n = p.n_train if p.n_train is not None else TRAIN_SIZES.get(p.dataset) or len(ex.datasets(p)[0])
    for n in sorted(set(p.sizes)):
        if n != train_n:
            pn = p.override(n_train=n)
            specs += [ex.victim_spec(pn, "clean", seed), ex.victim_spec(pn, "miue", seed)]
    for trial in p.trials.values():
        trial = dict(trial)
        specs.append(ex.victim_spec(p, trial.pop("method"), seed, **trial))
    return specs


def _measuring_mi(p: Profile) -> list:
    from . import validation
    sizes = p.mi_study
    return [_stored("validation", validation.study_config(n, sizes), f"validation study {n}")
            for n in validation.STUDIES]


# the methods chapters 3, 9 and 10 execute by default: clean and every attack (the paper's Table 1 and Table 2
# columns and more). At the smoke profile (the tests) the five attacks added last are left out of the chapters,
# to keep CI short: each has its own tests (tests/test_attacks.py)
STRENGTH_METHODS = ["clean", "random", "em", "ap", "rem", "sem", "miue", "miue-code", "ar", "lsp", "ops",
                    "ntga", "gue", "tue", "entf", "dc"]
SMOKE_LEFT_OUT = ("ntga", "gue", "tue", "entf", "dc")


def chapter_methods(p: Profile) -> list:
    """The methods chapters 3, 9 and 10 execute at profile ``p`` by default (their ``methods`` parameter)."""
    return [m for m in STRENGTH_METHODS if p.name != "smoke" or m not in SMOKE_LEFT_OUT]


def _effective_ues(p: Profile, methods=None) -> list:
    methods = methods or chapter_methods(p)
    specs = []
    for m in methods:
        for s in p.seeds:
            specs += [ex.mi_spec(p, m, s), ex.mi_spec(p, m, s, shared=True), ex.covariance_spec(p, m, s)]
        for e in ("kde", "ksg", "mine"):
            specs.append(ex.mi_spec(p, m, p.seeds[0], estimator=e))
        for target in ex.SEPARABILITY_TARGETS:
            if not (m == ex.CLEAN and target == "noise"):
                specs.append(ex.separability_spec(p, m, target))
    return specs


def _deeper(p: Profile) -> list:
    methods = ["clean", "random", "em", "ap", "miue"]
    archs = list(p.archs) or [p.model]
    return [ex.mi_spec(p, m, p.seeds[0], arch=a) for a in archs for m in methods]


# SAL/UD Table 1's attacks (EM, REM, DC, TAP = AP, LSP, OPS) beyond the first chapter's methods
SAL_TABLE1_EXTRA = ["rem", "dc", "lsp", "ops"]


def sal_methods(p: Profile) -> list:
    """The SAL chapter's methods (its notebook's default): the first chapter's, and at every profile but smoke
    also the SAL/UD paper's Table 1 attacks (EM, REM, DC, TAP = AP, LSP, OPS), in that paper's order."""
    if p.name == "smoke":
        return ["clean", "random", "em", "ap", "miue"]
    return ["clean", "random", "em", *SAL_TABLE1_EXTRA[:2], "ap", *SAL_TABLE1_EXTRA[2:], "miue"]


def _sal(p: Profile) -> list:
    from . import sal
    methods = sal_methods(p)
    archs = {"gpu": ["resnet50", "vit-b"], "paper": ["resnet50", "vit-b"], "smoke": []}.get(p.name, ["vgg11"])
    jobs = [(None, m) for m in methods] + [(a, m) for a in archs for m in ("clean", "em", "ap", "miue")]
    specs = [sal.sal_spec(p, m, p.seeds[0], a) for a, m in jobs]
    return specs + [ex.poison_spec(p, m) for m in methods if m != "clean"]


def _how_strong(p: Profile, methods=None) -> list:
    """Table 2's structure: a standard victim per method and seed on the profile's dataset."""
    return [ex.victim_spec(p, m, s) for m in methods or chapter_methods(p) for s in p.seeds]


ONE_CLASS = 0  # App. G.1: class 0 is the one made unlearnable (CIFAR-10's "airplane", Fashion-MNIST's "T-shirt/top")


def _one_class(p: Profile, methods=None) -> list:
    """Tables 16-18's structure: each poison published on class 0 only, one victim (seed 0) per method."""
    seed = p.seeds[0]
    return [ex.victim_spec(p, ex.CLEAN, seed)] + [ex.victim_spec(p, m, seed, classes=[ONE_CLASS])
                                                  for m in methods or chapter_methods(p) if m != ex.CLEAN]


def _protect(p: Profile) -> list:
    """The end-to-end example of ``miue protect`` / ``miue verify`` (notebook ``protect``), per method."""
    from . import protect as pr
    crops, ref = (12, 100) if p.name == "smoke" else (100, 1000)
    out = []
    import tempfile
    with tempfile.TemporaryDirectory(prefix="miue-demo-") as tmp:
        images, _ = pr.scan(pr.sample_photos(f"{tmp}/photos", crops=crops), 32)
        for m in ("miue", "em", "ap"):
            cfg, vcfg = pr.demo_configs(images, m, p.name, ref, 0, RunStore())
            out.append(_stored("protect", cfg, f"protect the demo photographs with {m}"))
            if vcfg is not None:  # the verify run's config names the published pixels, which the record holds
                out.append(_stored("verify", vcfg, f"verify the {m} protection"))
    for job in pr.COST_JOBS:  # the defaults' cost on a dozen and on 1,000 photographs
        cfg, vcfg = pr.default_job_configs(job, p.name, RunStore())
        out.append(_stored("protect", cfg, f"protect {job} at the default settings"))
        if vcfg is not None:
            out.append(_stored("verify", vcfg, f"verify {job} at the default settings"))
    return out


# Table 1's structure at the full profile (the scale issue's list, with REM and SEM from the attack issue)
PAPER_SIZE_METHODS = ["clean", "random", "miue", "ap", "em", "miue-code", "rem", "sem"]
MI_STUDY_ESTIMATORS = ("histogram", "kde", "ksg")


def mi_study_specs(p: Profile, m: str) -> list:
    """The MI study of one method's victim (seed 0): each estimator with Eq. 17's independent slicing and
    with shared directions, each with its shuffled baseline (in the same record)."""
    return [ex.mi_spec(p, m, p.seeds[0], estimator=e, shared=sh) for e in MI_STUDY_ESTIMATORS
            for sh in (False, True)]


def _paper_sample_size(p: Profile) -> list:
    """The scale issue's core grid: Table 1's structure at the ``full`` profile (one seed first), then the
    MI study on those victims' features."""
    victims = [ex.victim_spec(p, m, p.seeds[0]) for m in PAPER_SIZE_METHODS]
    return victims + [s for m in PAPER_SIZE_METHODS for s in mi_study_specs(p, m)]


def _grid_check(p: Profile) -> list:
    """A small grid with a shared dependency, to check a cluster: two clean victims and two victims of one
    Random poison (the two race for it)."""
    return [ex.victim_spec(p, m, s) for m in ("clean", "random") for s in (0, 1)]


def _size_curve(p: Profile) -> list:
    """The scale issue's gap-against-size curve: victims (seed 0) of clean, EM, AP and MI-UE on stratified
    subsets of 1k to 30k training images at the profile's settings (60k is the full profile's grid)."""
    methods = ["clean", "em", "ap", "miue"]
    return [ex.victim_spec(p.override(n_train=n), m, p.seeds[0]) for n in (1000, 2000, 8000, 16000, 30000)
            for m in methods]


def _on_gpu(p: Profile) -> bool:
    """Whether ``p`` is a GPU profile: studies too costly for 2 CPU cores list their full grids only there."""
    return p.device.startswith("cuda") or p.name in ("gpu", "paper")


EM_STOP_ROUNDS = 100  # EM's official round cap: it stops earlier, at 99% training accuracy on x + δ


def em_to_stop(p: Profile) -> Profile:
    """``p`` with EM run to its official stop condition (training accuracy above 1 − ``stop_error``) or
    :data:`EM_STOP_ROUNDS` rounds, instead of the profile's round cap (6 at the cpu profile)."""
    return p.override(attacks={**p.attacks, "em": {**p.attack_settings("em"), "max_rounds": EM_STOP_ROUNDS}})


def _width_curve(p: Profile) -> list:
    """The same against width (feature dimension 64 · width/0.125 for ResNet-18), and EM run to its stop
    condition at 4k and 16k images (the profile's width; listed last: where the capped run already converged
    under the cap, as the chapter reports, the run to the stop repeats it).

    Off a GPU the cells are width 1/4 and 1/2 at 4k images and 1/4 at 16k; a GPU profile runs every width up
    to full (512-d features) at both sizes. ``miue grid width_curve --dry-run`` and the chapter estimate both."""
    methods = ["clean", "em", "ap", "miue"]
    stop = [ex.victim_spec(em_to_stop(p.override(n_train=n)), "em", p.seeds[0]) for n in (4000, 16000)]
    gpu = _on_gpu(p)
    cells = [(4000, 0.25), (4000, 0.5), (16000, 0.25)] if not gpu else [
        (n, w) for n in (4000, 16000) for w in (0.25, 0.5, 1.0)]
    return [ex.victim_spec(p.override(n_train=n, width=w), m, p.seeds[0]) for n, w in cells for m in methods] + stop


# Chapter "Adversarial training" (Table 4, Figures 7-10): the methods the paper's AT claims are about, at
# AT-2 to AT-8 (seed 0), beside their standard-training victims
AT_METHODS = ["clean", "em", "ap", "rem", "sem", "miue", "entf"]
AT_BUDGETS = (2, 4, 6, 8)  # ρ in /255


def at_defense(budget: int) -> dict:
    return {"name": "at", "eps": budget / 255}


def at_lists(p: Profile) -> dict:
    """The UEs and AT budgets (ρ in /255, largest first) the chapter runs at profile ``p`` (its notebook's
    defaults): every one of :data:`AT_METHODS` at every one of :data:`AT_BUDGETS`; the smoke profile a sample
    that still has a budget above 4/255 and one at or below it (EM and MI-UE at 8 and 4)."""
    if p.name == "smoke":
        return {"methods": ["clean", "em", "miue"], "budgets": [8, 4]}
    return {"methods": list(AT_METHODS), "budgets": sorted(AT_BUDGETS, reverse=True)}


def _adversarial_training(p: Profile) -> list:
    seed, L = p.seeds[0], at_lists(p)
    return [ex.victim_spec(p, m, seed, defense=d) for m in L["methods"]
            for d in [None, *(at_defense(b) for b in L["budgets"])]]


# Chapter "Augmentations and purifications" (Tables 5, 11 and 12)
TABLE5_DEFENSES = ["cutout", "cutmix", "mixup", "ueraser", "jpeg", "op", "d-vae", "ava", "le"]
DIFFUSION_DEFENSES = ("ava", "le")
JPEG_QUALITIES = [6, 8, 10, 12, 15, 20, 30]
MI_DEFENSES = {"AT": at_defense(8), "Cutout": "cutout", "UER": "ueraser", "ISS": "jpeg"}


# the UEs the defense chapters' claims are about (the defense issue's list): the cpu profile runs these, a GPU
# profile every method
DEFENSE_CLAIM_METHODS = ["clean", "em", "ap", "rem", "sem", "entf", "miue"]


def defense_lists(p: Profile) -> dict:
    """What the chapter runs at profile ``p`` (its notebook's defaults). On 2 CPU cores: the UEs the papers'
    claims are about (:data:`DEFENSE_CLAIM_METHODS`) under every defense, the diffusion purifiers (minutes per
    poison) and Table 11's JPEG sweep on fewer of them; a GPU profile runs every method under every defense;
    the smoke profile runs a sample of each list, every defense once."""
    if p.name == "smoke":
        return {"methods": ["clean", "em", "miue"], "defenses": list(TABLE5_DEFENSES),
                "diffusion_methods": ["clean", "miue"], "jpeg_qualities": [6, 30], "jpeg_methods": ["clean", "miue"],
                "mi_methods": ["clean", "em", "miue"]}
    if _on_gpu(p):
        every = [m for m in chapter_methods(p) if m != "random"]
        return {"methods": every, "defenses": list(TABLE5_DEFENSES), "diffusion_methods": every,
                "jpeg_qualities": list(JPEG_QUALITIES), "jpeg_methods": every, "mi_methods": chapter_methods(p)}
    return {"methods": list(DEFENSE_CLAIM_METHODS), "defenses": list(TABLE5_DEFENSES),
            "diffusion_methods": ["clean", "em", "rem", "miue"], "jpeg_qualities": list(JPEG_QUALITIES),
            "jpeg_methods": ["clean", "em", "miue"], "mi_methods": ["clean", "random", "em", "ap", "rem", "sem", "miue"]}


def _augmentations(p: Profile) -> list:
    seed, L = p.seeds[0], defense_lists(p)
    specs = [ex.victim_spec(p, m, seed, defense=d) for m in L["methods"] for d in L["defenses"]
             if d not in DIFFUSION_DEFENSES or m in L["diffusion_methods"]]
    specs += [ex.victim_spec(p, m, seed) for m in L["methods"]]
    specs += [ex.victim_spec(p, m, seed, defense={"name": "jpeg", "quality": q}) for m in L["jpeg_methods"]
              for q in L["jpeg_qualities"]]
    specs += [ex.mi_spec(p, m, seed, defense=d) for m in L["mi_methods"] for d in [None, *MI_DEFENSES.values()]]
    return specs


# Chapter "What makes MI-UE work" (Tables 6, 7, 9, 10, 22): MI-UE poisons with one setting changed, one victim
# each (seed 0); the default row is chapter 1's three seeds
def ablation_lists(p: Profile) -> dict:
    """The settings the ablation chapter varies at profile ``p`` (its notebook's defaults). Generation epochs
    and PGD steps are read relative to the profile's MI-UE budget (the paper's 100 epochs of 0.2/255).
    ``code_zetas`` and ``code_steps`` sweep the authors'-code variant where its setting differs (ζ = 0 and a
    ramped step); Table 9's per-epoch curve is the longest ``epochs`` run's snapshots."""
    base = ex.attack_config(p, "miue")
    e = base["epochs"]
    if p.name == "smoke":
        return {"terms": ["full", "no-distance", "no-similarity"], "zetas": [0.0, 10.0], "epochs": [1, e],
                "budgets": [16], "steps": [8.0], "regularized": ["em"], "mi_weights": [100.0],
                "code_zetas": [10.0], "code_steps": [0.8]}
    return {"terms": ["full", "no-distance", "no-similarity"], "zetas": [0.0, 0.01, 0.1, 1.0, 10.0, 100.0],
            "epochs": sorted({1, max(1, e // 4), max(1, e // 2), e, 2 * e}),  # the paper's 20/50/100 of 100 are 1/5-1/1
            "budgets": [4, 6, 8, 12, 16], "steps": [0.1, 0.2, 0.4, 0.8, 1.0, 2.0, 4.0, 8.0],
            "regularized": ["em", "ap"], "mi_weights": list(MI_REGULARIZER_WEIGHTS),
            "code_zetas": [0.1, 1.0, 10.0, 100.0], "code_steps": [0.1, 0.2, 0.4, 0.8]}


# Table 8: the weights of the MINE term added to EM's and AP's losses. The paper does not state one; on a fixed
# LeNet-5 a weight of 10 did not move a fresh critic's estimate and 100 did (tests/test_attacks.py), while at the
# cpu profile 100 undid both poisons: the chapter sweeps the weight
MI_REGULARIZER_WEIGHTS = [1.0, 10.0, 100.0]


def code_step(p: Profile, a: float) -> dict:
    """The code variant's settings at a first PGD step of ``a``/255: its ramp keeps the profile's ratio of last
    to first step (the code: 0.8 → 0.4/255)."""
    c = ex.attack_config(p, "miue-code")
    ratio = c["step_size_final"] / c["step_size"] if c.get("step_size_final") else 0.0
    return {"step_size": a / 255, "step_size_final": ratio * a / 255}


def curve_settings(p: Profile, epochs=None) -> list[tuple[int, dict]]:
    """(k, MI-UE settings) of Table 9's per-epoch curve: the snapshots after each epoch k of one run of the
    longest of ``epochs`` (the profile's list by default); its last point is that run's finished poison."""
    last = max(ablation_lists(p)["epochs"] if epochs is None else epochs)
    return [(k, {"epochs": last, "after_epoch": k}) for k in range(1, last)] + [(last, {"epochs": last})]


TERMS = {"full": {}, "no-distance": {"zeta": 0.0}, "no-similarity": {"similarity": False}}


def ablation_settings(p: Profile) -> list[tuple[str, object, dict]]:
    """(table, value, MI-UE settings) of every cell of the ablation chapter at profile ``p``."""
    L = ablation_lists(p)
    cells = [("terms", t, TERMS[t]) for t in L["terms"]]
    cells += [("zeta", z, {"zeta": z}) for z in L["zetas"]]
    cells += [("epochs", e, {"epochs": e}) for e in L["epochs"]]
    cells += [("budget", b, {"eps": b / 255}) for b in L["budgets"]]
    cells += [("step", a, {"step_size": a / 255}) for a in L["steps"]]
    return cells


def code_ablation_settings(p: Profile) -> list[tuple[str, object, dict]]:
    """(table, value, settings) of the authors'-code variant's cells: Table 7's ζ and Table 22's step."""
    L = ablation_lists(p)
    return [("zeta", z, {"zeta": z}) for z in L["code_zetas"]] + [("step", a, code_step(p, a)) for a in L["code_steps"]]


def _ablations(p: Profile) -> list:
    seed = p.seeds[0]
    specs = [ex.victim_spec(p, "clean", seed)]
    # the curve first: its run then keeps its per-epoch snapshots as it is generated
    specs += [ex.victim_spec(p, "miue", seed, **settings) for _, settings in curve_settings(p)]
    specs += [ex.victim_spec(p, "miue", seed, **settings) for _, _, settings in ablation_settings(p)]
    specs += [ex.victim_spec(p, "miue-code", seed)]
    specs += [ex.victim_spec(p, "miue-code", seed, **settings) for _, _, settings in code_ablation_settings(p)]
    for m in ["clean", "miue", *ablation_lists(p)["regularized"]]:
        specs.append(ex.mi_spec(p, m, seed))
    specs += [ex.mi_spec(p, m, seed, mi_weight=w) for m in ablation_lists(p)["regularized"]
              for w in ablation_lists(p)["mi_weights"]]
    # Table 20: each poison's SimCLR victim beside its standard one
    specs += [ex.victim_spec(p, m, seed, contrastive=c, **extra) for m, extra, _ in CONTRASTIVE_ROWS
              for c in ({}, None)]
    return specs


# Table 20: SimCLR victims of the clean set, EM, TUE, MI-UE and A-MI-UE (MI-UE generated through SimCLR's views)
CONTRASTIVE_ROWS = [("clean", {}, "Clean"), ("em", {}, "EM"), ("tue", {}, "TUE"), ("miue", {}, "MI-UE"),
                    ("miue", {"augment_mode": "contrastive"}, "A-MI-UE")]


# Chapter "How transferable" (Tables 3 and 19): poisons from the profile's source model, victims of other
# architectures (one seed). Off a GPU, DenseNet-121, WRN-34-10 and ViT-B are left to the gpu profile: at width
# 1/8 on 4,000 Fashion-MNIST images one 128-image training step took, relative to ResNet-18 (33 s a victim here),
# about 20× for ResNet-50, 18× for DenseNet-121 and 33× for WRN-34-10 (measured on this machine, one thread, not
# recorded), and a ViT-B victim about 35 min: the ten methods on all four would take about 7 hours
TRANSFER_GPU_ONLY = ("densenet121", "wrn34-10", "vit-b")


# the transfer chapter's shallow victims train at their own size (width 1: LeNet-5's 6/16 channels, the MLPs'
# 512 units), as in the paper; scaled by the cpu profile's 1/8, LeNet-5 keeps 1 and 2 channels and does not
# fit even clean data (58.7% test, 60% training accuracy at the cpu profile)
SHALLOW_VICTIMS = ("lenet5", "3-nn", "2-nn")


def transfer_width(p: Profile, arch: str) -> float:
    """The width multiplier of the transfer chapter's ``arch`` victim: 1 for shallow ones, else the profile's."""
    return 1.0 if arch in SHALLOW_VICTIMS else p.width


def transfer_lists(p: Profile) -> dict:
    """The transfer chapter's methods and victim architectures at ``p``, ``widths``: each architecture's width
    multiplier (the profile's for deep victims, 1 for shallow ones), and ``gpu_only``: the architectures of
    the paper's Table 3 left to a GPU profile."""
    if p.name == "smoke":
        archs = [p.model, "2-nn"]
        return {"methods": ["clean", "em", "miue"], "archs": archs, "gpu_only": [],
                "widths": {a: transfer_width(p, a) for a in archs}}
    gpu = _on_gpu(p)
    deep = ["resnet18", "resnet50", "densenet121", "wrn34-10", "vit-b"]
    archs = [a for a in deep if gpu or a not in TRANSFER_GPU_ONLY] + list(SHALLOW_VICTIMS)
    return {"methods": ["clean", "em", "ap", "ntga", "ar", "rem", "sem", "gue", "tue", "miue"], "archs": archs,
            "gpu_only": [] if gpu else list(TRANSFER_GPU_ONLY),
            "widths": {a: transfer_width(p, a) for a in archs}}


def transfer_victim_spec(p: Profile, method: str, arch: str, seed: int | None = None):
    """The transfer chapter's victim of ``arch`` on ``method``'s poison (generated with the profile's model)."""
    return ex.victim_spec(p, method, p.seeds[0] if seed is None else seed, arch=None if arch == p.model else arch,
                          victim_width=None if arch not in SHALLOW_VICTIMS else transfer_width(p, arch))


def _transfer(p: Profile) -> list:
    L = transfer_lists(p)
    return [transfer_victim_spec(p, m, a) for m in L["methods"] for a in L["archs"]]


# SAL/UD Table 2 (UD under defenses), for the chapter "Sharpness-aware learnability": SAL runs of victims
# trained under each defense; `miue grid 05_sal_under_defenses` computes them
SAL_DEFENSES = {"JPEG": "jpeg", "Adversarial Training": at_defense(8), "UEraser-max": "ueraser", "MixUp": "mixup",
                "CutOut": "cutout"}
SAL_DEFENSE_METHODS = ["clean", "em", "ap", "ops"]  # the paper's Vanilla, EM, TAP and OPS


def _sal_defenses(p: Profile) -> list:
    """SAL/UD Table 2 (UD under defenses)."""
    from . import sal
    seed = p.seeds[0]
    return [sal.sal_spec(p, m, seed, defense=d) for m in SAL_DEFENSE_METHODS for d in SAL_DEFENSES.values()]


def _verdict_seeds(p: Profile) -> list:
    """The victims the claims read at one seed (``miue.claims``), at the profile's other seeds (issue 35: at
    least 3 seeds wherever a margin lies within 3× the seed spread): adversarial training at 6/255 and 8/255
    (and REM, SEM and clean at every budget up to the first above 4/255),
    the defense grid, MI-UE's ablations and the regulariser, the SimCLR victims, the transfer victims, and
    SAL/UD's clean and AP runs. The claims read every seed recorded, so each verdict tightens as these land."""
    from . import sal
    at, dl, L, tl = at_lists(p), defense_lists(p), ablation_lists(p), transfer_lists(p)
    e0 = ex.attack_config(p, "miue")["epochs"]
    miue = [TERMS[k] for k in ("full", "no-similarity", "no-distance")] + [{"zeta": float(z)} for z in L["zetas"]]
    miue += [{"epochs": int(min(L["epochs"]))}, {"epochs": int(e0)}]
    miue += [{"eps": b / 255} for b in (min(L["budgets"]), max(L["budgets"]))]
    miue += [{"step_size": a / 255} for a in L["steps"] if a <= 0.8]
    out = []
    for s in p.seeds[1:]:
        out += [ex.victim_spec(p, m, s, defense=at_defense(b)) for m in at["methods"] if m != "clean"
                for b in (6, 8) if b in at["budgets"]]
        above = min([b for b in at["budgets"] if b > 4], default=None)  # at-robust: REM, SEM and clean at and
        out += [ex.victim_spec(p, m, s, defense=at_defense(b)) for m in ("clean", "rem", "sem")  # below 4/255
                if m in at["methods"] and above is not None for b in at["budgets"] if b <= above]
        out += [ex.victim_spec(p, m, s, defense=d) for m in dl["methods"] for d in dl["defenses"]
                if d not in DIFFUSION_DEFENSES or m in dl["diffusion_methods"]]
        out += [ex.victim_spec(p, "miue", s, **settings) for settings in miue]
        out += [ex.victim_spec(p, m, s, mi_weight=w) for m in L["regularized"] for w in L["mi_weights"]]
        out += [ex.victim_spec(p, m, s, contrastive={}, **extra) for m, extra in
                (("clean", {}), ("em", {}), ("miue", {"augment_mode": "contrastive"}))]
        out += [transfer_victim_spec(p, m, a, s) for m in tl["methods"] if m not in ("clean", "random")
                for a in tl["archs"]]
        out += [sal.sal_spec(p, m, s) for m in ("clean", "ap")]
    seen: set = set()
    return [x for x in out if not (x.address in seen or seen.add(x.address))]


# the book's chapters whose cpu runs it reads, with those runs (the Reproduce page's cost table, in this order)
CHAPTERS = {
    "01_at_a_glance": _at_a_glance,
    "09_how_strong": _how_strong,
    "10_one_class": _one_class,
    "02_measuring_mutual_information": _measuring_mi,
    "03_effective_ues_reduce_mi": _effective_ues,
    "04_deeper_networks_lower_mi": _deeper,
    "05_sharpness_aware_learnability": _sal,
    "06_theorems_on_examples": lambda p: [],
    "07_notes_on_the_papers": lambda p: [],
    "11_adversarial_training": _adversarial_training,
    "12_augmentations_and_purifications": _augmentations,
    "13_what_makes_miue_work": _ablations,
    "14_how_transferable": _transfer,
    "protect": _protect,
}


# every chapter page of the book (chapter 8 reads the full profile's records, listed by its study)
PAGES = [*CHAPTERS, "08_at_the_paper_sample_size"]

# the pages whose runs are studies at other profiles than the book's: page → ((study, profile), ...); a
# profile of None is the book's own (the Reproduce page's second cost table)
PAGE_STUDIES = {"08_at_the_paper_sample_size": (("paper_sample_size", "full"), ("size_curve", None),
                                                ("width_curve", None)),
                "cifar10_jpeg": (("cifar_calibration", None), ("cifar_table2", "cifar")),
                "claims": (("verdict_seeds", None),)}


# The CIFAR profile's calibration (the CIFAR issue): clean ResNet-18 victims on the CIFAR-10 JPEG copy at
# (training images, width, epochs), the cpu recipe otherwise (SGD lr 0.1, cosine, weight decay 5e-4, batch 128),
# tested on all 10,000 test images: (training images, width, victim epochs, precision). The cpu recipe itself
# (4,000 images, width 1/8, 20 epochs) comes first, in float32 and in bf16 (the same victim at both
# precisions), then wider and longer settings in bf16 (2.0-2.5x faster than float32 on 2 CPU cores)
CIFAR_CALIBRATION = ((4000, 0.125, 20, "auto"), (4000, 0.125, 20, "bf16"), (20000, 0.25, 30, "bf16"),
                     (50000, 0.25, 15, "bf16"), (20000, 0.5, 20, "bf16"))


def calibration_profile(p: Profile, n_train: int, width: float, epochs: int, precision: str = "auto") -> Profile:
    return p.override(dataset="cifar10-jpeg", n_train=n_train, n_test=None, width=width, victim_epochs=epochs,
                      precision=precision)


def _cifar_calibration(p: Profile) -> list:
    """Clean victims on the CIFAR-10 JPEG copy at each setting of :data:`CIFAR_CALIBRATION` (seed 0)."""
    return [ex.victim_spec(calibration_profile(p, *setting), "clean", 0) for setting in CIFAR_CALIBRATION]


CIFAR_TARGET = (80.0, 15.0)  # the CIFAR issue's bar: a clean victim at >= 80% for <= about 15 min on 2 cores


def cifar_calibration_table(p: Profile, store: RunStore | None = None):
    """The calibration read from its records (nothing computed): per setting of :data:`CIFAR_CALIBRATION`, the
    clean victim's accuracy on the copy's 10,000 test images and its compute time on the recording device,
    whether it meets :data:`CIFAR_TARGET`, and which setting the ``cifar`` profile keeps. A missing run's row
    says so."""
    import pandas as pd
    from .profiles import profile
    store = store or RunStore()
    chosen = profile("cifar")
    rows = []
    for n, w, e, prec in CIFAR_CALIBRATION:
        spec = ex.victim_spec(calibration_profile(p, n, w, e, prec), "clean", 0)
        rec = store.lookup(spec)
        acc = None if rec is None else 100 * rec["metrics"]["test_acc"]
        minutes = None if rec is None else compute_seconds(rec) / 60
        keep = (n, w, e, prec) == (chosen.n_train, chosen.width, chosen.victim_epochs, chosen.precision)
        rows.append({"training images": f"{n:,}", "width": f"1/{round(1 / w)}" if w < 1 else f"{w:g}",
                     "victim epochs": e, "precision": "float32" if prec == "auto" else prec,
                     "clean test accuracy (%)": "not run" if acc is None else f"{acc:.2f}",
                     "minutes on 2 CPU cores": "" if minutes is None else f"{minutes:.1f}",
                     "device": "" if rec is None else rec["provenance"].get("device", ""),
                     f">= {CIFAR_TARGET[0]:g}% in <= {CIFAR_TARGET[1]:g} min": "" if acc is None else
                     ("yes" if acc >= CIFAR_TARGET[0] and minutes <= CIFAR_TARGET[1] else "no"),
                     "the cifar profile": "kept" if keep else ""})
    return pd.DataFrame(rows)


# Table 2 on the CIFAR-10 copy (claim C3 first): seed 0 of the methods in the paper's Table 2 (and clean, random and
# the authors'-code MI-UE), then their seeds 1 and 2 (the methods a claim's verdict reads), then one seed of the
# book's other attacks, the cheap model-free ones first
CIFAR_TABLE2_SEEDED = ("clean", "random", "em", "ap", "miue", "miue-code", "tue", "ntga", "sem", "rem")
CIFAR_TABLE2_ONE_SEED = ("ar", "lsp", "ops", "entf", "gue", "dc")


def _cifar_table2(p: Profile) -> list:
    """Victims of Table 2 on the CIFAR-10 JPEG copy at profile ``p`` (the ``cifar`` profile), in the order to
    compute them: :data:`CIFAR_TABLE2_SEEDED` at every seed (seed 0 of all first), then
    :data:`CIFAR_TABLE2_ONE_SEED` at the first seed."""
    first, rest = p.seeds[0], p.seeds[1:]
    return ([ex.victim_spec(p, m, first) for m in CIFAR_TABLE2_SEEDED]
            + [ex.victim_spec(p, m, s) for s in rest for m in CIFAR_TABLE2_SEEDED]
            + [ex.victim_spec(p, m, first) for m in CIFAR_TABLE2_ONE_SEED])


# grids that no chapter executes yet (run in the background with `python -m miue.grid`)
STUDIES = {"05_sal_under_defenses": _sal_defenses,
           "paper_sample_size": _paper_sample_size, "grid_check": _grid_check, "size_curve": _size_curve,
           "width_curve": _width_curve, "cifar_calibration": _cifar_calibration,
           "cifar_table2": _cifar_table2, "verdict_seeds": _verdict_seeds}


def chapter_specs(chapter: str, p: Profile) -> list:
    """Every run ``chapter`` reads at profile ``p`` (with its dependencies), computing nothing."""
    lists = {**CHAPTERS, **STUDIES}
    if chapter not in lists:
        raise ValueError(f"unknown chapter {chapter!r}; choose one of {', '.join(lists)}")
    return _with_deps(lists[chapter](p))


def chapter_runs(p: Profile):
    """``(chapter, specs, new)`` for each chapter of :data:`CHAPTERS` at profile ``p``, in order; ``new`` holds
    the addresses no earlier chapter lists (the runs a chapter adds to the book's recompute time)."""
    earlier = set()
    for chapter in CHAPTERS:
        specs = chapter_specs(chapter, p)
        yield chapter, specs, {s.address for s in specs} - earlier
        earlier |= {s.address for s in specs}


def cost_table(p: Profile, store: RunStore | None = None):
    """Per chapter: runs listed, runs recorded, and their recorded compute time (the recompute time from
    scratch on the recording machine; :func:`miue.runs.compute_seconds`: CPU time per thread where recorded,
    else wall time)."""
    import pandas as pd
    store = store or RunStore()
    rows = []
    for chapter, specs, new in chapter_runs(p):
        seconds, new_seconds, have, devices = 0.0, 0.0, 0, set()
        for s in specs:
            rec = store.lookup(s)
            if rec is not None:
                have += 1
                seconds += compute_seconds(rec)
                devices.add(f"{rec['provenance']['device']}, {rec['provenance'].get('torch_threads', '?')} threads")
                if s.address in new:
                    new_seconds += compute_seconds(rec)
        rows.append({"chapter": chapter, "runs": len(specs), "recorded": have,
                     "all its runs (CPU-hours)": round(seconds / 3600, 2),
                     "new to this chapter (CPU-hours)": round(new_seconds / 3600, 2),
                     "recorded on": "; ".join(sorted(devices))})
    return pd.DataFrame(rows).set_index("chapter")


def cost_without_inputs_kept_apart(p: Profile, store: RunStore | None = None) -> tuple[int, float]:
    """``(runs, seconds)`` of the book's recorded runs at profile ``p`` (each counted once) whose record predates
    keeping apart the time spent computing inputs inside a run: where such a run regenerated an input (a poison
    or a victim whose artifacts a lost cache lacked), its compute time counts that input a second time."""
    store = store or RunStore()
    runs, seconds = 0, 0.0
    for _, specs, new in chapter_runs(p):
        for s in specs:
            rec = store.lookup(s) if s.address in new else None
            if rec is not None and "inputs_cpu_time_s" not in rec["provenance"]:
                runs += 1
                seconds += compute_seconds(rec)
    return runs, seconds


def generation_budgets(p: Profile, n_train: int | None, methods=("em", "ap", "miue", "rem", "sem")) -> str:
    """The generation budgets of ``methods`` at profile ``p`` in one line, for a setting table: EM's round cap,
    AP's iterations × restarts, MI-UE's epochs, REM's and SEM's source-training steps with the passes over
    ``n_train`` images they make (the paper's: ``generation_budgets(profile("paper"), 50000)``)."""
    parts = []
    for m in methods:
        c = ex.attack_config(p, m)
        if m == "em":
            parts.append(f"EM at most {c['max_rounds']} rounds")
        elif m == "ap":
            parts.append(f"AP {c['iterations']} iterations × {c['restarts']} restart{'s' if c['restarts'] != 1 else ''}")
        elif m in ("miue", "miue-code"):
            parts.append(f"{'MI-UE' if m == 'miue' else 'MI-UE (code)'} {c['epochs']} epochs")
        elif m in ("rem", "sem"):
            passes = f" (≈{c['steps'] * c['batch_size'] / n_train:.2g} passes)" if n_train else ""
            parts.append(f"{m.upper()} {c['steps']:,} source steps of {c['batch_size']}{passes}")
    return "; ".join(parts)
