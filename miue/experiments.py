"""The units notebooks call: a poison, a victim trained on it, the MI of its features, as stored runs.

``*_spec(profile, ...)`` builds a run's frozen spec (:mod:`miue.specs`) from a profile; :func:`run` executes
any spec, reading its record from the :class:`RunStore` and computing only what is missing. Reading a
record never needs its artifacts; a run that needs a missing artifact (the poison tensor for a new victim,
a victim's weights for a new estimate) regenerates it into the cache through :func:`artifact` and leaves
the committed record as it was. ``poison``, ``victim``, ``mutual_information`` … are the profile-level
shorthands the chapters call.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import time
import warnings
from pathlib import Path

import torch

from . import estimators, feature_covariance, settings
from .attacks import ATTACKS
from .checkpoint import load_tensors
from .data import ImageDataset, load, stratified_subset
from .defenses import create_defense
from .models import MODELS, create_model, narrow_batchnorms
from .poisons import Poison
from .profiles import Profile
from .runs import RunStore, config_hash
from .specs import CovarianceSpec, DenoiserSpec, MISpec, PoisonSpec, PurifierSpec, SeparabilitySpec, Spec, VictimSpec, freeze
from .train import Recipe, evaluate, extract_features, fit, per_class_accuracy, resolve_device, run_precision

CLEAN = "clean"
CURVE_TEST_SIZE = 2000  # per-epoch learning curves use a fixed stratified test subset of this size


@functools.lru_cache(maxsize=8)
def _splits(dataset: str, n_train: int | None, n_test: int | None) -> tuple[ImageDataset, ImageDataset]:
    return (stratified_subset(load(dataset, "train"), n_train, seed=0),
            stratified_subset(load(dataset, "test"), n_test, seed=0))


def datasets(p: Profile) -> tuple[ImageDataset, ImageDataset]:
    """The profile's (training subset, test subset)."""
    return _splits(p.dataset, p.n_train, p.n_test)


def check_method(method: str) -> None:
    if method != CLEAN and method not in ATTACKS:
        raise ValueError(f"unknown method {method!r}; choose 'clean' or one of {', '.join(ATTACKS)}")


def attack_config(p: Profile, method: str, **extra) -> dict:
    """The full attack config: the method's paper defaults ← the profile's model/width ← profile overrides."""
    return settings.address(_attack(p, method, **extra))


def _attack(p: Profile, method: str, **extra):
    cls = ATTACKS[method]
    names = {f.name for f in dataclasses.fields(cls.Config)}
    chosen = {k: v for k, v in (("model", p.model), ("width", p.width)) if k in names}
    if p.precision != "auto":
        chosen["precision"] = p.precision
    chosen.update(p.attack_settings(method))
    chosen.update(extra)
    return cls(**chosen).config


def poison_spec(p: Profile, method: str, classes=None, fraction: float = 1.0, after_epoch: int = 0,
                **extra) -> PoisonSpec | None:
    """The spec of ``method``'s poison on the profile's training subset (None for ``clean``); ``after_epoch``
    k ≥ 1: its snapshot after generation epoch k."""
    check_method(method)
    if method == CLEAN:
        if after_epoch:
            raise ValueError("clean data has no generation epochs: after_epoch is for a poison's snapshots")
        return None
    return PoisonSpec(method, _attack(p, method, **extra), p.dataset, p.n_train, 0, classes, fraction, after_epoch)


def _encode(t: torch.Tensor) -> dict:
    t = t.contiguous()
    return {"dtype": str(t.dtype).replace("torch.", ""), "shape": list(t.shape),
            "data": base64.b64encode(t.numpy().tobytes()).decode()}


def decode(sample: dict) -> torch.Tensor:
    """Inverse of the base64 encoding used for image samples in records."""
    import numpy as np
    arr = np.frombuffer(base64.b64decode(sample["data"]), dtype=sample["dtype"]).reshape(sample["shape"])
    return torch.from_numpy(arr.copy())


def _sample_indices(ds: ImageDataset, k: int = 5) -> torch.Tensor:
    return torch.stack([torch.nonzero(ds.labels == c).flatten()[0] for c in range(min(k, ds.num_classes))])


