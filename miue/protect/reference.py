"""The reference set: the classes that play "everyone else" while a perturbation is computed.

When the owner has one class only, the one-class mode of the paper's App. G.1 applies: a reference set
(Fashion-MNIST, CIFAR-10/100 where present, or any folder of class sub-folders) plays the other classes during
generation and is never written out. Verify trains its victims on it too. Its size follows the job.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from ..data import ImageDataset, load, stratified_subset
from .errors import ProtectError
from .images import _inputs_digest, _rgb_array, open_image, scan, to_model_input


REFERENCES = ("fashion-mnist", "cifar10-jpeg", "cifar10", "cifar100", "none")


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


def _folder_digest(folder: Path, size: int) -> str:
    images, _ = scan(folder, size)
    return f"folder:{folder.name}:{_inputs_digest(images)[:16]}"


def auto_reference_size(n_images: int, profile_name: str) -> int:
    """The reference set sized to the job (``--reference-size`` unset): as many reference images as the owner
    has, at least 100 (10 a class) and at most the profile's training-set size. Generation cost grows with the
    images it runs on (reference + owner's)."""
    from ..profiles import profile
    cap = profile(profile_name).n_train or 4000
    return int(min(cap, max(100, n_images)))
