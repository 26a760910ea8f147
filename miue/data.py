"""Datasets as uint8 tensors with labels and metadata (tensor-resident, no DataLoader).

``load(name, split)`` returns an :class:`ImageDataset` whose ``images`` are ``uint8`` of shape
(N, C, H, W). ``stratified_subset`` picks a deterministic class-balanced subset, as the profiles ask.
"""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

DATA_ROOT = Path(os.environ.get("MIUE_DATA", Path(__file__).resolve().parent.parent / "data"))
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")

FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck")


class DatasetNotFoundError(FileNotFoundError):
    """A dataset is not on this machine and could not be fetched."""


@dataclass(frozen=True)
class Augmentation:
    """The dataset's training augmentation (App. E.3): random crop with ``pad`` and optional flip."""

    crop_padding: int = 4
    horizontal_flip: bool = True


@dataclass(frozen=True, eq=False)
class ImageDataset:
    """Images (uint8, N×C×H×W), integer labels and the metadata a chapter needs."""

    name: str
    split: str
    images: torch.Tensor
    labels: torch.Tensor
    classes: tuple[str, ...]
    augmentation: Augmentation = field(default_factory=Augmentation)
    indices: torch.Tensor | None = None  # positions in the full split, when this is a subset

    def __post_init__(self):
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise ValueError(f"images must be uint8 N×C×H×W, got {self.images.dtype} {tuple(self.images.shape)}")
        if self.labels.shape != (self.images.shape[0],):
            raise ValueError("labels must have one entry per image")

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])

    def with_images(self, images: torch.Tensor) -> "ImageDataset":
        """The same samples with other pixels (e.g. poisoned), keeping labels and metadata."""
        if images.shape != self.images.shape:
            raise ValueError(f"shape {tuple(images.shape)} differs from {tuple(self.images.shape)}")
        return ImageDataset(self.name, self.split, images, self.labels, self.classes, self.augmentation, self.indices)

    def take(self, idx: torch.Tensor) -> "ImageDataset":
        base = self.indices[idx] if self.indices is not None else idx
        return ImageDataset(self.name, self.split, self.images[idx], self.labels[idx], self.classes,
                            self.augmentation, base)