def spec_splits(spec) -> tuple[ImageDataset, ImageDataset]:
    return _splits(spec.dataset, spec.n_train, getattr(spec, "n_test", None))


def poison_mask(spec: PoisonSpec, labels: torch.Tensor) -> torch.Tensor | None:
    """Which images keep their perturbation under ``spec.classes`` / ``spec.fraction`` (None: all)."""
    if spec.classes is None and spec.fraction == 1.0:
        return None
    keep = torch.ones(len(labels), dtype=torch.bool)
    if spec.classes is not None:
        keep &= torch.isin(labels, torch.tensor(spec.classes))
    if spec.fraction != 1.0:
        g = torch.Generator().manual_seed(spec.attack.seed + 12345)
        chosen = torch.zeros(len(labels), dtype=torch.bool)
        chosen[torch.randperm(len(labels), generator=g)[:round(spec.fraction * len(labels))]] = True
        keep &= chosen
    return keep


POISON_FILE = "poison.safetensors"
MODEL_FILE = "model.safetensors"
PURIFIER_FILE = "purifier.safetensors"


def compute_purifier(spec: PurifierSpec, ctx, store, progress, device) -> dict:
    train, _ = spec_splits(spec)
    if spec.poison is not None:
        train = train.with_images(load_poison(spec.poison, store, progress, str(device)).apply(train.images))
    defense = create_defense({"name": spec.defense[0], **dict(spec.defense[1])})
    torch.manual_seed(spec.seed)
    extra = {}
    if spec.denoiser() is not None:
        den = spec.denoiser()
        path = artifact(den, DENOISER_FILE, store, progress, str(device))
        extra = {"denoiser": (load_tensors(path)[0], train.num_classes), "progress": progress}
    state = {k: v.detach().cpu() for k, v in defense.fit(train.images, train.labels, device, **extra).items()}
    digest = ctx.save_artifact(PURIFIER_FILE, state)
    purified = defense.purify(train.images, state)
    levels = purified.float() * (255 if purified.is_floating_point() else 1)
    change = (levels - train.images.float()).abs()
    return {"metrics": {"fit_seconds": ctx.elapsed(), "mean_abs_change_levels": float(change.mean()),
                        "n_train": len(train)}, "artifacts": {PURIFIER_FILE: digest}}


DENOISER_FILE = "denoiser.safetensors"


def holdout_split(dataset: str, exclude_n_train: int | None, n: int, seed: int = 1) -> ImageDataset:
    """``n`` clean training-split images (class-balanced) disjoint from the published subset of
    ``exclude_n_train`` images: the data a defender could hold besides the published set."""
    full = load(dataset, "train")
    if exclude_n_train is None or exclude_n_train >= len(full):
        raise ValueError(f"a held-out clean split needs images outside the published set, but the profile publishes "
                         f"the whole {dataset} training split; lower n_train (AVA and LE train their denoiser on "
                         f"the rest)")
    used = stratified_subset(full, exclude_n_train, seed=0).indices
    rest = torch.ones(len(full), dtype=torch.bool)
    rest[used] = False
    pool = full.take(torch.nonzero(rest).flatten())
    if n > len(pool):
        raise ValueError(f"the denoiser asks for {n} held-out images but only {len(pool)} are outside the published set")
    return stratified_subset(pool, n, seed=seed)


def compute_denoiser(spec: DenoiserSpec, ctx, store, progress, device) -> dict:
    from .defenses.diffusion import DenoiserSettings, train_denoiser
    held = holdout_split(spec.dataset, spec.exclude_n_train, spec.images)
    settings_ = DenoiserSettings(spec.images, spec.steps, spec.batch_size, spec.lr, spec.width, spec.label_dropout,
                                 spec.seed)
    state, losses = train_denoiser(held.images, held.labels, held.num_classes, settings_, device, progress)
    digest = ctx.save_artifact(DENOISER_FILE, state)
    return {"metrics": {"final_loss": losses[-1] if losses else None, "n_images": len(held),
                        "train_seconds": ctx.elapsed()},
            "history": [{"step": 100 * (i + 1), "loss": v} for i, v in enumerate(losses)],
            "artifacts": {DENOISER_FILE: digest}}


