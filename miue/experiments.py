"""The units notebooks call: a poison, a victim trained on it, the MI of its features, as stored runs.

Each function builds a frozen config from a :class:`~miue.profiles.Profile`, asks the :class:`RunStore`
for its record, and computes only what is missing (a victim needs its poison, an MI estimate its victim's
weights; a fresh clone that has the records but not the cache recomputes nothing it does not need).
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import time

import torch

from . import estimators, feature_covariance
from .attacks import ATTACKS
from .checkpoint import load_tensors, save_tensors
from .data import ImageDataset, load, stratified_subset
from .models import MODELS, create_model
from .poisons import Poison
from .profiles import Profile
from .runs import RunStore
from .train import Recipe, evaluate, extract_features, fit, resolve_device

CLEAN = "clean"
CURVE_TEST_SIZE = 2000  # per-epoch learning curves use a fixed stratified test subset of this size


@functools.lru_cache(maxsize=8)
def _splits(dataset: str, n_train: int | None, n_test: int | None) -> tuple[ImageDataset, ImageDataset]:
    return (stratified_subset(load(dataset, "train"), n_train, seed=0),
            stratified_subset(load(dataset, "test"), n_test, seed=0))


def datasets(p: Profile) -> tuple[ImageDataset, ImageDataset]:
    """The profile's (training subset, test subset)."""
    return _splits(p.dataset, p.n_train, p.n_test)


def _check_method(method: str) -> None:
    if method != CLEAN and method not in ATTACKS:
        raise ValueError(f"unknown method {method!r}; choose 'clean' or one of {', '.join(ATTACKS)}")


def attack_config(p: Profile, method: str, **extra) -> dict:
    """The full attack config: the method's paper defaults ← the profile's model/width ← profile overrides."""
    cls = ATTACKS[method]
    names = {f.name for f in dataclasses.fields(cls.Config)}
    settings = {k: v for k, v in (("model", p.model), ("width", p.width)) if k in names}
    settings.update(p.attack_settings(method))
    settings.update(extra)
    return dataclasses.asdict(cls(**settings).config)


def poison_config(p: Profile, method: str, **extra) -> dict | None:
    _check_method(method)
    if method == CLEAN:
        return None
    return {"dataset": p.dataset, "n_train": p.n_train, "subset_seed": 0, "method": method,
            "attack": attack_config(p, method, **extra)}


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


def poison(p: Profile, method: str, store: RunStore | None = None, progress: bool = True, **extra):
    """(record, Poison) of ``method`` on the profile's training subset; generated if missing."""
    store = store or RunStore()
    cfg = poison_config(p, method, **extra)
    device = resolve_device(p.device)

    def compute(ctx):
        train, _ = datasets(p)
        t0 = time.perf_counter()
        result = ATTACKS[method](**cfg["attack"]).generate(train, device=device, progress=progress,
                                                          checkpoint=ctx.checkpoint())
        seconds = time.perf_counter() - t0
        result.save(ctx.artifacts / "poison.safetensors")
        for f in ctx.artifacts.glob("*.safetensors"):
            if f.name != "poison.safetensors":
                f.unlink()
        idx = _sample_indices(train)
        metrics = {"generation_seconds": seconds, "n_train": len(train), **result.meta["checks"]}
        for key in ("converged", "rounds", "target_success"):
            if key in result.meta:
                metrics[key] = result.meta[key]
        return {"metrics": metrics, "history": result.meta.get("history", []),
                "samples": {"labels": train.labels[idx].tolist(), "clean": _encode(train.images[idx]),
                            "poisoned": _encode(result.apply(train.images)[idx])}}

    record = store.get_or_compute("poison", cfg, compute, device=str(device), seed=cfg["attack"]["seed"])
    path = store.cache / "poison" / record["hash"] / "poison.safetensors"
    if not path.exists():  # fresh clone: the record is committed, the tensor is not; regenerate it
        store.get_or_compute("poison", cfg, compute, device=str(device), force=True)
    return record, Poison.load(path)


def _check_arch(arch: str | None) -> str | None:
    if arch is not None and arch not in MODELS:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {', '.join(MODELS)}")
    return arch


