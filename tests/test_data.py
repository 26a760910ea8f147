import pytest
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
