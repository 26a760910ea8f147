"""``miue verify OUT_DIR``: the owner's check of a protected folder.

``verify`` is the owner's check: it holds out part of each protected class (the clean originals), trains one
victim on the protected images mixed with the reference set and one control victim on the clean originals,
and reports the held-out accuracy of the protected classes for both (judged in :mod:`miue.protect.verdicts`).
The check is a run of the run store (kind ``verify``): an interrupted victim resumes from its last epoch.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import torch

from .. import settings
from ..data import Augmentation, ImageDataset
from ..runs import RunStore, file_sha256
from .errors import ProtectError, _count
from .folders import _check_state, _pointer, read_manifest, state_dir
from .images import _pixels_digest, _rgb_array, open_image, pixels_sha256, scan, to_model_input
from .reference import reference_set
from .verdicts import MIN_GAP, wilson


def _split(n: int, holdout: float, seed: int) -> tuple[list[int], list[int]]:
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n, generator=g).tolist()
    k = max(1, round(holdout * n))
    if k >= n:
        raise ProtectError(f"a class with {n} images cannot hold out {k} for testing: add images or lower --holdout")
    return sorted(perm[k:]), sorted(perm[:k])


def verify_config(published: str, originals: str, reference: dict | None, input_size: int,
                  profile_name: str = "cpu", holdout: float = 0.25, seed: int = 0,
                  reference_size: int | None = None, n_train: int | None = None) -> dict:
    """The frozen config of a verify run: the published images it checks and their originals (digests), the
    reference set, the split and the victims' recipe (the profile's)."""
    from .. import experiments as ex
    from ..profiles import profile
    p = profile(profile_name)
    spec = ex.victim_spec(p, "clean", seed)
    recipe = settings.address(spec.recipe)
    if n_train is not None and profile_name != "smoke":  # smoke keeps its seconds-scale budget
        recipe = {**recipe, "epochs": victim_epochs(recipe["epochs"], recipe["batch_size"], n_train)}
    return {"published": published, "originals": originals,
            "reference": None if reference is None else {"set": reference["set"],
                                                         "size": reference_size or reference["size"],
                                                         "test_size": p.n_test or 1000},
            "holdout": holdout, "split_seed": 0, "model": spec.model, "width": spec.width,
            "recipe": recipe, "seed": seed, "input_size": input_size}


VICTIM_STEPS = 800  # SGD steps a verify victim should get, whatever the job's size


def victim_epochs(epochs: int, batch_size: int, n_train: int) -> int:
    """Epochs for a verify victim on ``n_train`` images: about :data:`VICTIM_STEPS` steps, between the
    profile's epochs and 3× them. A victim that has not fitted its training set tells nothing about a
    shortcut: on 1,750 images (1,000 photographs, 1,000 reference) the cpu profile's 20 epochs are 280 steps."""
    return int(min(3 * epochs, max(epochs, math.ceil(VICTIM_STEPS * batch_size / n_train))))


def _originals(out_dir: Path, originals, manifest: dict, size: int) -> tuple[Path, dict]:
    """(the originals' folder, published path → its original) for every image of the manifest."""
    if originals is None:
        pointer = _pointer(out_dir)
        try:
            originals = json.loads(pointer.read_text())["originals"]
        except (OSError, ValueError, KeyError):
            raise ProtectError(f"which folder holds the originals of {out_dir}? pass --originals IN_DIR (the folder "
                               "'miue protect' read; the control victim trains on it)") from None
    src = Path(originals)
    if not src.is_dir():
        raise ProtectError(f"--originals {src} is not a folder: pass the folder 'miue protect' read")
    found = {Path(s.rel).with_suffix(".png").as_posix(): s for s in scan(src, size)[0]}
    missing = [e["path"] for e in manifest["images"] if e["path"] not in found]
    if missing:
        raise ProtectError(f"{src} lacks the originals of {_count(len(missing), 'protected image', 'protected images')}"
                           f" ({', '.join(missing[:3])}{' …' if len(missing) > 3 else ''}): pass --originals IN_DIR, "
                           "the folder 'miue protect' read")
    return src, {e["path"]: found[e["path"]] for e in manifest["images"]}


def _verify_train_size(manifest: dict, holdout: float, reference_size: int | None) -> int:
    """Images a verify victim trains on: the reference set and each class's images less its held-out part."""
    counts: dict = {}
    for e in manifest["images"]:
        counts[e["class"]] = counts.get(e["class"], 0) + 1
    owner = sum(n - max(1, round(holdout * n)) for n in counts.values())
    ref = manifest["reference"]
    return owner + (0 if ref is None else (reference_size or ref["size"]))


def _originals_digest(original_of: dict) -> str:
    """Digest of (published path, original's pixel SHA-256) pairs: the control victim's data, by content."""
    return _pixels_digest((path, "", s.pixels_sha256) for path, s in original_of.items())