SNAPSHOT_PREFIX = "snapshot-"


def snapshot_file(epoch: int) -> str:
    return f"{SNAPSHOT_PREFIX}{epoch:04d}.safetensors"


def _snapshot_writer(ctx, attack, train: ImageDataset):
    """on_epoch hook that caches δ after each generation epoch, as the 8-bit offsets it would publish."""
    def keep(epoch: int, delta: torch.Tensor) -> None:
        offsets = Poison(attack.published(train, delta).detach().float().cpu(), attack.config.eps, {},
                         attack.norm).apply(train.images).to(torch.int16) - train.images.to(torch.int16)
        small = offsets.abs().max().item() <= 127
        ctx.save_artifact(snapshot_file(epoch), {"offsets": offsets.to(torch.int8 if small else torch.int16)},
                          {"after_epoch": epoch})
    return keep


def _drop_checkpoint_without_snapshots(checkpoint, ctx) -> None:
    """A generation that must keep its snapshots cannot resume from a checkpoint written without them (or
    past a snapshot lost to an interruption between the two writes): it restarts."""
    epochs = checkpoint.saved_epoch()
    if epochs is None:
        return
    if any(not (ctx.artifacts / snapshot_file(k)).is_file() for k in range(1, epochs + 1)):
        warnings.warn(f"{ctx.artifacts}: its checkpoint at epoch {epochs} lacks earlier snapshots; the generation "
                      "restarts to keep them", stacklevel=3)
        checkpoint.remove()


def _snapshot(spec: PoisonSpec, train: ImageDataset, store, progress, device) -> Poison:
    """Snapshot ``spec.after_epoch`` of the finished run, generating that run (keeping every epoch's
    snapshot) when its cache lacks them."""
    run_spec, name = spec.finished(), snapshot_file(spec.after_epoch)
    cfg = run_spec.config()
    h = config_hash("poison", cfg)

    def generate(ctx):
        if store.verified_artifact("poison", h, name) is not None:  # another process kept them meanwhile
            return store.get("poison", cfg) or {"metrics": {}}
        return compute_poison(run_spec, ctx, store, progress, device, snapshots=True)

    path = store.verified_artifact("poison", h, name)
    for force in (False, True):  # another process may have recorded the run without snapshots meanwhile
        if path is not None:
            break
        recorded = force or store.get("poison", cfg) is not None
        if recorded:
            warnings.warn(f"{run_spec.address}'s per-epoch snapshots are not in the cache: generating it again "
                          f"to keep them (its record stays as it is)", stacklevel=3)
        store.get_or_compute("poison", cfg, generate, device=str(device), seed=run_spec.attack.seed, force=recorded,
                             write=not recorded)
        path = store.verified_artifact("poison", h, name)
    if path is None:
        raise RuntimeError(f"generating {run_spec.address} did not leave its snapshot {name} (did it stop "
                           f"before epoch {spec.after_epoch}?)")
    offsets = load_tensors(path)[0]["offsets"]
    if offsets.shape != train.images.shape:
        raise RuntimeError(f"{path} holds offsets of shape {tuple(offsets.shape)}, not the training set's "
                           f"{tuple(train.images.shape)}: delete it to regenerate")
    full = store.get("poison", cfg) or {}
    attack = ATTACKS[spec.method](spec.attack)
    return attack._poison(train, offsets.float() / 255, history=full.get("history", [])[:spec.after_epoch])


