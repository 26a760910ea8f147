"""Protecting a folder of one's own images: ``miue protect IN_DIR OUT_DIR`` and ``miue verify OUT_DIR``.

What a data owner gets. ``protect`` reads a folder of images (PNG, JPEG and other still formats PIL reads,
any size; class sub-folders, or one folder = one class), computes an unlearnable perturbation for each
(MI-UE by default, Algorithm 1) and writes PNGs with the same relative names and sizes, plus
``manifest.json``. When the owner has one class only, the one-class mode of the paper's App. G.1 applies: a
reference set (Fashion-MNIST, CIFAR-10/100 where present, or any folder of class sub-folders) plays the
other classes during generation and is never written out.

How an image of any size is protected. The source model works at a fixed ``size`` × ``size`` RGB input
(32 by default). Each image is shrunk to it by area averaging, the attack computes δ there, and δ is brought
back to the image's own resolution by bilinear interpolation (a convex combination, so |δ| ≤ ε still holds),
rounded to whole 8-bit levels and clipped to ⌊255 ε⌋ levels: the written image differs from the original by
at most ε after resizing and quantisation, which is checked for every image and reported in the manifest.
EXIF orientation is applied first, then every metadata chunk is dropped; an alpha channel is kept unchanged;
grayscale images get the mean of δ over the channels and stay grayscale.

``verify`` is the owner's check: it holds out part of each protected class (the clean originals), trains one
victim on the protected images mixed with the reference set and one control victim on the clean originals,
and reports the held-out accuracy of the protected classes for both.

Both are runs of the run store (kinds ``protect`` and ``verify``, in ``OUT_DIR/.miue`` from the command line):
an interrupted generation or victim resumes from its last epoch; writing resumes file by file.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from fractions import Fraction
from pathlib import Path

import torch
import torch.nn.functional as F

from . import __version__, settings
from .data import Augmentation, ImageDataset, load, stratified_subset
from .runs import RunStore, file_sha256

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp", ".tif", ".tiff"}
MAX_EPSILON = 16 / 255
DELTA_FILE = "delta.safetensors"
MANIFEST = "manifest.json"
LEGACY_STATE_DIR = ".miue"  # where earlier versions kept their state, inside OUT_DIR (it held δ: removed on sight)
JOURNAL = "written.jsonl"
PART_SUFFIX = ".miue-part"  # a PNG being written; removed when found after an interruption
REFERENCES = ("fashion-mnist", "cifar10-jpeg", "cifar10", "cifar100", "none")
# measured on 2 CPU cores (the book's page "Protecting your own images"); tests/test_protect.py checks these
# numbers against the committed records of those runs
PROTECT_TIMES = """\
  12 photographs (3 classes, 48 to 160 pixels a side): protect 55 s, verify 19 s (3 held-out images:
    verify says it cannot tell).
  1,000 photographs (CIFAR-10 test images of the JPEG copy, 10 classes, 32x32): protect 15.9 min, verify
    4.0 min; verify: protected victim 25.6%, control 44.8% on 250 held-out images, gap 19.2 points (95%
    interval 10.9 to 27.2): protection works.
  (the runs' recorded times on an Intel Xeon, 2 cores, torch 2.14.1, seed 0; the command adds a few seconds
  to start. The book's page "Protecting your own images" shows the runs; a test checks these numbers.)"""


class ProtectError(ValueError):
    """Bad input to protect or verify: the message says what is wrong and what to do."""


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


# ------------------------------------------------------------------------------------------- state

def state_root() -> Path:
    """Where resumable state lives by default: ``$MIUE_STATE``, else ``$XDG_CACHE_HOME/miue``, else
    ``~/.cache/miue``; never inside a folder that is published."""
    if os.environ.get("MIUE_STATE"):
        return Path(os.environ["MIUE_STATE"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "miue"


def _job_key(*folders: Path) -> str:
    return hashlib.sha256("\n".join(str(Path(f).resolve()) for f in folders).encode()).hexdigest()[:16]


def state_dir(command: str, *folders: Path, state: str | Path | None = None) -> Path:
    """The state folder of one job: ``state`` when given, else the state root's ``command/<job key>``,
    the key a hash of the job's folders (the same command resumes in the same place)."""
    return Path(state) if state is not None else state_root() / command / _job_key(*folders)


def _check_state(state: Path, out_dir: Path) -> None:
    a, b = state.resolve(), out_dir.resolve()
    if a == b or b in a.parents:
        raise ProtectError(f"--state {state} is inside OUT_DIR {out_dir}: the state holds the perturbation, which "
                           "undoes the protection; choose a folder outside OUT_DIR")


def _pointer(out_dir: Path) -> Path:
    """A small note, outside OUT_DIR, of which input folder a protected folder came from (for verify)."""
    return state_root() / "originals" / f"{_job_key(out_dir)}.json"


def _clean_out_dir(out_dir: Path) -> list[str]:
    """Remove what an older or interrupted run left in OUT_DIR that is not meant to be published: the old
    in-folder state (it held δ and the originals' thumbnails) and half-written PNGs. Returns what went."""
    import shutil
    gone = []
    legacy = out_dir / LEGACY_STATE_DIR
    if legacy.is_dir():
        shutil.rmtree(legacy)
        gone.append(str(legacy))
    for part in out_dir.rglob(f"*{PART_SUFFIX}"):
        part.unlink(missing_ok=True)
        gone.append(str(part))
    return gone


# ------------------------------------------------------------------------------------------ inputs

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


@dataclass(frozen=True)
class SourceImage:
    path: Path  # absolute
    rel: str  # relative to the input folder, posix
    label: str  # class name
    sha256: str  # of the file
    pixels_sha256: str  # of the decoded pixels (after EXIF orientation): what the run depends on
    size: tuple[int, int]  # (width, height) after EXIF orientation
    mode: str


def _layout(root: Path) -> tuple[list[Path], str]:
    files = sorted(p for p in root.rglob("*") if p.is_file() and not any(
        part.startswith(".") for part in p.relative_to(root).parts))
    images = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
    top = [p for p in images if p.parent == root]
    nested = [p for p in images if p.parent != root]
    if top and nested:
        raise ProtectError(f"{root} holds images both at its top level ({top[0].name}, …) and in sub-folders "
                           f"({nested[0].relative_to(root)}, …): put every image in a class sub-folder, or all "
                           "of them in the one folder (one class)")
    return images, ("classes" if nested else "one folder")


def open_image(path: Path):
    """The image at ``path`` as a PIL image with EXIF orientation applied; ProtectError when unreadable,
    truncated or animated."""
    from PIL import Image, ImageOps, UnidentifiedImageError
    try:
        im = Image.open(path)
    except (UnidentifiedImageError, OSError) as exc:
        if "truncat" in str(exc).lower():
            raise ProtectError(f"{path}: the file is damaged or cut short ({exc}); re-export it or remove it")
        raise ProtectError(f"{path}: not a readable image ({exc}); remove it or replace it with a PNG or JPEG")
    with im:
        if getattr(im, "is_animated", False) or getattr(im, "n_frames", 1) > 1:
            raise ProtectError(f"{path}: an animated or multi-frame image ({getattr(im, 'n_frames', '?')} frames);"
                               " protect each frame as its own PNG, or remove it")
        try:
            im.load()
        except (OSError, SyntaxError, ValueError) as exc:
            raise ProtectError(f"{path}: the file is damaged or cut short ({exc}); re-export it or remove it")
        return ImageOps.exif_transpose(im).copy()


def _rgb_array(im) -> tuple[torch.Tensor, str, torch.Tensor | None]:
    """(uint8 C×H×W with C = 1 or 3, the written mode 'L'/'RGB'/'RGBA', the alpha plane or None)."""
    import numpy as np
    alpha = None
    if im.mode in ("L", "I;16", "I", "F", "1"):
        if im.mode != "L":
            im = im.convert("L")
        return torch.from_numpy(np.asarray(im).copy())[None], "L", None
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        im = im.convert("RGBA")
        a = np.asarray(im)
        alpha = torch.from_numpy(a[..., 3].copy())
        return torch.from_numpy(a[..., :3].copy()).permute(2, 0, 1).contiguous(), "RGBA", alpha
    im = im.convert("RGB")
    return torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1).contiguous(), "RGB", None


def to_model_input(pixels: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 C×H×W (C = 1 or 3) → uint8 3×size×size: area-average down (bilinear up for smaller sides)."""
    x = pixels.float()[None]
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    h, w = x.shape[-2:]
    mode = "area" if h >= size and w >= size else "bilinear"
    kw = {} if mode == "area" else {"align_corners": False}
    y = F.interpolate(x, size=(size, size), mode=mode, **kw)
    return y.round().clamp(0, 255).to(torch.uint8)[0]


def protected_pixels(pixels: torch.Tensor, delta: torch.Tensor, eps: float) -> torch.Tensor:
    """The written image: ``pixels`` (uint8 C×H×W) + δ (3×s×s, [0, 1] scale) resized to H×W, in whole levels,
    within ⌊255 ε⌋ levels of ``pixels`` and inside [0, 255]."""
    c, h, w = pixels.shape
    up = F.interpolate(delta.float()[None], size=(h, w), mode="bilinear", align_corners=False)[0]
    if c == 1:
        up = up.mean(0, keepdim=True)
    k = math.floor(eps * 255 + 1e-6)
    levels = (up * 255).round().clamp(-k, k)
    return (pixels.float() + levels).clamp(0, 255).to(torch.uint8)


def image_stats(before: torch.Tensor, after: torch.Tensor) -> dict:
    diff = (after.int() - before.int())
    mse = diff.float().pow(2).mean().item()
    return {"linf_levels": int(diff.abs().max()), "psnr_db": (round(10 * math.log10(255 ** 2 / mse), 3)
                                                              if mse > 0 else None)}


def scan(in_dir: str | Path, size: int) -> tuple[list[SourceImage], str]:
    """Every image under ``in_dir`` (hidden entries skipped), validated; (images, layout)."""
    root = Path(in_dir).resolve()
    if not root.is_dir():
        raise ProtectError(f"IN_DIR {in_dir} is not a folder")
    paths, layout = _layout(root)
    if not paths:
        raise ProtectError(f"{in_dir} holds no images (PNG or JPEG, in the folder or in class sub-folders)")
    out, problems, small = [], [], []
    stems: dict[str, str] = {}
    for p in paths:
        rel = p.relative_to(root).as_posix()
        written = str(Path(rel).with_suffix(".png"))
        if written in stems:
            raise ProtectError(f"{rel} and {stems[written]} would both be written as {written}: rename one of them")
        stems[written] = rel
        try:
            im = open_image(p)
        except ProtectError as exc:
            problems.append(str(exc))
            continue
        if min(im.size) < size:
            small.append(f"{rel} ({im.size[0]}×{im.size[1]})")
        label = p.relative_to(root).parts[0] if layout == "classes" else root.name
        pixels = pixels_sha256(im)
        out.append(SourceImage(p, rel, label, file_sha256(p), pixels, im.size, im.mode))
    if problems:
        raise ProtectError(f"{len(problems)} of {len(paths)} files cannot be protected:\n  " + "\n  ".join(problems))
    if small:
        raise ProtectError(f"{_count(len(small), 'image is', 'images are')} smaller than the model's {size}×{size} input: "
                           f"{', '.join(small[:5])}{' …' if len(small) > 5 else ''}; remove or enlarge them, "
                           "or choose a smaller --size")
    return out, layout


def _inputs_digest(images: list[SourceImage]) -> str:
    h = hashlib.sha256()
    for s in images:
        h.update(f"{s.rel}\t{s.label}\t{s.pixels_sha256}\n".encode())
    return h.hexdigest()


def _check_folders(in_dir: Path, out_dir: Path) -> None:
    a, b = in_dir.resolve(), out_dir.resolve()
    if a == b or a in b.parents:
        raise ProtectError(f"OUT_DIR {out_dir} is inside IN_DIR {in_dir}: protect never writes into the input "
                           "folder; choose an OUT_DIR outside it")
    if b in a.parents:
        raise ProtectError(f"IN_DIR {in_dir} is inside OUT_DIR {out_dir}: choose an OUT_DIR that does not hold "
                           "the input folder")


# --------------------------------------------------------------------------------------- reference

def reference_set(reference: str, size: int, n: int | None, seed: int = 0, split: str = "train") -> ImageDataset:
    """The classes that play "everyone else" in one-class mode: a dataset name or a folder of class
    sub-folders, as ``size``×``size`` RGB; ``n`` images, class-balanced (all when None)."""
    if reference in REFERENCES[:-1]:
        ds = stratified_subset(load(reference, split), n, seed)
        x = ds.images.float()
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        if x.shape[-1] != size:
            x = F.interpolate(x, size=(size, size), mode="bilinear" if x.shape[-1] < size else "area",
                              **({"align_corners": False} if x.shape[-1] < size else {}))
        return ImageDataset(reference, split, x.round().clamp(0, 255).to(torch.uint8), ds.labels, ds.classes)
    folder = Path(reference)
    if not folder.is_dir():
        raise ProtectError(f"--reference {reference!r} is neither a dataset ({', '.join(REFERENCES)}) nor a folder")
    images, layout = scan(folder, size)
    if layout != "classes":
        raise ProtectError(f"--reference folder {folder} must hold class sub-folders (one per class)")
    classes = tuple(sorted({s.label for s in images}))
    x = torch.stack([to_model_input(_rgb_array(open_image(s.path))[0], size) for s in images])
    y = torch.tensor([classes.index(s.label) for s in images])
    ds = ImageDataset(folder.name, "train", x, y, classes)
    return stratified_subset(ds, n, seed)


# ------------------------------------------------------------------------------------------ protect

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
    from . import experiments as ex
    from .attacks import ATTACKS
    from .profiles import profile
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


def _folder_digest(folder: Path, size: int) -> str:
    images, _ = scan(folder, size)
    return f"folder:{folder.name}:{_inputs_digest(images)[:16]}"


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
    from .attacks import ATTACKS
    from .experiments import _encode

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


def _published_image(pixels: torch.Tensor, mode: str, alpha: torch.Tensor | None):
    """The PIL image that is written: ``pixels`` (uint8 C×H×W) in ``mode``, the original alpha plane kept."""
    import numpy as np
    from PIL import Image
    arr = pixels.permute(1, 2, 0).numpy() if pixels.shape[0] == 3 else pixels[0].numpy()
    if mode == "RGBA":
        arr = np.concatenate([arr, alpha.numpy()[..., None]], axis=2)
    return Image.fromarray(np.ascontiguousarray(arr), mode)


def pixels_sha256(im) -> str:
    """SHA-256 of a PIL image's decoded pixels (mode, size, bytes): how an image is known whatever its encoding."""
    return hashlib.sha256(f"{im.mode}{im.size}".encode() + im.tobytes()).hexdigest()


def _png_bytes(pixels: torch.Tensor, mode: str, alpha: torch.Tensor | None) -> bytes:
    import io
    buf = io.BytesIO()
    _published_image(pixels, mode, alpha).save(buf, format="PNG")  # no info, no EXIF: metadata dropped
    return buf.getvalue()


def _pixels_digest(entries) -> str:
    """Digest of (published path, class, pixel SHA-256) triples: what verify checks, by content."""
    h = hashlib.sha256()
    for path, label, digest in sorted(entries):
        h.update(f"{path}\t{label}\t{digest}\n".encode())
    return h.hexdigest()[:16]


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}{PART_SUFFIX}")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def auto_reference_size(n_images: int, profile_name: str) -> int:
    """The reference set sized to the job (``--reference-size`` unset): as many reference images as the owner
    has, at least 100 (10 a class) and at most the profile's training-set size. Generation cost grows with the
    images it runs on (reference + owner's)."""
    from .profiles import profile
    cap = profile(profile_name).n_train or 4000
    return int(min(cap, max(100, n_images)))


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
    from .train import resolve_device
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
    from .checkpoint import load_tensors
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
    from .progress import tqdm  # a text bar in the log, never in a notebook
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


# ------------------------------------------------------------------------------------------- verify

def read_manifest(out_dir: str | Path) -> dict:
    path = Path(out_dir) / MANIFEST
    if not path.is_file():
        raise ProtectError(f"{out_dir} has no {MANIFEST}: run 'miue protect IN_DIR {out_dir}' first (or let an "
                           "interrupted protect finish)")
    try:
        manifest = json.loads(path.read_text())
    except ValueError:
        raise ProtectError(f"{path} is not valid JSON: run 'miue protect' again to rewrite it") from None
    if not isinstance(manifest, dict) or not all("sha256" in e for e in manifest.get("images") or [{}]):
        raise ProtectError(f"{path} was written by an older miue (or is not a protect manifest): run 'miue protect' "
                           "again to rewrite the folder")
    return manifest


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
    from . import experiments as ex
    from .profiles import profile
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


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a proportion k/n (95% at z = 1.96); honest at small n and at 0 or n."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def gap_interval(k_control: int, k_protected: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% interval of the accuracy gap control − protected on the same n held-out images (Newcombe's
    MOVER-Wilson interval for a difference of proportions; it ignores the pairing, so it errs wide)."""
    p1, p2 = k_control / n, k_protected / n
    l1, u1 = wilson(k_control, n, z)
    l2, u2 = wilson(k_protected, n, z)
    d = p1 - p2
    return d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2), d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)


MIN_GAP = 0.10  # the protection "works" when it lowers held-out accuracy by at least this much (10 points)


def verdict(k_control: int, k_protected: int, n: int, min_gap: float = MIN_GAP) -> dict:
    """Whether the protection works: the gap's 95% interval entirely at or above ``min_gap`` (works), entirely
    below it (does not work), or straddling it (cannot tell; then how many held-out images would decide at
    the same accuracies)."""
    lo, hi = gap_interval(k_control, k_protected, n)
    gap = (k_control - k_protected) / n
    out = {"gap": gap, "gap_low": lo, "gap_high": hi, "min_gap": min_gap, "n_test": n}
    if lo >= min_gap:
        return {**out, "verdict": "works"}
    if hi < min_gap:
        return {**out, "verdict": "does not work"}
    needed = None
    if abs(gap - min_gap) > 1e-9:
        for m in (int(n * 1.25 ** i) + 1 for i in range(1, 60)):  # the same accuracies at m images
            lo_m, hi_m = gap_interval(round(k_control / n * m), round(k_protected / n * m), m)
            if lo_m >= min_gap or hi_m < min_gap:
                needed = m
                break
    return {**out, "verdict": "cannot tell", "needed_test": needed}


def verify(out_dir: str | Path, *, reference: str | None = None, originals: str | Path | None = None,
           profile_name: str = "cpu", holdout: float = 0.25, seed: int = 0, reference_size: int | None = None,
           device: str = "auto", progress: bool = True, store: RunStore | None = None,
           state: str | Path | None = None, keep_state: bool = False, min_gap: float = MIN_GAP) -> dict:
    """Record (kind ``verify``) of the owner's check: protected-class test accuracy of a victim trained on
    the protected images (plus the reference set) against a control victim trained on the clean originals,
    each with its 95% interval, and the verdict (:func:`verdict`). State outside ``out_dir``, removed when
    done unless ``keep_state``."""
    import shutil

    from .models import create_model
    from .train import Recipe, evaluate, fit, per_class_accuracy, resolve_device
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


def record_verdict(record: dict, min_gap: float = MIN_GAP) -> dict:
    """:func:`verdict` of a verify record (older records without counts: from the accuracies)."""
    m = record["metrics"]
    n = m["n_test_owner"]
    k = {a: m[a].get("correct", round(m[a]["protected_classes_acc"] * n)) for a in ("protected", "control")}
    return verdict(k["control"], k["protected"], n, min_gap)


def verdict_line(v: dict) -> str:
    """The verdict in one line."""
    gap = (f"gap {100 * v['gap']:.1f} points (95% interval {100 * v['gap_low']:.1f} to {100 * v['gap_high']:.1f}) "
           f"on {v['n_test']} held-out images")
    if v["verdict"] == "works":
        return f"protection works: {gap}, at least {100 * v['min_gap']:g} points"
    if v["verdict"] == "does not work":
        return f"protection does not work: {gap}, below {100 * v['min_gap']:g} points"
    need = (f"about {v['needed_test']} held-out images (about {math.ceil(v['needed_test'] / 0.25)} images at the "
            "default --holdout) would decide at these accuracies" if v.get("needed_test")
            else "the gap sits at the threshold, so more images would not decide it")
    return f"cannot tell whether the protection works: {gap} straddles {100 * v['min_gap']:g} points; {need}"


def verify_table(record: dict, min_gap: float = MIN_GAP) -> str:
    m = record["metrics"]
    n = m["n_test_owner"]
    lines = [f"{'':<46}{'protected':>22}{'control':>22}"]

    def cell(arm):
        k = m[arm].get("correct", round(m[arm]["protected_classes_acc"] * n))
        lo, hi = wilson(k, n)
        return f"{m[arm]['protected_classes_acc']:.1%} [{lo:.0%}, {hi:.0%}]"
    lines.append(f"{'held-out accuracy of the protected class(es)':<46}{cell('protected'):>22}{cell('control'):>22}")
    for label, key in (("accuracy on the reference test set", "reference_acc"), ("final training accuracy",
                                                                                 "train_acc")):
        if key in m["protected"]:
            lines.append(f"{label:<46}{m['protected'][key]:>22.1%}{m['control'][key]:>22.1%}")
    for name, acc in m["protected"]["protected_class_acc"].items():
        lines.append(f"{'  class ' + name:<46}{acc:>22.1%}{m['control']['protected_class_acc'][name]:>22.1%}")
    lines.append(f"({_count(m['n_train_owner'], 'protected training image', 'protected training images')}, "
                 f"{_count(n, 'held-out original', 'held-out originals')}, "
                 f"{_count(m['n_reference'], 'reference image', 'reference images')}; [95% Wilson intervals])")
    lines.append(verdict_line(record_verdict(record, min_gap)))
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- CLI

PROTECT_HELP = """Protect a folder of images with unlearnable perturbations.

Reads every image under IN_DIR (PNG, JPEG, and other still formats; any size; class sub-folders, or the
folder as one class) and writes a protected PNG for each under OUT_DIR with the same relative name and
size, plus OUT_DIR/manifest.json (method, settings, epsilon, source model, seed; per protected image its
class, size, SHA-256, l-inf change and PSNR). Each written image differs from its original by at most
epsilon in every pixel and channel, after resizing and 8-bit quantisation. Metadata (EXIF and the like) is
dropped, after EXIF orientation is applied.

OUT_DIR holds only what is meant to be published: the protected PNGs and the manifest, which names no
input path and holds no digest or picture of the originals. The perturbation itself (which undoes the
protection), the checkpoints and the journal live in a state folder outside OUT_DIR (--state; default
~/.cache/miue/protect/<job>, or $MIUE_STATE) and are deleted when the run finishes (--keep-state keeps
them). An interrupted run (Ctrl-C) resumes from there when the same command is run again. IN_DIR is
never written to.

With one class, a reference set (--reference) plays the other classes while the perturbation is
computed (one-class mode, the MI-UE paper's App. G.1); it is never written out. Its size follows the job:
as many reference images as yours, at least 100, at most the profile's 4,000 (--reference-size);
MI-UE's source model gets about 640 steps of batch 128 (8 to 40 epochs at the cpu profile).

How long it takes (default settings: MI-UE, cpu profile; measured on 2 CPU cores, no GPU):
TIMES
"""

VERIFY_HELP = """Check whether a protected folder is unlearnable, and say when the folder is too small to tell.

Holds out a quarter (--holdout) of each protected class as clean originals (read from --originals, the
folder protect read; remembered on this machine when protect ran here), trains one victim on the rest of
the protected images mixed with the reference set and one control victim on the same images unprotected,
and prints the held-out accuracy of the protected classes for both, each with its 95% interval. The
verdict, in one line: the protection works when the accuracy gap (control - protected) is at least
--min-gap (10 points) with 95% confidence; it does not when the gap is below that with 95% confidence;
otherwise verify says it cannot tell, and how many held-out images would decide at the same accuracies.
State (victim checkpoints) lives outside OUT_DIR and is deleted when verify finishes.
"""


def _common(ap):
    from .profiles import PROFILES
    ap.add_argument("--profile", default="cpu", choices=list(PROFILES),
                    help="generation and training budgets: smoke (seconds, for trying the tool), cpu (default), "
                         "full, gpu, paper (the paper's budgets, for a GPU)")
    ap.add_argument("--device", default="auto", help="cpu, cuda or auto (default)")
    ap.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    ap.add_argument("--reference-size", type=int, default=None,
                    help="reference images, class-balanced (default: sized to the job, see above)")
    ap.add_argument("--state", default=None, help="the state folder (default ~/.cache/miue/<command>/<job>); "
                                                  "never inside OUT_DIR")
    ap.add_argument("--keep-state", action="store_true",
                    help="keep the state folder after success (it holds the perturbation: do not publish it)")
    ap.add_argument("--quiet", action="store_true", help="no progress bars")


def protect_main(argv=None) -> int:
    import argparse
    ap = argparse.ArgumentParser(prog="miue protect", description=PROTECT_HELP.replace("TIMES", PROTECT_TIMES),
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="example:\n  miue protect photos/ photos-protected/ --method miue "
                                        "--epsilon 8/255\n  miue verify photos-protected/ --originals photos/")
    ap.add_argument("in_dir", metavar="IN_DIR", help="folder of images to protect (read only)")
    ap.add_argument("out_dir", metavar="OUT_DIR", help="where the protected PNGs and manifest.json go")
    from .attacks import ATTACKS
    ap.add_argument("--method", default="miue", choices=sorted(m for m, c in ATTACKS.items() if c.norm == "linf"
                                                             and m != "random"),
                    help="the attack, an l-inf one (default miue)")
    ap.add_argument("--epsilon", default="8/255", help="l-inf budget: 8/255 (default), 4/255, 8 (levels), 0.0314; "
                                                       "above 16/255 needs --force")
    ap.add_argument("--reference", default="fashion-mnist",
                    help="the other classes while protecting: fashion-mnist (default), cifar10-jpeg (the JPEG copy "
                         "of CIFAR-10, colour), cifar10, cifar100, a folder of class sub-folders, or none (needs "
                         "two classes of your own)")
    ap.add_argument("--size", type=int, default=32, help="the source model's input side in pixels (default 32)")
    ap.add_argument("--force", action="store_true", help="allow an epsilon above 16/255")
    _common(ap)
    args = ap.parse_args(argv)
    if args.reference_size is not None and args.reference_size < 10:
        ap.error("--reference-size must be at least 10 (one image a class)")
    try:
        r = protect(args.in_dir, args.out_dir, method=args.method, epsilon=args.epsilon, profile_name=args.profile,
                    reference=args.reference, reference_size=args.reference_size, size=args.size, seed=args.seed,
                    device=args.device, force=args.force, progress=not args.quiet, state=args.state,
                    keep_state=args.keep_state)
    except ProtectError as exc:
        print(f"miue protect: {exc}", file=sys.stderr)
        return 2
    for w in r.warnings:
        print(f"miue protect: {w}", file=sys.stderr)
    s = r.manifest["summary"]
    print(f"protected {_count(s['images'], 'image', 'images')} into {r.out_dir} ({r.written} written, {r.skipped} "
          f"already there); max change {s['max_linf_levels']} levels (epsilon = {r.manifest['epsilon']}), lowest PSNR "
          f"{s['min_psnr_db']} dB; manifest: {r.out_dir / MANIFEST}"
          + (f"; state kept in {r.state} (it holds the perturbation: do not publish it)" if r.state else ""))
    return 0


def verify_main(argv=None) -> int:
    import argparse
    ap = argparse.ArgumentParser(prog="miue verify", description=VERIFY_HELP,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out_dir", metavar="OUT_DIR", help="a folder written by miue protect")
    ap.add_argument("--originals", default=None, help="the folder protect read (default: remembered from protect "
                                                      "on this machine)")
    ap.add_argument("--reference", default=None, help="the reference set (default: the one protect used)")
    ap.add_argument("--holdout", type=float, default=0.25, help="fraction of each class held out (default 0.25)")
    ap.add_argument("--min-gap", type=float, default=MIN_GAP,
                    help="the accuracy drop that counts as working, as a fraction (default 0.10: 10 points)")
    ap.add_argument("--json", default=None, help="also write the verify record to this file")
    _common(ap)
    args = ap.parse_args(argv)
    try:
        rec = verify(args.out_dir, reference=args.reference, originals=args.originals, profile_name=args.profile,
                     holdout=args.holdout, seed=args.seed, reference_size=args.reference_size, device=args.device,
                     progress=not args.quiet, state=args.state, keep_state=args.keep_state, min_gap=args.min_gap)
    except ProtectError as exc:
        print(f"miue verify: {exc}", file=sys.stderr)
        return 2
    print(verify_table(rec, args.min_gap))
    if args.json:
        Path(args.json).write_text(json.dumps(rec, indent=1) + "\n")
    return 0


# ------------------------------------------------------------------------------------- demo photos

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket")  # colour photographs inside scikit-image's package


def sample_photos(dest: str | Path, crops: int = 12, side: tuple[int, int] = (48, 160), seed: int = 0,
                  photos=PHOTOS) -> Path:
    """A folder of real photographs for trying protect: ``crops`` random crops of each photograph in
    ``photos`` that ships inside scikit-image (``skimage/data``; sides between ``side``), one class
    sub-folder per photograph; colour crops saved as JPEG, grayscale ones as PNG."""
    import numpy as np
    from PIL import Image
    try:
        import skimage
    except ImportError:
        raise ProtectError("the demo photographs come with scikit-image: pip install scikit-image") from None
    folder = Path(skimage.__file__).parent / "data"
    dest = Path(dest)
    rng = np.random.default_rng(seed)
    for name in sorted(os.listdir(folder)):
        if name.rsplit(".", 1)[0] not in photos or not name.endswith((".png", ".jpg")):
            continue
        im = Image.open(folder / name)
        im.load()
        stem = name.rsplit(".", 1)[0]
        out = dest / stem
        out.mkdir(parents=True, exist_ok=True)
        for k in range(crops):
            s = int(rng.integers(side[0], min(side[1], *im.size) + 1))
            x0, y0 = int(rng.integers(0, im.size[0] - s + 1)), int(rng.integers(0, im.size[1] - s + 1))
            crop = im.crop((x0, y0, x0 + s, y0 + int(s * rng.uniform(0.75, 1.0))))
            if crop.mode in ("RGB", "RGBA"):
                crop.convert("RGB").save(out / f"{stem}-{k:02d}.jpg", quality=92)
            else:
                crop.convert("L").save(out / f"{stem}-{k:02d}.png")
    return dest


def demo_configs(images: list[SourceImage], method: str, profile_name: str, reference_size: int, seed: int,
                 store: RunStore) -> tuple[dict, dict | None]:
    """(protect config, verify config or None while the protect record is missing) of the book's example on
    ``images`` (the verify run's config names the published pixels, which the protect record holds)."""
    cfg = protect_config(images, method, 8 / 255, profile_name, "fashion-mnist", reference_size, 32, seed)
    prec = store.get("protect", cfg)
    if prec is None or "published_pixels" not in prec["metrics"]:
        return cfg, None
    original_of = {Path(s.rel).with_suffix(".png").as_posix(): s for s in images}
    reference = {"set": "fashion-mnist", **cfg["reference"]}
    manifest = {"classes": cfg["owner_classes"], "reference": reference,
                "images": [{"class": s.label} for s in images]}
    return cfg, verify_config(prec["metrics"]["published_pixels"], _originals_digest(original_of), reference, 32,
                              profile_name, 0.25, seed, None, _verify_train_size(manifest, 0.25, None))


def recorded_job(photos: Path, method: str, profile_name: str, reference_size: int, seed: int, store: RunStore,
                 work: Path, progress: bool, samples: bool = False) -> tuple[dict, dict]:
    """(protect record, verify record) of protecting ``photos`` against a Fashion-MNIST reference and verifying
    it, read from ``store`` and computed (in ``work``) only when missing."""
    images, _ = scan(photos, 32)
    cfg, _ = demo_configs(images, method, profile_name, reference_size, seed, store)
    out = work / f"protected-{method}"
    kw = dict(method=method, profile_name=profile_name, reference_size=reference_size, seed=seed,
              progress=progress, store=store, state=work / "protect-state")
    prec = store.get("protect", cfg) or protect(photos, out, **kw, samples=samples).record
    _, vcfg = demo_configs(images, method, profile_name, reference_size, seed, store)
    if vcfg is None:
        raise RuntimeError(f"protect/{prec['hash']} predates the published-pixels digest that verify runs are "
                           "addressed by: delete that record and run again")
    vrec = store.get("verify", vcfg)
    if vrec is None:
        if not (out / MANIFEST).exists():
            protect(photos, out, **kw)
        vrec = verify(out, originals=photos, profile_name=profile_name, seed=seed, progress=progress, store=store,
                      state=work / "verify-state")
    return prec, vrec


def demo(method: str = "miue", profile_name: str = "cpu", crops: int = 100, reference_size: int = 1000,
         seed: int = 0, store: RunStore | None = None, workdir: str | Path | None = None,
         progress: bool = True) -> tuple[dict, dict]:
    """(protect record, verify record) of the book's end-to-end example: :func:`sample_photos` (``crops``
    crops of each of four photographs, one class each) protected against a Fashion-MNIST reference of
    ``reference_size`` images, then verified. Reads the records from ``store``; computes only what is
    missing (the photographs are re-cut, deterministically, in a temporary folder to find the records)."""
    import tempfile
    store = store or RunStore()
    with tempfile.TemporaryDirectory(prefix="miue-demo-") as tmp:
        work = Path(workdir or tmp)
        photos = sample_photos(work / "photos", crops=crops, seed=seed)
        return recorded_job(photos, method, profile_name, reference_size, seed, store, work, progress, samples=True)


# ------------------------------------------------------------------------- what the defaults cost

COST_JOBS = {  # name → (what, images at the cpu profile, at smoke)
    "dozen": ("12 photographs (4 crops of each of 3 photographs shipped with scikit-image, 3 classes)", 12, 12),
    "cifar-1000": ("1,000 photographs (CIFAR-10 (JPEG q75 copy) test images, 100 a class, 10 classes)", 1000, 100),
}


def owner_folder(job: str, dest: str | Path, n: int) -> Path:
    """A data owner's folder for :data:`COST_JOBS` ``job``: the dozen photographs, or ``n`` test images of the
    CIFAR-10 JPEG copy (``n / 10`` a class, the first by file name), copied as the JPEG files they are."""
    import shutil

    from .data import CIFAR10_CLASSES, find_cifar10_jpeg
    dest = Path(dest)
    if job == "dozen":
        return sample_photos(dest, crops=n // 3, photos=("astronaut", "chelsea", "coffee"))
    if job != "cifar-1000":
        raise ValueError(f"unknown job {job!r}; choose one of {', '.join(COST_JOBS)}")
    folder, _ = find_cifar10_jpeg()  # the layout checked; says where to get the copy when it is missing
    for c in CIFAR10_CLASSES:
        (dest / c).mkdir(parents=True, exist_ok=True)
        for f in sorted((folder / "test" / c).iterdir())[:n // len(CIFAR10_CLASSES)]:
            shutil.copyfile(f, dest / c / f.name)
    return dest


def default_job_configs(job: str, profile_name: str, store: RunStore) -> tuple[dict, dict | None]:
    """(protect config, verify config or None) of :func:`default_job`, computing nothing."""
    import tempfile
    with tempfile.TemporaryDirectory(prefix="miue-cost-") as tmp:
        photos = owner_folder(job, Path(tmp) / "photos", COST_JOBS[job][2 if profile_name == "smoke" else 1])
        images, _ = scan(photos, 32)
        return demo_configs(images, "miue", profile_name, auto_reference_size(len(images), profile_name), 0, store)


def default_job(job: str, profile_name: str = "cpu", store: RunStore | None = None,
                progress: bool = False) -> tuple[dict, dict]:
    """(protect record, verify record) of ``job`` at the command's default settings (MI-UE, ε 8/255, the
    reference sized to the job) and ``profile_name``; read from ``store``, computed only when missing."""
    import tempfile
    store = store or RunStore()
    n = COST_JOBS[job][2 if profile_name == "smoke" else 1]
    with tempfile.TemporaryDirectory(prefix="miue-cost-") as tmp:
        work = Path(tmp)
        photos = owner_folder(job, work / "photos", n)
        ref = auto_reference_size(len(scan(photos, 32)[0]), profile_name)
        return recorded_job(photos, "miue", profile_name, ref, 0, store, work, progress)


def accuracy_text(record: dict, arm: str) -> str:
    """'86.0% [77.9, 91.5]': an arm's held-out accuracy with its 95% Wilson interval, in percent."""
    m = record["metrics"]
    n = m["n_test_owner"]
    k = m[arm].get("correct", round(m[arm]["protected_classes_acc"] * n))
    lo, hi = wilson(k, n)
    return f"{100 * k / n:.1f}% [{100 * lo:.1f}, {100 * hi:.1f}]"


def gap_text(record: dict) -> str:
    v = record_verdict(record)
    return f"{100 * v['gap']:.1f} [{100 * v['gap_low']:.1f}, {100 * v['gap_high']:.1f}]"


def verdicts_text(records: dict) -> str:
    """One sentence per verdict outcome over ``records`` (label → verify record), in words computed from them."""
    by = {}
    for label, rec in records.items():
        by.setdefault(record_verdict(rec)["verdict"], []).append(label)
    n = {rec["metrics"]["n_test_owner"] for rec in records.values()}
    parts = []
    if "works" in by:
        parts.append(f"The protection works for {', '.join(by['works'])}: the 95% interval of the gap lies at or "
                     f"above {100 * MIN_GAP:g} points.")
    if "does not work" in by:
        parts.append(f"**It does not work for {', '.join(by['does not work'])}**: the gap's 95% interval lies "
                     f"below {100 * MIN_GAP:g} points, so a victim trained on the protected images still "
                     "recognises the held-out originals almost as often as the control.")
    if "cannot tell" in by:
        parts.append(f"For {', '.join(by['cannot tell'])} the {'/'.join(str(x) for x in sorted(n))} held-out images "
                     f"cannot tell: the gap's interval straddles {100 * MIN_GAP:g} points.")
    return " ".join(parts)


@dataclass
class CostTable:
    table: object  # pandas DataFrame
    summary: str
    records: dict  # job → (protect record, verify record)


def cost_table(profile_name: str = "cpu", store: RunStore | None = None) -> CostTable:
    """The book's table of what :data:`COST_JOBS` cost at the default settings, from their records."""
    import pandas as pd
    records = {job: default_job(job, profile_name, store) for job in COST_JOBS}
    rows, lines = [], []
    for job, (prec, vrec) in records.items():
        v = record_verdict(vrec)
        pm, vm = prec["metrics"], vrec["metrics"]
        protect_min = prec["provenance"]["wall_time_s"] / 60
        verify_min = vrec["provenance"]["wall_time_s"] / 60
        rows.append({"folder": COST_JOBS[job][0].split(" (")[0], "images": pm["images"],
                     "classes": pm["classes"], "reference images": prec["config"]["reference"]["size"],
                     "protect (min)": round(protect_min, 1), "verify (min)": round(verify_min, 1),
                     "held-out images": vm["n_test_owner"],
                     "protected victim [95% CI]": accuracy_text(vrec, "protected"),
                     "control victim [95% CI]": accuracy_text(vrec, "control"),
                     "gap (points) [95% CI]": gap_text(vrec), "verify says": verdict_line(v)})
        lines.append(f"{COST_JOBS[job][0]}: protect took {protect_min:.1f} min and verify {verify_min:.1f} min; "
                     f"verify: {verdict_line(v)}.")
    return CostTable(pd.DataFrame(rows).set_index("folder"), "\n\n".join(lines), records)
