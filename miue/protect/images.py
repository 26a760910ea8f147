"""Reading, resizing and writing one image, and finding every image of a folder.

How an image of any size is protected. The source model works at a fixed ``size`` × ``size`` RGB input
(32 by default). Each image is shrunk to it by area averaging, the attack computes δ there, and δ is brought
back to the image's own resolution by bilinear interpolation (a convex combination, so |δ| ≤ ε still holds),
rounded to whole 8-bit levels and clipped to ⌊255 ε⌋ levels: the written image differs from the original by
at most ε after resizing and quantisation, which is checked for every image and reported in the manifest.
EXIF orientation is applied first, then every metadata chunk is dropped; an alpha channel is kept unchanged;
grayscale images get the mean of δ over the channels and stay grayscale.

Images are known by their decoded pixels (:func:`pixels_sha256`), whatever their encoding.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from ..runs import file_sha256
from .errors import ProtectError, _count


IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp", ".tif", ".tiff"}


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