def compute_poison(spec: PoisonSpec, ctx, store, progress, device, snapshots: bool = False) -> dict:
    train, _ = spec_splits(spec)
    mask = poison_mask(spec, train.labels)  # checked before the (expensive) generation
    if mask is not None:
        if spec.classes is not None and max(spec.classes) >= train.num_classes:
            raise ValueError(f"poison classes {list(spec.classes)}: {spec.dataset} has classes 0-{train.num_classes - 1}")
        if not mask.any():
            raise ValueError(f"poison classes {spec.classes} with fraction {spec.fraction} select no image")
    if mask is not None:  # cut from the whole-set poison (its own run, generated once and shared)
        result = load_poison(spec.whole(), store, progress, str(device))
    elif spec.after_epoch:
        result = _snapshot(spec, train, store, progress, device)
    else:
        attack = ATTACKS[spec.method](spec.attack)
        checkpoint, keep = ctx.checkpoint(), None
        if snapshots:
            keep = _snapshot_writer(ctx, attack, train)
            _drop_checkpoint_without_snapshots(checkpoint, ctx)
        result = attack.generate(train, device=device, progress=progress, checkpoint=checkpoint, on_epoch=keep)
    if mask is not None:
        checks = result.meta.get("checks", {})
        result = result.restricted(mask)
        result.meta["checks"] = {**checks, **result.validate(train.images), "poisoned_images": int(mask.sum())}
    seconds = ctx.elapsed()
    digest = ctx.save_artifact(POISON_FILE, *_poison_payload(result))
    for f in ctx.artifacts.glob("*.safetensors"):
        if f.name != POISON_FILE and not f.name.startswith(SNAPSHOT_PREFIX):
            f.unlink()
    idx = _sample_indices(train)
    metrics = {"generation_seconds": seconds, "n_train": len(train), "eps": result.eps, "norm": result.norm,
               **result.meta["checks"]}
    for key in ("converged", "rounds", "target_success"):
        if key in result.meta:
            metrics[key] = result.meta[key]
    return {"metrics": metrics, "history": result.meta.get("history", []),
            "samples": {"labels": train.labels[idx].tolist(), "clean": _encode(train.images[idx]),
                        "poisoned": _encode(result.apply(train.images)[idx])},
            "artifacts": {POISON_FILE: digest}}


def _poison_payload(poison: Poison):
    meta = {"eps": poison.eps, **poison.meta}
    if poison.norm != "linf":
        meta["norm"] = poison.norm
    return {"delta": poison.delta.float().cpu()}, meta


def run(spec: Spec, store: RunStore | None = None, progress: bool = True, device: str = "auto",
        force: bool = False) -> dict:
    """The record of ``spec``: read from the store, or computed (with what it depends on) when missing."""
    if not isinstance(spec, Spec) or type(spec).compute is Spec.compute:
        raise TypeError(f"run() takes a run spec (a miue.specs.Spec that names its computation), got {spec!r}")
    store = store or RunStore()
    dev = resolve_device(device)
    seed = getattr(spec, "seed", None)
    if isinstance(spec, PoisonSpec):
        seed = spec.attack.seed
    return store.get_or_compute(spec.kind, spec.config(), lambda ctx: spec.compute(ctx, store, progress, dev),
                                device=str(dev), seed=seed, force=force)


def artifact(spec: Spec, name: str, store: RunStore | None = None, progress: bool = True,
             device: str = "auto") -> Path:
    """The verified cached artifact ``name`` of ``spec``'s run. When the cache lacks it (a fresh clone has the
    records only) or it fails its hash, the run is recomputed into the cache and the committed record is
    left exactly as it was."""
    store = store or RunStore()
    record = run(spec, store, progress, device)
    path = store.verified_artifact(spec.kind, record["hash"], name)
    if path is None:
        dev = resolve_device(device)

        computed = []

        def regenerate(ctx):
            if store.verified_artifact(spec.kind, record["hash"], name) is not None:  # another process did it
                return {"metrics": record["metrics"]}
            computed.append(True)
            return spec.compute(ctx, store, progress, dev)

        fresh = store.get_or_compute(spec.kind, spec.config(), regenerate, device=str(dev), force=True, write=False)
        if computed:
            store.note_regeneration(record, fresh)
        path = store.verified_artifact(spec.kind, record["hash"], name)
        if path is None:
            raise RuntimeError(f"regenerating {spec.address} did not produce {name}")
        committed = (record.get("artifacts") or {}).get(name)
        made = (fresh.get("artifacts") or {}).get(name)
        if committed and made and committed != made:
            warnings.warn(f"{spec.address}: the regenerated {name} differs from the one its record was computed "
                          f"with (re-runs drift with threads and hardware; see the Reproduce page); runs computed "
                          f"from it now use the regenerated one", stacklevel=2)
    return path