def stratified_subset(ds: ImageDataset, n: int | None, seed: int = 0) -> ImageDataset:
    """A deterministic class-balanced subset of ``n`` samples (all of ``ds`` if ``n`` is None or too big).

    Each class contributes ``n // C`` samples (the remainder goes to the first classes), drawn by a
    seeded permutation; the result is sorted by original index so it is stable across runs.
    """
    if n is None or n >= len(ds):
        return ds
    if n < ds.num_classes:
        raise ValueError(f"a stratified subset needs at least one sample per class ({ds.num_classes}), got n={n}")
    g = torch.Generator().manual_seed(seed)
    per_class = [n // ds.num_classes + (1 if c < n % ds.num_classes else 0) for c in range(ds.num_classes)]
    chosen = []
    for c, k in enumerate(per_class):
        members = torch.nonzero(ds.labels == c).flatten()
        chosen.append(members[torch.randperm(len(members), generator=g)[:k]])
    idx = torch.sort(torch.cat(chosen)).values
    return ds.take(idx)


# ---------------------------------------------------------------- loaders


def _read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (the MNIST family's format), gzipped or not."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def _find_fashion_mnist(root: Path) -> Path | None:
    for folder in (root / "fashion-mnist", root / "FashionMNIST" / "raw", DEBIAN_FASHION_MNIST):
        if (folder / "train-images-idx3-ubyte.gz").exists() or (folder / "train-images-idx3-ubyte").exists():
            return folder
    return None


def _load_fashion_mnist(split: str, root: Path, download: bool) -> ImageDataset:
    folder = _find_fashion_mnist(root)
    if folder is None and download:
        try:
            import torchvision
            torchvision.datasets.FashionMNIST(str(root), train=True, download=True)
            torchvision.datasets.FashionMNIST(str(root), train=False, download=True)
        except Exception as exc:  # network errors vary by platform
            raise _not_found("fashion-mnist", exc) from None
        folder = _find_fashion_mnist(root)
    if folder is None:
        raise _not_found("fashion-mnist")
    prefix = "train" if split == "train" else "t10k"

    def pick(stem):
        p = folder / f"{prefix}-{stem}"
        return p if p.exists() else folder / f"{prefix}-{stem}.gz"

    images = torch.from_numpy(_read_idx(pick("images-idx3-ubyte")).copy()).unsqueeze(1)
    labels = torch.from_numpy(_read_idx(pick("labels-idx1-ubyte")).astype(np.int64))
    return ImageDataset("fashion-mnist", split, images, labels, FASHION_CLASSES, Augmentation(4, True))


def _load_cifar(name: str, split: str, root: Path, download: bool) -> ImageDataset:
    import torchvision
    cls = torchvision.datasets.CIFAR10 if name == "cifar10" else torchvision.datasets.CIFAR100
    try:
        ds = cls(str(root), train=split == "train", download=False)
    except RuntimeError:
        if not download:
            raise _not_found(name) from None
        try:
            ds = cls(str(root), train=split == "train", download=True)
        except Exception as exc:
            raise _not_found(name, exc) from None
    images = torch.from_numpy(np.asarray(ds.data)).permute(0, 3, 1, 2).contiguous()
    labels = torch.tensor(ds.targets, dtype=torch.int64)
    return ImageDataset(name, split, images, labels, tuple(ds.classes), Augmentation(4, True))


def _load_digits(split: str) -> ImageDataset:
    """scikit-learn's bundled 8×8 digits (1,797 images), split 1,347 / 450 by a fixed stratified draw."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    images = np.round(d.images * (255.0 / 16.0)).astype(np.uint8)[:, None]
    idx_train, idx_test = train_test_split(np.arange(len(images)), test_size=450, stratify=d.target, random_state=0)
    idx = np.sort(idx_train if split == "train" else idx_test)
    return ImageDataset("digits", split, torch.from_numpy(images[idx]), torch.from_numpy(d.target[idx].astype(np.int64)),
                        tuple(str(i) for i in range(10)), Augmentation(1, False))


def _load_imagenet_subset(split: str, root: Path, num_classes: int = 100) -> ImageDataset:
    """The first 100 ImageNet-1k classes (App. E.1) from a user-given folder (``MIUE_IMAGENET``).

    Train images are resized to 224×224; test images resized to 256 and centre-cropped to 224 (App. E.3).
    The folder holds ``train/<wnid>/*.JPEG`` and ``val/<wnid>/*.JPEG`` (torchvision ImageFolder layout).
    """
    from PIL import Image
    from torchvision.transforms import v2 as T

    base = Path(os.environ.get("MIUE_IMAGENET", root / "imagenet"))
    folder = base / ("train" if split == "train" else "val")
    if not folder.is_dir():
        raise _not_found("imagenet-subset")
    wnids = sorted(p.name for p in folder.iterdir() if p.is_dir())[:num_classes]
    tf = T.Resize((224, 224)) if split == "train" else T.Compose([T.Resize((256, 256)), T.CenterCrop(224)])
    images, labels = [], []
    for c, w in enumerate(wnids):
        for f in sorted((folder / w).iterdir()):
            img = torch.from_numpy(np.array(Image.open(f).convert("RGB"))).permute(2, 0, 1)
            images.append(tf(img))
            labels.append(c)
    return ImageDataset("imagenet-subset", split, torch.stack(images), torch.tensor(labels), tuple(wnids),
                        Augmentation(0, True))


def _not_found(name: str, exc: Exception | None = None) -> DatasetNotFoundError:
    ways = {
        "fashion-mnist": "put the four IDX .gz files in data/fashion-mnist/, or `apt-get install dataset-fashion-mnist` "
                         "(Debian, offline), or run with internet access so torchvision can download it",
        "cifar10": "run once with internet access (torchvision downloads it into data/), or copy "
                   "cifar-10-python.tar.gz's folder cifar-10-batches-py/ into data/",
        "cifar100": "run once with internet access (torchvision downloads it into data/), or copy "
                    "cifar-100-python/ into data/",
        "imagenet-subset": "set MIUE_IMAGENET to an ImageNet-1k folder with train/<wnid>/ and val/<wnid>/ "
                           "subfolders (the first 100 wnids are used)",
    }[name]
    why = f" (download failed: {exc})" if exc else ""
    return DatasetNotFoundError(f"dataset {name!r} is not on this machine{why}. To get it: {ways}.")


DATASETS = ("fashion-mnist", "cifar10", "cifar100", "imagenet-subset", "digits")


def load(name: str, split: str = "train", root: str | Path | None = None, download: bool = True) -> ImageDataset:
    """Load ``name`` (one of :data:`DATASETS`) for ``split`` ('train' or 'test') as uint8 tensors."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    root = Path(root) if root is not None else DATA_ROOT
    if name == "fashion-mnist":
        return _load_fashion_mnist(split, root, download)
    if name in ("cifar10", "cifar100"):
        return _load_cifar(name, split, root, download)
    if name == "digits":
        return _load_digits(split)
    return _load_imagenet_subset(split, root)
