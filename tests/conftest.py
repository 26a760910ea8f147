import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
torch.set_num_threads(2)


@pytest.fixture
def store(tmp_path, monkeypatch):
    """A run store in a temporary folder (tests never touch data/runs)."""
    from miue.runs import RunStore
    monkeypatch.setenv("MIUE_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("MIUE_CACHE", str(tmp_path / "cache"))
    return RunStore(tmp_path / "runs", tmp_path / "cache", poll_seconds=0.2)


@pytest.fixture(scope="session")
def digits():
    from miue.data import load
    return load("digits", "train"), load("digits", "test")


@pytest.fixture(scope="session")
def fmnist():
    from miue.data import load, stratified_subset
    try:
        return stratified_subset(load("fashion-mnist", "train", download=False), 1000, 0), \
            stratified_subset(load("fashion-mnist", "test", download=False), 2000, 0)
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