def victim_config(p: Profile, method: str, seed: int, arch: str | None = None, **extra) -> dict:
    """Config of a victim; ``arch`` (a MODELS name) replaces the profile's model for the victim only: the
    poison is still generated with the profile's source model (as in the paper's transfer tables)."""
    recipe = Recipe(epochs=p.victim_epochs, batch_size=p.victim_batch_size, lr=p.victim_lr,
                    weight_decay=p.victim_weight_decay)
    return {"poison": poison_config(p, method, **extra), "dataset": p.dataset, "n_train": p.n_train,
            "n_test": p.n_test, "model": _check_arch(arch) or p.model, "width": p.width,
            "recipe": dataclasses.asdict(recipe), "seed": seed}


def victim(p: Profile, method: str, seed: int = 0, store: RunStore | None = None, progress: bool = True,
           force: bool = False, arch: str | None = None, **extra) -> dict:
    """Record of a victim (the profile's model, or ``arch``) trained (``seed``) on the profile's data
    poisoned by ``method``."""
    store = store or RunStore()
    cfg = victim_config(p, method, seed, arch, **extra)
    device = resolve_device(p.device)

    def compute(ctx):
        train, test = datasets(p)
        if method != CLEAN:
            _, pois = poison(p, method, store, progress, **extra)
            train = train.with_images(pois.apply(train.images))
        curve = stratified_subset(test, CURVE_TEST_SIZE, seed=1)
        c, h, _ = train.shape
        torch.manual_seed(seed)
        model = create_model(cfg["model"], train.num_classes, c, h, p.width)
        history = fit(model, train, Recipe(**cfg["recipe"]), test=curve, seed=seed, device=device,
                      progress=progress, checkpoint=ctx.checkpoint(), desc=f"victim {cfg['model']} {method} s{seed}")
        test_loss, test_acc = evaluate(model, test, device)
        train_loss, train_acc = evaluate(model, train, device)
        save_tensors(ctx.artifacts / "model.safetensors", model.state_dict())
        ctx.checkpoint().remove()
        return {"metrics": {"test_acc": test_acc, "test_loss": test_loss, "train_acc": train_acc,
                            "train_loss": train_loss, "n_train": len(train), "n_test": len(test),
                            "train_seconds": sum(e["seconds"] for e in history)},
                "history": history}

    return store.get_or_compute("victim", cfg, compute, device=str(device), seed=seed, force=force)


def _victim_model(p: Profile, method: str, seed: int, store: RunStore, progress: bool, arch: str | None = None,
                  **extra):
    """The trained victim network; retrained (same config and seed) when only its record is at hand."""
    record = victim(p, method, seed, store, progress, arch=arch, **extra)
    path = store.cache / "victim" / record["hash"] / "model.safetensors"
    if not path.exists():
        victim(p, method, seed, store, progress, force=True, arch=arch, **extra)
    train, _ = datasets(p)
    c, h, _ = train.shape
    model = create_model(arch or p.model, train.num_classes, c, h, p.width)
    model.load_state_dict(load_tensors(path)[0])
    return model


MI_ESTIMATORS = ("histogram", "kde", "ksg", "mine")


def mi_config(p: Profile, method: str, seed: int, arch: str | None = None, estimator: str = "histogram",
              shared: bool = False, **extra) -> dict:
    """Config of an MI estimate: the paper's histogram sliced MI by default (App. F); ``estimator`` picks
    another 1-D estimator (its slice count is ``p.estimator_slices[estimator]``), ``shared`` the variant
    that projects X and Y on one shared direction instead of Eq. 17's independent ones."""
    if estimator not in MI_ESTIMATORS:
        raise ValueError(f"unknown estimator {estimator!r}; choose one of {', '.join(MI_ESTIMATORS)}")
    cfg = {"victim": victim_config(p, method, seed, arch, **extra), "estimator": estimator, "sliced": True,
           "n_slices": p.mi_slices, "bins": p.mi_bins, "shared_directions": bool(shared),
           "class_conditional": True, "features": "train", "seed": 0}
    if estimator != "histogram":
        settings = estimators.estimator_settings(estimator)
        if estimator == "mine":
            settings["iterations"] = p.mine_iterations
        cfg.update(n_slices=p.estimator_slices.get(estimator, p.mi_slices), bins=None, settings=settings)
    return cfg


