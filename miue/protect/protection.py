"""``miue protect IN_DIR OUT_DIR``: the protection run and what it writes.

What a data owner gets. ``protect`` reads a folder of images (PNG, JPEG and other still formats PIL reads,
any size; class sub-folders, or one folder = one class), computes an unlearnable perturbation for each
(MI-UE by default, Algorithm 1) and writes PNGs with the same relative names and sizes, plus
``manifest.json``. When the owner has one class only, a reference set (:mod:`miue.protect.reference`) plays
the other classes during generation and is never written out. How an image of any size keeps the budget:
:mod:`miue.protect.images`.

The run is a run of the run store (kind ``protect``): an interrupted generation resumes from its last epoch;
writing resumes file by file.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from fractions import Fraction
from pathlib import Path

import torch

from .. import __version__
from ..data import Augmentation, ImageDataset
from ..runs import RunStore, file_sha256
from .errors import ProtectError
from .folders import JOURNAL, MANIFEST, _atomic_write, _check_folders, _check_state, _clean_out_dir, _pointer, state_dir
from .images import (SourceImage, _inputs_digest, _pixels_digest, _png_bytes, _published_image, _rgb_array,
                     image_stats, open_image, pixels_sha256, protected_pixels, scan, to_model_input)
from .reference import REFERENCES, _folder_digest, auto_reference_size, reference_set


MAX_EPSILON = 16 / 255
DELTA_FILE = "delta.safetensors"


def parse_epsilon(text) -> float:
    """'8/255', '8', '0.0314' → the budget on the [0, 1] pixel scale (a bare integer ≥ 1 means levels)."""
    try:
        value = float(Fraction(str(text).strip()))
    except (ValueError, ZeroDivisionError):
        raise ProtectError(f"--epsilon {text!r} is not a number; write it as 8/255 (or 0.0314)") from None
    if value >= 1 and float(value).is_integer():
        value /= 255  # '8' means 8 levels
    if not 0 < value < 1:
        raise ProtectError(f"--epsilon {text!r} is out of range: give levels of 255 (8, 8/255) or a fraction of the "
                           "pixel range below 1 (0.0314); 8/255 is the default")
    return value


@dataclass
class Protection:
    """What :func:`protect` did: the run record, the manifest written, and where."""

    record: dict
    manifest: dict
    out_dir: Path
    written: int = 0
    skipped: int = 0
    warnings: list = field(default_factory=list)
    state: Path | None = None  # the state folder, when kept (--keep-state)


def protect_config(images: list[SourceImage], method: str, eps: float, profile_name: str = "cpu",
                   reference: str = "fashion-mnist", reference_size: int | None = None, size: int = 32,
                   seed: int = 0) -> dict:
    """The frozen config of a protection run (the attack's full settings included)."""
    from .. import experiments as ex
    from ..attacks import ATTACKS
    from ..profiles import profile
    linf = sorted(m for m, cls in ATTACKS.items() if cls.norm == "linf" and m != "random")
    if method not in ATTACKS:
        raise ProtectError(f"unknown --method {method!r}; choose one of {', '.join(linf)}")
    if method not in linf:
        raise ProtectError(f"--method {method!r} is not an l∞ perturbation that protects ({ATTACKS[method].norm} "
                           f"budget or no protection); miue protect bounds every pixel's change by --epsilon: choose "
                           f"one of {', '.join(linf)}")
    p = profile(profile_name)
    attack = ex.attack_config(p, method, eps=eps, seed=seed)
    owner_classes = sorted({s.label for s in images})
    if reference == "none" and len(owner_classes) < 2:
        raise ProtectError("one class and --reference none: an unlearnable perturbation needs other classes; "
                           "give a --reference (fashion-mnist, cifar10, or a folder of class sub-folders)")
    ref = None
    if reference != "none":
        n = reference_size if reference_size is not None else p.n_train or 4000
        ref = {"name": reference if reference in REFERENCES else _folder_digest(Path(reference), size),
               "size": n, "subset_seed": 0}
    if method in JOB_SIZED and profile_name != "smoke":  # smoke keeps its seconds-scale budget
        attack = {**attack, **job_budget(attack, len(images) + (ref["size"] if ref else 0))}
    return {"method": method, "attack": attack, "eps": eps, "input_size": size, "profile": profile_name,
            "owner_classes": owner_classes, "inputs": {"count": len(images), "digest": _inputs_digest(images)},
            "reference": ref}


def _generation_data(images: list[SourceImage], cfg: dict, reference: str) -> tuple[ImageDataset, torch.Tensor]:
    """(the dataset the attack runs on: reference classes first, then the owner's; owner positions)."""
    size = cfg["input_size"]
    owner_classes = cfg["owner_classes"]
    owner_x = torch.stack([to_model_input(_rgb_array(open_image(s.path))[0], size) for s in images])
    if cfg["reference"] is None:
        y = torch.tensor([owner_classes.index(s.label) for s in images])
        return ImageDataset("owner", "train", owner_x, y, tuple(owner_classes), Augmentation()), torch.arange(len(y))
    ref = reference_set(reference, size, cfg["reference"]["size"], cfg["reference"]["subset_seed"])
    offset = ref.num_classes
    y = torch.tensor([offset + owner_classes.index(s.label) for s in images])
    data = ImageDataset("owner+" + ref.name, "train", torch.cat([ref.images, owner_x]), torch.cat([ref.labels, y]),
                        tuple(ref.classes) + tuple(owner_classes), Augmentation())
    return data, torch.arange(len(ref), len(ref) + len(images))


def _compute_protection(images, cfg, reference, device, progress, samples_wanted: bool = False):
    from ..attacks import ATTACKS
    from ..experiments import _encode

    def compute(ctx):
        data, owner = _generation_data(images, cfg, reference)
        attack = ATTACKS[cfg["method"]](**cfg["attack"])
        poison = attack.generate(data, device=device, progress=progress, checkpoint=ctx.checkpoint())
        delta = poison.delta[owner].float().contiguous()
        digest = ctx.save_artifact(DELTA_FILE, {"delta": delta})
        ctx.checkpoint().remove()
        stats, samples, published = [], {}, []
        for i, s in enumerate(images):
            px, mode, alpha = _rgb_array(open_image(s.path))
            after = protected_pixels(px, delta[i], cfg["eps"])
            stats.append(image_stats(px, after))
            published.append((Path(s.rel).with_suffix(".png").as_posix(), s.label,
                              pixels_sha256(_published_image(after, mode, alpha))))
        firsts = [next(i for i, s in enumerate(images) if s.label == c) for c in cfg["owner_classes"]][:4]
        if not samples_wanted:  # pictures of the originals go into the record only for the book's own example
            firsts = []
        for i in firsts:  # small before/after pictures for the book, one per class
            px, _, _ = _rgb_array(open_image(images[i].path))
            after = protected_pixels(px, delta[i], cfg["eps"])
            samples[images[i].rel] = {"before": _encode(to_model_input(px, 96)),
                                      "after": _encode(to_model_input(after, 96)),
                                      "delta": _encode(((after.float() - px.float()).mean(0) + 128).round()
                                                       .clamp(0, 255).to(torch.uint8))}
        psnr = [s["psnr_db"] for s in stats if s["psnr_db"] is not None]
        checks = poison.meta.get("checks", {})
        return {"metrics": {"images": len(images), "classes": len(cfg["owner_classes"]),
                            "generation_images": len(data),
                            "max_linf_levels": max(s["linf_levels"] for s in stats),
                            "mean_psnr_db": sum(psnr) / len(psnr) if psnr else None,
                            "min_psnr_db": min(psnr) if psnr else None,
                            "source_checks": {k: v for k, v in checks.items() if isinstance(v, (int, float))},
                            "published_pixels": _pixels_digest(published)},
                "history": poison.meta.get("history", []), "samples": samples, "artifacts": {DELTA_FILE: digest}}
    return compute


def budget_text(attack: dict) -> str:
    """An attack config's generation budget in words (epochs, rounds or restarts, with PGD steps)."""
    if "max_rounds" in attack:
        return (f"up to {attack['max_rounds']} rounds of {attack['train_steps']} training steps + "
                f"{attack['pgd_steps']} PGD steps (stops at {100 * attack['stop_error']:g}% error)")
    if "restarts" in attack:
        return (f"source trained {attack['source_epochs']} epochs, then {attack['restarts']} × "
                f"{attack['iterations']} PGD steps")
    return f"{attack.get('epochs', '?')} epochs" + (f" × {attack['pgd_steps']} PGD steps" if "pgd_steps" in attack
                                                   else "")


JOB_SIZED = ("miue", "miue-code")  # attacks whose source model trains inside the generation loop
SOURCE_STEPS = 640  # SGD steps of batch 128 the source model should get, whatever the job's size


def job_budget(attack: dict, n_generation: int) -> dict:
    """MI-UE's generation budget sized to the job (Algorithm 1 trains the source model one pass per epoch):
    batches of 128 and enough epochs for about :data:`SOURCE_STEPS` source-model steps, between the profile's
    epochs and 5× them. Why: at the cpu profile's 8 epochs of batch 512, 1,000 CIFAR-10 photographs + 1,000
    reference images gave the source model 32 steps and a perturbation that did nothing (verify: gap −0.8
    points, 95% interval −9.3 to 7.7); 20 epochs of batch 128 gave 14.4 points (6.3 to 22.3)."""
    e = int(attack["epochs"])
    epochs = int(min(5 * e, max(e, math.ceil(SOURCE_STEPS * 128 / n_generation))))
    if attack.get("train_batch_size"):  # miue-code: the source already trains at its own batch (128); the
        return {"epochs": epochs}        # poison batch (512) is the official code's and stays
    return {"batch_size": 128, "epochs": epochs}


def protect(in_dir: str | Path, out_dir: str | Path, *, method: str = "miue", epsilon="8/255",
            profile_name: str = "cpu", reference: str = "fashion-mnist", reference_size: int | None = None,
            size: int = 32, seed: int = 0, device: str = "auto", force: bool = False, progress: bool = True,
            store: RunStore | None = None, state: str | Path | None = None, keep_state: bool = False,
            samples: bool = False) -> Protection:
    """Protect every image under ``in_dir`` into ``out_dir`` (see the module docstring).

    ``out_dir`` receives only what is meant to be published: the protected PNGs and ``manifest.json``, which
    describes them (no input paths, no digests or pictures of the originals). The resumable state (the
    perturbation δ, the generation checkpoint, the run record, the journal of written files) lives in
    ``state`` (default: :func:`state_dir`, outside ``out_dir``) and is removed once the run has finished,
    unless ``keep_state``. ``store`` (the book's) keeps the run record and δ elsewhere instead; ``samples`` puts
    small before/after pictures of one image a class into the record (the book's example)."""
    import shutil
    in_dir, out_dir = Path(in_dir), Path(out_dir)
    eps = parse_epsilon(epsilon)
    if eps > MAX_EPSILON + 1e-12 and not force:
        raise ProtectError(f"--epsilon {epsilon} is above 16/255: such noise is plainly visible. Use --force if "
                           "you mean it")
    if size < 8:
        raise ProtectError(f"--size {size} is too small for the source model; use 32 (the default) or more")
    _check_folders(in_dir, out_dir)
    work = state_dir("protect", in_dir, out_dir, state=state)
    _check_state(work, out_dir)
    from ..train import resolve_device
    device = resolve_device(device)
    images, layout = scan(in_dir, size)
    if reference_size is None and reference != "none":
        reference_size = auto_reference_size(len(images), profile_name)
    cfg = protect_config(images, method, eps, profile_name, reference, reference_size, size, seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    result = Protection({}, {}, out_dir)
    result.warnings += [f"removed {g} (not meant to be published)" for g in _clean_out_dir(out_dir)]
    work.mkdir(parents=True, exist_ok=True)
    (work / "job.json").write_text(json.dumps({"in_dir": str(in_dir.resolve()), "out_dir": str(out_dir.resolve())})
                                   + "\n")
    store = store or RunStore(work / "runs", work / "cache")
    compute = _compute_protection(images, cfg, reference, device, progress, samples)
    record = store.get_or_compute("protect", cfg, compute, device=str(device), seed=seed)
    h = record["hash"]
    path = store.verified_artifact("protect", h, DELTA_FILE)
    if path is None:  # the record is kept (a committed one, say) but its δ is not in this cache: regenerate it
        store.get_or_compute("protect", cfg, compute, device=str(device), seed=seed, force=True, write=False)
        path = store.verified_artifact("protect", h, DELTA_FILE)
    from ..checkpoint import load_tensors
    delta = load_tensors(path)[0]["delta"]
    result.record = record
    journal_path = work / JOURNAL
    journal = {}
    if journal_path.exists():
        for line in journal_path.read_text().splitlines():
            try:
                e = json.loads(line)
                journal[e["path"]] = e
            except (ValueError, KeyError):
                continue  # a line cut by an interruption
    entries = []
    from ..progress import tqdm  # a text bar in the log, never in a notebook
    with open(journal_path, "a") as jf:
        for i, s in enumerate(tqdm(images, desc="writing", disable=not progress, leave=False, mininterval=1.0)):
            rel_out = Path(s.rel).with_suffix(".png").as_posix()
            target = out_dir / rel_out
            done = journal.get(rel_out)
            if (done and done["sha256_in"] == s.sha256 and done["run"] == h and target.exists()
                    and file_sha256(target) == done["entry"]["sha256"]):
                entries.append(done["entry"])
                result.skipped += 1
                continue
            px, mode, alpha = _rgb_array(open_image(s.path))
            after = protected_pixels(px, delta[i], eps)
            st = image_stats(px, after)
            if st["linf_levels"] > math.floor(eps * 255 + 1e-6):  # the guarantee, checked on what is written
                raise RuntimeError(f"{s.rel}: {st['linf_levels']} levels exceed the budget; nothing more written")
            data = _png_bytes(after, mode, alpha)
            _atomic_write(target, data)
            e = {"path": rel_out, "class": s.label, "sha256": hashlib.sha256(data).hexdigest(),
                 "size": list(s.size), "mode": mode, "linf_levels": st["linf_levels"], "psnr_db": st["psnr_db"]}
            jf.write(json.dumps({"path": rel_out, "run": h, "sha256_in": s.sha256, "entry": e}) + "\n")
            jf.flush()
            entries.append(e)
            result.written += 1
    a = cfg["attack"]
    manifest = {
        "miue_version": __version__, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "method": method, "epsilon": f"{round(eps * 255, 4):g}/255", "epsilon_value": eps,
        "settings": a, "profile": profile_name, "seed": seed,
        "source_model": {"architecture": a.get("model"), "width": a.get("width"), "input": [3, size, size],
                         "epochs": a.get("epochs")},
        "resize": {"to_model": "area average (bilinear when a side is smaller)", "back": "bilinear",
                   "quantisation": "rounded to whole levels, clipped to floor(255 eps) levels and to [0, 255]"},
        "layout": layout, "classes": cfg["owner_classes"],
        "one_class_mode": cfg["reference"] is not None and len(cfg["owner_classes"]) == 1,
        "reference": None if cfg["reference"] is None else {"set": reference, **cfg["reference"]},
        "summary": {"images": len(entries), "max_linf_levels": max(e["linf_levels"] for e in entries),
                    "min_psnr_db": min((e["psnr_db"] for e in entries if e["psnr_db"] is not None), default=None)},
        "images": entries,
    }
    _atomic_write(out_dir / MANIFEST, (json.dumps(manifest, indent=1) + "\n").encode())
    result.manifest = manifest
    pointer = _pointer(out_dir)
    pointer.parent.mkdir(parents=True, exist_ok=True)
    pointer.write_text(json.dumps({"out_dir": str(out_dir.resolve()), "originals": str(in_dir.resolve())}) + "\n")
    if not keep_state:
        shutil.rmtree(work, ignore_errors=True)
    result.state = None if not keep_state else work
    return result
