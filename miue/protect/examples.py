"""The book's end-to-end example: real photographs cut into a folder, protected, then verified.

The records are read from the run store; only what is missing is computed.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..runs import RunStore
from .errors import ProtectError
from .folders import MANIFEST
from .images import SourceImage, scan
from .protection import protect, protect_config
from .verification import _originals_digest, _verify_train_size, verify, verify_config


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