def victim_features(p: Profile, method: str, seed: int = 0, store: RunStore | None = None, progress: bool = True,
                    arch: str | None = None, **extra) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(g(X), g(X'), labels): the victim's features of the clean and of the poisoned training subset."""
    store = store or RunStore()
    device = resolve_device(p.device)
    train, _ = datasets(p)
    model = _victim_model(p, method, seed, store, progress, arch=arch, **extra).to(device)
    poisoned = train.images
    if method != CLEAN:
        poisoned = poison(p, method, store, progress, **extra)[1].apply(train.images)
    return extract_features(model, train.images, device), extract_features(model, poisoned, device), train.labels


def mutual_information(p: Profile, method: str, seed: int = 0, store: RunStore | None = None,
                       progress: bool = True, arch: str | None = None, estimator: str = "histogram",
                       shared: bool = False, **extra) -> dict:
    """Record of the paper's MI I(g(X), g(X')) for the victim of ``method``/``seed`` (App. F), with baseline.

    g is the victim's feature extractor; X the clean training subset, X' its published poisoned version.
    """
    store = store or RunStore()
    cfg = mi_config(p, method, seed, arch, estimator, shared, **extra)
    device = resolve_device(p.device)

    def compute(ctx):
        fx, fy, labels = victim_features(p, method, seed, store, progress, arch, **extra)
        t0 = time.perf_counter()
        res = estimators.class_conditional_mi(fx, fy, labels, cfg["n_slices"], cfg["bins"] or 100,
                                              shared=shared, seed=cfg["seed"], progress=progress,
                                              estimator=estimator, mine={"iterations": p.mine_iterations})
        res["estimate_seconds"] = time.perf_counter() - t0
        res["feature_dim"] = fx.shape[1]
        return {"metrics": res}

    return store.get_or_compute("mi", cfg, compute, device=str(device), seed=seed)


def covariance(p: Profile, method: str, seed: int = 0, store: RunStore | None = None, progress: bool = True,
               arch: str | None = None, **extra) -> dict:
    """Record of the intra-class covariance of the victim's poisoned features (Theorem 5.1, Fig. 3)."""
    store = store or RunStore()
    cfg = {"victim": victim_config(p, method, seed, arch, **extra), "statistic": "class_covariance",
           "features": "train", "ridge": feature_covariance.RIDGE}
    device = resolve_device(p.device)

    def compute(ctx):
        fx, fy, labels = victim_features(p, method, seed, store, progress, arch, **extra)
        return {"metrics": {"poisoned": feature_covariance.class_covariance(fy, labels),
                            "clean": feature_covariance.class_covariance(fx, labels)}}

    return store.get_or_compute("covariance", cfg, compute, device=str(device), seed=seed)


SEPARABILITY_TARGETS = ("noise", "poisoned")


def separability(p: Profile, method: str, target: str, store: RunStore | None = None, progress: bool = True,
                 **extra) -> dict:
    """Record of linear separability (App. G.5, Table 21): training accuracy of a linear network fitted,
    without augmentation, on the method's noises alone (``target="noise"``) or on its poisoned training set
    (``"poisoned"``; for ``clean``, the clean set). The published noise δ = x' − x is an integer in
    [−ε·255, ε·255] per pixel; it is shown to the network rescaled to the full 8-bit range (an affine map,
    which a linear model with bias absorbs) so that one recipe fits both targets."""
    if target not in SEPARABILITY_TARGETS:
        raise ValueError(f"target must be one of {SEPARABILITY_TARGETS}, got {target!r}")
    if target == "noise" and method == CLEAN:
        raise ValueError("clean data has no noise; use target='poisoned' for the clean row")
    store = store or RunStore()
    recipe = Recipe(epochs=p.victim_epochs, batch_size=p.victim_batch_size, lr=p.victim_lr,
                    weight_decay=p.victim_weight_decay, augment=False)
    cfg = {"poison": poison_config(p, method, **extra), "dataset": p.dataset, "n_train": p.n_train,
           "target": target, "model": "linear", "recipe": dataclasses.asdict(recipe), "seed": 0}
    device = resolve_device(p.device)

    def compute(ctx):
        train, _ = datasets(p)
        images = train.images
        if method != CLEAN:
            pois = poison(p, method, store, progress, **extra)[1]
            images = pois.apply(train.images)
            if target == "noise":
                delta = images.float() - train.images.float()
                bound = max(float(delta.abs().max()), 1.0)
                images = ((delta / bound + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
        data = train.with_images(images)
        c, h, _ = data.shape
        torch.manual_seed(0)
        model = create_model("linear", data.num_classes, c, h)
        history = fit(model, data, recipe, seed=0, device=device, progress=progress,
                      desc=f"linear {method} {target}")
        loss, acc = evaluate(model, data, device)
        return {"metrics": {"train_acc": acc, "train_loss": loss}, "history": history}

    return store.get_or_compute("separability", cfg, compute, device=str(device), seed=0)