def load_poison(spec: PoisonSpec, store: RunStore | None = None, progress: bool = True,
                device: str = "auto") -> Poison:
    """The poison tensor of ``spec``, verified against its hash and re-validated against its budget."""
    train, _ = spec_splits(spec)
    return Poison.load(artifact(spec, POISON_FILE, store, progress, device), images=train.images)


def _needs_poison(method: str) -> None:
    if method == CLEAN:
        raise ValueError("clean data has no poison: use the clean training set (miue.experiments.datasets) or "
                         "pick an attack from " + ", ".join(ATTACKS))


def poison_record(p: Profile, method: str, store: RunStore | None = None, progress: bool = True, **extra) -> dict:
    """The record of ``method``'s poison (no tensor needed: nothing is regenerated when the record exists)."""
    _needs_poison(method)
    return run(poison_spec(p, method, **extra), store, progress, p.device)


def poison(p: Profile, method: str, store: RunStore | None = None, progress: bool = True, **extra):
    """(record, Poison) of ``method`` on the profile's training subset; generated if missing."""
    _needs_poison(method)
    spec = poison_spec(p, method, **extra)
    return run(spec, store, progress, p.device), load_poison(spec, store, progress, p.device)


def _check_arch(arch: str | None) -> str | None:
    if arch is not None and arch not in MODELS:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {', '.join(MODELS)}")
    return arch