def verify(out_dir: str | Path, *, reference: str | None = None, originals: str | Path | None = None,
           profile_name: str = "cpu", holdout: float = 0.25, seed: int = 0, reference_size: int | None = None,
           device: str = "auto", progress: bool = True, store: RunStore | None = None,
           state: str | Path | None = None, keep_state: bool = False, min_gap: float = MIN_GAP) -> dict:
    """Record (kind ``verify``) of the owner's check: protected-class test accuracy of a victim trained on
    the protected images (plus the reference set) against a control victim trained on the clean originals,
    each with its 95% interval, and the verdict (:func:`verdict`). State outside ``out_dir``, removed when
    done unless ``keep_state``."""
    import shutil

    from ..models import create_model
    from ..train import Recipe, evaluate, fit, per_class_accuracy, resolve_device
    device = resolve_device(device)
    out_dir = Path(out_dir)
    manifest = read_manifest(out_dir)
    if not 0 < holdout < 1:
        raise ProtectError(f"--holdout {holdout} must lie strictly between 0 and 1")
    if not 0 < min_gap < 1:
        raise ProtectError(f"--min-gap {min_gap} must lie strictly between 0 and 1 (0.10 is 10 points)")
    if reference is not None and manifest["reference"] is not None and reference != manifest["reference"]["set"]:
        warnings.warn(f"verifying with --reference {reference}; the images were protected against "
                      f"{manifest['reference']['set']}", stacklevel=2)
    if manifest["reference"] is not None and reference is not None:
        manifest = {**manifest, "reference": {**manifest["reference"], "set": reference}}
    size = manifest["source_model"]["input"][1]
    for e in manifest["images"]:  # what is verified is what was written
        f = out_dir / e["path"]
        if not f.is_file() or file_sha256(f) != e["sha256"]:
            raise ProtectError(f"{f} is missing or differs from the manifest: run 'miue protect' again")
    src, original_of = _originals(out_dir, originals, manifest, size)
    published = _pixels_digest((e["path"], e["class"], pixels_sha256(open_image(out_dir / e["path"])))
                               for e in manifest["images"])
    n_train = _verify_train_size(manifest, holdout, reference_size)
    cfg = verify_config(published, _originals_digest(original_of),
                        manifest["reference"], size, profile_name, holdout, seed, reference_size, n_train)
    work = state_dir("verify", out_dir, state=state)
    _check_state(work, out_dir)
    if store is None:
        work.mkdir(parents=True, exist_ok=True)
    store = store or RunStore(work / "runs", work / "cache")
    k = math.floor(manifest["epsilon_value"] * 255 + 1e-6)

    def compute(ctx):
        owner_classes = manifest["classes"]
        by_class: dict[str, list] = {}
        for e in manifest["images"]:
            by_class.setdefault(e["class"], []).append(e)
        ref = ref_test = None
        if cfg["reference"] is not None:
            ref = reference_set(cfg["reference"]["set"], size, cfg["reference"]["size"], 0, "train")
            ref_test = reference_set(cfg["reference"]["set"], size, cfg["reference"]["test_size"], 1, "test")
        offset = 0 if ref is None else ref.num_classes
        tr_prot, tr_clean, tr_y, te_x, te_y = [], [], [], [], []
        for c, name in enumerate(owner_classes):
            members = by_class.get(name, [])
            train_idx, test_idx = _split(len(members), holdout, cfg["split_seed"] + c)
            for i in train_idx:
                e = members[i]
                clean = _rgb_array(open_image(original_of[e["path"]].path))[0]
                prot = _rgb_array(open_image(out_dir / e["path"]))[0]
                if clean.shape != prot.shape or (clean.int() - prot.int()).abs().max() > k:
                    raise ProtectError(f"{original_of[e['path']].path} is not the original of {e['path']} (another "
                                       f"size, or more than {k} levels away): pass --originals IN_DIR, the folder "
                                       "'miue protect' read")
                tr_prot.append(to_model_input(prot, size))
                tr_clean.append(to_model_input(clean, size))
                tr_y.append(offset + c)
            for i in test_idx:
                te_x.append(to_model_input(_rgb_array(open_image(original_of[members[i]["path"]].path))[0], size))
                te_y.append(offset + c)
        classes = (tuple(ref.classes) if ref is not None else ()) + tuple(owner_classes)
        owner_test = ImageDataset("owner", "test", torch.stack(te_x), torch.tensor(te_y), classes)
        metrics, history = {}, {}
        for arm, owner_x in (("protected", tr_prot), ("control", tr_clean)):
            x, y = torch.stack(owner_x), torch.tensor(tr_y)
            if ref is not None:
                x, y = torch.cat([ref.images, x]), torch.cat([ref.labels, y])
            train = ImageDataset("verify", "train", x, y, classes, Augmentation())
            torch.manual_seed(cfg["seed"])
            model = create_model(cfg["model"], len(classes), 3, size, cfg["width"])
            hist = fit(model, train, Recipe(**cfg["recipe"]), seed=cfg["seed"], device=device, progress=progress,
                       checkpoint=ctx.checkpoint(arm), desc=f"verify: {arm} victim")
            per_class = per_class_accuracy(model, owner_test, device)
            acc = evaluate(model, owner_test, device)[1]
            m = {"protected_class_acc": {n: per_class[offset + c] for c, n in enumerate(owner_classes)},
                 "protected_classes_acc": acc, "correct": round(acc * len(te_y)),
                 "train_acc": hist[-1]["train_acc"]}
            m["interval"] = list(wilson(m["correct"], len(te_y)))
            if ref_test is not None:
                m["reference_acc"] = evaluate(model, ref_test, device)[1]
            metrics[arm] = m
            history[arm] = hist
            ctx.checkpoint(arm).remove()
        metrics["n_train_owner"] = len(tr_y)
        metrics["n_test_owner"] = len(te_y)
        metrics["n_reference"] = 0 if ref is None else len(ref)
        return {"metrics": metrics, "history": [{"arm": a, **h} for a in history for h in history[a]]}

    record = store.get_or_compute("verify", cfg, compute, device=str(device), seed=seed)
    if not keep_state:
        shutil.rmtree(work, ignore_errors=True)
    return record