def victim_spec(p: Profile, method: str, seed: int, arch: str | None = None, defense=None, contrastive=None,
                victim_width: float | None = None, **extra) -> VictimSpec:
    """Spec of a victim; ``arch`` (a MODELS name) replaces the profile's model for the victim only: the
    poison is still generated with the profile's source model (as in the paper's transfer tables), and
    ``victim_width`` the profile's width multiplier for the victim only (the transfer chapter's shallow
    victims keep their own size). ``defense`` is a defense name or ``{"name": ..., **settings}`` (see
    :mod:`miue.defenses`)."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"a victim seed is an integer >= 0, got {seed!r}")
    if victim_width is not None and (isinstance(victim_width, bool) or not isinstance(victim_width, (int, float))
                                     or not 0 < victim_width <= 8):
        raise ValueError(f"victim_width is a width multiplier in (0, 8], got {victim_width!r}")
    recipe = Recipe(epochs=p.victim_epochs, batch_size=p.victim_batch_size, lr=p.victim_lr,
                    weight_decay=p.victim_weight_decay, precision=p.precision)
    d = None
    if defense is not None:
        given = create_defense(defense).spec() if not isinstance(defense, (str, dict)) else \
            {"name": defense} if isinstance(defense, str) else dict(defense)  # the caller's settings only
        d = create_defense({**p.defenses.get(given.get("name"), {}), **given}).spec()  # the profile's, then the caller's
        recipe = dataclasses.replace(recipe, **p.defense_recipes.get(d["name"], {}))
        d = (d.pop("name"), freeze(d))
    c = None
    if contrastive is not None:  # a SimCLR victim: {} for the profile's settings, or settings to change
        from .contrastive import SimCLRConfig
        if not isinstance(contrastive, dict):
            raise TypeError(f"contrastive must be a dict of SimCLR settings ({{}} for the profile's), got {contrastive!r}")
        chosen = settings.configure("SimCLR victim", SimCLRConfig, None, {**p.simclr, **contrastive})
        c = freeze(settings.address(chosen))
    return VictimSpec(poison_spec(p, method, **extra), method, p.dataset, p.n_train, p.n_test,
                      _check_arch(arch) or p.model, p.width if victim_width is None else float(victim_width), recipe,
                      seed, d, c)


def victim_config(p: Profile, method: str, seed: int, arch: str | None = None, **extra) -> dict:
    return victim_spec(p, method, seed, arch, **extra).config()


def defended(spec: VictimSpec, train: ImageDataset, store, progress, device) -> tuple[ImageDataset, object]:
    """(training set, training hook) of ``spec``'s victim under its defense: a data-side defense purifies the
    (published) ``train`` (a fitted one with its purifier run's state), a training-side one is the hook."""
    if spec.defense is None:
        return train, None
    defense = create_defense(spec.defense_dict)
    if defense.kind == "training":
        return train, defense
    state = None
    if defense.fitted:
        state = load_tensors(artifact(spec.purifier(), PURIFIER_FILE, store, progress, str(device)))[0]
    return train.with_images(defense.purify(train.images, state)), None


def _contrastive_victim(spec: VictimSpec, ctx, train: ImageDataset, test: ImageDataset, device, progress) -> dict:
    """Table 20's SimCLR victim: contrastive pre-training on the published images, a linear probe on them."""
    from .contrastive import SimCLRConfig, linear_probe, pretrain
    c = SimCLRConfig(**dict(spec.contrastive))
    ch, h, _ = train.shape
    torch.manual_seed(spec.seed)
    model = create_model(spec.model, train.num_classes, ch, h, spec.width)
    history = pretrain(model, train.images, c, spec.seed, device, progress, ctx.checkpoint())
    t0 = time.perf_counter()
    train_f, test_f = extract_features(model, train.images, device), extract_features(model, test.images, device)
    train_acc, test_acc = linear_probe(train_f, train.labels, test_f, test.labels)
    digest = ctx.save_artifact(MODEL_FILE, model.state_dict())
    ctx.checkpoint().remove()
    return {"metrics": {"test_acc": test_acc, "train_acc": train_acc, "n_train": len(train), "n_test": len(test),
                        "probe_seconds": time.perf_counter() - t0, "train_seconds": ctx.elapsed()},
            "history": history, "artifacts": {MODEL_FILE: digest}}


def compute_victim(spec: VictimSpec, ctx, store, progress, device) -> dict:
    train, test = spec_splits(spec)
    if spec.poison is not None:
        pois = load_poison(spec.poison, store, progress, str(device))
        train = train.with_images(pois.apply(train.images))
    train, hook = defended(spec, train, store, progress, device)
    if spec.contrastive is not None:
        return _contrastive_victim(spec, ctx, train, test, device, progress)
    curve = stratified_subset(test, CURVE_TEST_SIZE, seed=1)
    c, h, _ = train.shape
    torch.manual_seed(spec.seed)
    model = narrow_batchnorms(create_model(spec.model, train.num_classes, c, h, spec.width))
    history = fit(model, train, spec.recipe, test=curve, seed=spec.seed, device=device, progress=progress,
                  checkpoint=ctx.checkpoint(), desc=f"victim {spec.model} {spec.method} s{spec.seed}", hook=hook)
    with run_precision(spec.recipe.precision):  # evaluated as trained
        test_loss, test_acc = evaluate(model, test, device)
        train_loss, train_acc = evaluate(model, train, device)
        per_class = per_class_accuracy(model, test, device)
    digest = ctx.save_artifact(MODEL_FILE, model.state_dict())
    ctx.checkpoint().remove()
    return {"metrics": {"test_acc": test_acc, "test_loss": test_loss, "train_acc": train_acc,
                        "train_loss": train_loss, "n_train": len(train), "n_test": len(test),
                        "test_acc_per_class": per_class,
                        "train_seconds": sum(e["seconds"] for e in history)},
            "history": history, "artifacts": {MODEL_FILE: digest}}


def victim(p: Profile, method: str, seed: int = 0, store: RunStore | None = None, progress: bool = True,
           force: bool = False, arch: str | None = None, defense=None, **extra) -> dict:
    """Record of a victim (the profile's model, or ``arch``) trained (``seed``) on the profile's data
    poisoned by ``method`` (and defended by ``defense``)."""
    return run(victim_spec(p, method, seed, arch, defense, **extra), store, progress, p.device, force)


def victim_model(spec: VictimSpec, store: RunStore | None = None, progress: bool = True, device: str = "auto"):
    """The trained victim network of ``spec``; retrained into the cache (same config and seed) when only its
    record is at hand."""
    path = artifact(spec, MODEL_FILE, store, progress, device)
    train, _ = spec_splits(spec)
    c, h, _ = train.shape
    model = create_model(spec.model, train.num_classes, c, h, spec.width)
    model.load_state_dict(load_tensors(path)[0])
    return model


MI_ESTIMATORS = ("histogram", "kde", "ksg", "mine")


def mi_spec(p: Profile, method: str, seed: int, arch: str | None = None, estimator: str = "histogram",
            shared: bool = False, **extra) -> MISpec:
    """Spec of an MI estimate: the paper's histogram sliced MI by default (App. F); ``estimator`` picks
    another 1-D estimator (its slice count is ``p.estimator_slices[estimator]``), ``shared`` the variant
    that projects X and Y on one shared direction instead of Eq. 17's independent ones."""
    if estimator not in MI_ESTIMATORS:
        raise ValueError(f"unknown estimator {estimator!r}; choose one of {', '.join(MI_ESTIMATORS)}")
    v = victim_spec(p, method, seed, arch, **extra)
    if estimator == "histogram":
        return MISpec(v, estimator, p.mi_slices, p.mi_bins, bool(shared))
    chosen = estimators.estimator_settings(estimator)
    if estimator == "mine":
        chosen["iterations"] = p.mine_iterations
    if estimator == "kde":
        chosen["evaluation"], chosen["grid"] = p.kde_evaluation, p.kde_grid
    chosen = estimators.estimator_address(estimator, chosen)  # settings added later stay out at their default
    return MISpec(v, estimator, p.estimator_slices.get(estimator, p.mi_slices), None, bool(shared), freeze(chosen))


def mi_config(p: Profile, method: str, seed: int, arch: str | None = None, estimator: str = "histogram",
              shared: bool = False, **extra) -> dict:
    return mi_spec(p, method, seed, arch, estimator, shared, **extra).config()


def features(spec: VictimSpec, store: RunStore | None = None, progress: bool = True, device: str = "auto"):
    """(g(X), g(X'), labels): the victim's features of the clean and of the poisoned training subset. The last
    two victims' features are kept in memory: a grid's MI estimates of one victim extract them once."""
    store = store or RunStore()
    key = (spec.address, str(store.root), str(store.cache), str(resolve_device(device)))
    hit = _FEATURES.get(key)
    if hit is None:
        hit = _extract(spec, store, progress, device)
        _FEATURES[key] = hit
        while len(_FEATURES) > 2:
            _FEATURES.pop(next(iter(_FEATURES)))
    return hit


_FEATURES: dict = {}


def _extract(spec: VictimSpec, store: RunStore, progress: bool, device: str):
    dev = resolve_device(device)
    train, _ = spec_splits(spec)
    model = victim_model(spec, store, progress, device).to(dev)
    poisoned = train.images
    if spec.poison is not None:
        poisoned = load_poison(spec.poison, store, progress, device).apply(train.images)
    return extract_features(model, train.images, dev), extract_features(model, poisoned, dev), train.labels


def effective_rank(features: torch.Tensor) -> float:
    """exp of the entropy of the normalized covariance eigenvalues (Roy & Vetterli, 2007): how many feature
    directions carry the variance (d for isotropic features, 1 for features on a line)."""
    f = features.double()
    ev = torch.linalg.eigvalsh(torch.cov(f.T)).clamp_min(0)
    if ev.sum() <= 0:
        return 0.0
    q = ev / ev.sum()
    q = q[q > 0]
    return float(torch.exp(-(q * q.log()).sum()))


def compute_mi(spec: MISpec, ctx, store, progress, device) -> dict:
    fx, fy, labels = features(spec.victim, store, progress, str(device))
    t0 = time.perf_counter()
    opts = dict(spec.estimator_settings or ())
    res = estimators.class_conditional_mi(fx, fy, labels, spec.n_slices, spec.bins or 100,
                                          shared=spec.shared_directions, seed=spec.seed, progress=progress,
                                          estimator=spec.estimator,
                                          mine={"iterations": opts.get("iterations", 500)},
                                          kde={"evaluation": opts.get("evaluation", "exact"),
                                               "grid": opts.get("grid", 256)})
    res["estimate_seconds"] = time.perf_counter() - t0
    res["feature_dim"] = fx.shape[1]
    res["effective_rank_clean"] = effective_rank(fx)
    res["effective_rank_poisoned"] = effective_rank(fy)
    return {"metrics": res}


def mutual_information(p: Profile, method: str, seed: int = 0, store: RunStore | None = None,
                       progress: bool = True, arch: str | None = None, estimator: str = "histogram",
                       shared: bool = False, **extra) -> dict:
    """Record of the paper's MI I(g(X), g(X')) for the victim of ``method``/``seed`` (App. F), with baseline.

    g is the victim's feature extractor; X the clean training subset, X' its published poisoned version.
    """
    return run(mi_spec(p, method, seed, arch, estimator, shared, **extra), store, progress, p.device)


def covariance_spec(p: Profile, method: str, seed: int = 0, arch: str | None = None, **extra) -> CovarianceSpec:
    return CovarianceSpec(victim_spec(p, method, seed, arch, **extra), feature_covariance.RIDGE)


def compute_covariance(spec: CovarianceSpec, ctx, store, progress, device) -> dict:
    fx, fy, labels = features(spec.victim, store, progress, str(device))
    return {"metrics": {"poisoned": feature_covariance.class_covariance(fy, labels),
                        "clean": feature_covariance.class_covariance(fx, labels)}}


def covariance(p: Profile, method: str, seed: int = 0, store: RunStore | None = None, progress: bool = True,
               arch: str | None = None, **extra) -> dict:
    """Record of the intra-class covariance of the victim's poisoned features (Theorem 5.1, Fig. 3)."""
    return run(covariance_spec(p, method, seed, arch, **extra), store, progress, p.device)


SEPARABILITY_TARGETS = ("noise", "poisoned")


def separability_spec(p: Profile, method: str, target: str, **extra) -> SeparabilitySpec:
    if target not in SEPARABILITY_TARGETS:
        raise ValueError(f"target must be one of {SEPARABILITY_TARGETS}, got {target!r}")
    if target == "noise" and method == CLEAN:
        raise ValueError("clean data has no noise; use target='poisoned' for the clean row")
    recipe = Recipe(epochs=p.victim_epochs, batch_size=p.victim_batch_size, lr=p.victim_lr,
                    weight_decay=p.victim_weight_decay, augment=False, precision=p.precision)
    return SeparabilitySpec(poison_spec(p, method, **extra), method, p.dataset, p.n_train, target, recipe)


def compute_separability(spec: SeparabilitySpec, ctx, store, progress, device) -> dict:
    train, _ = spec_splits(spec)
    images = train.images
    if spec.poison is not None:
        images = load_poison(spec.poison, store, progress, str(device)).apply(train.images)
        if spec.target == "noise":
            delta = images.float() - train.images.float()
            bound = max(float(delta.abs().max()), 1.0)
            images = ((delta / bound + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
    data = train.with_images(images)
    c, h, _ = data.shape
    torch.manual_seed(0)
    model = create_model("linear", data.num_classes, c, h)
    history = fit(model, data, spec.recipe, seed=0, device=device, progress=progress,
                  desc=f"linear {spec.method} {spec.target}")
    with run_precision(spec.recipe.precision):
        loss, acc = evaluate(model, data, device)
    return {"metrics": {"train_acc": acc, "train_loss": loss}, "history": history}


def separability(p: Profile, method: str, target: str, store: RunStore | None = None, progress: bool = True,
                 **extra) -> dict:
    """Record of linear separability (App. G.5, Table 21): training accuracy of a linear network fitted,
    without augmentation, on the method's noises alone (``target="noise"``) or on its poisoned training set
    (``"poisoned"``; for ``clean``, the clean set). The published noise δ = x' − x is an integer in
    [−ε·255, ε·255] per pixel; it is shown to the network rescaled to the full 8-bit range (an affine map,
    which a linear model with bias absorbs) so that one recipe fits both targets."""
    return run(separability_spec(p, method, target, **extra), store, progress, p.device)
