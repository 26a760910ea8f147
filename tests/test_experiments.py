"""The spine end to end on the bundled 8×8 digits: poison → victim → MI, as stored runs."""

import shutil

import pytest

from miue import experiments as ex
from miue.profiles import profile
from miue.runs import RunStore

P = profile("smoke", dataset="digits", n_train=None, n_test=None, victim_epochs=3, mi_slices=50, mi_bins=10,
            attacks={"miue": {"epochs": 1, "step_size": 2 / 255, "lr": 0.1}})


def test_records_rebuild_without_recomputation(store, tmp_path, monkeypatch):
    rec_v = ex.victim(P, "miue", 0, store, progress=False)
    rec_m = ex.mutual_information(P, "miue", 0, store, progress=False)
    rec_p, poison = ex.poison(P, "miue", store, progress=False)
    assert rec_v["config"]["poison"]["attack"]["epochs"] == 1 and len(rec_v["history"]) == 3
    per_class = rec_v["metrics"]["test_acc_per_class"]
    assert abs(sum(per_class) / len(per_class) - rec_v["metrics"]["test_acc"]) < 0.02  # balanced test split
    assert rec_v["provenance"]["seed"] == 0 and rec_v["provenance"]["torch_threads"] >= 1
    assert rec_m["metrics"]["mi_shuffled"] > 0 and len(rec_m["metrics"]["mi_per_class"]) == 10
    assert rec_p["samples"]["clean"]["shape"][0] == 5 and poison.meta["method"] == "miue"
    # a fresh clone has the records but not the cache: reading them computes nothing
    clone = RunStore(tmp_path / "clone_runs", tmp_path / "clone_cache")
    shutil.copytree(store.root, clone.root)
    import miue.attacks.miue as attack_module
    import miue.experiments as exp_module
    monkeypatch.setattr(exp_module, "fit", lambda *a, **k: pytest.fail("victim retrained"))
    monkeypatch.setattr(attack_module.MIUE, "generate", lambda *a, **k: pytest.fail("poison regenerated"))
    assert ex.victim(P, "miue", 0, clone, progress=False) == rec_v
    assert ex.mutual_information(P, "miue", 0, clone, progress=False) == rec_m
    assert ex.poison_record(P, "miue", clone, progress=False) == rec_p  # the record alone: no tensor needed
    monkeypatch.undo()
    # a new victim of a committed poison regenerates the tensor into the cache; the record stays byte-identical
    before = (clone.root / "poison" / f"{rec_p['hash']}.json").read_bytes()
    ex.victim(P, "miue", 1, clone, progress=False)
    assert (clone.root / "poison" / f"{rec_p['hash']}.json").read_bytes() == before
    assert (clone.cache / "poison" / rec_p["hash"] / "poison.safetensors").exists()


def test_bad_method_name():
    with pytest.raises(ValueError, match="unknown method 'mi-ue'.*clean"):
        ex.victim(P, "mi-ue", 0)


def test_victim_width_changes_the_victim_only():
    """The transfer chapter's shallow victims train at their own size on the profile's poison."""
    from miue.chapters import transfer_victim_spec
    base = ex.victim_spec(P, "miue", 0, arch="lenet5")
    wide = ex.victim_spec(P, "miue", 0, arch="lenet5", victim_width=1.0)
    assert wide.width == 1.0 and base.width == P.width
    assert wide.address != base.address and wide.poison.address == base.poison.address
    assert transfer_victim_spec(P, "miue", "lenet5").address == wide.address
    assert transfer_victim_spec(P, "miue", P.model).address == ex.victim_spec(P, "miue", 0).address
    for bad in (0, -1.0, True, "1"):
        with pytest.raises(ValueError, match="victim_width"):
            ex.victim_spec(P, "miue", 0, victim_width=bad)


def test_victim_architecture_covariance_and_separability(store):
    base = ex.victim_config(P, "miue", 0)
    assert ex.victim_config(P, "miue", 0, "resnet18") == base  # the profile's model: same run
    other = ex.victim_config(P, "miue", 0, "2-nn")
    assert other["model"] == "2-nn" and other["poison"] == base["poison"]  # same poison, other victim
    with pytest.raises(ValueError, match="unknown architecture 'resnet-18'"):
        ex.victim_config(P, "miue", 0, "resnet-18")
    assert ex.mi_config(P, "miue", 0, estimator="ksg")["settings"]["k"] == 3
    with pytest.raises(ValueError, match="unknown estimator"):
        ex.mi_config(P, "miue", 0, estimator="knn")
    rec = ex.victim(P, ex.CLEAN, 0, store, progress=False, arch="2-nn")
    assert rec["config"]["model"] == "2-nn" and rec["metrics"]["test_acc"] > 0.5  # digits: an MLP learns them
    cov = ex.covariance(P, ex.CLEAN, 0, store, progress=False, arch="2-nn")["metrics"]
    assert cov["poisoned"]["trace"] > 0 and cov["poisoned"] == cov["clean"]  # clean: both feature sets agree
    sep = ex.separability(P, "random", "noise", store, progress=False)
    assert len(sep["history"]) == P.victim_epochs and sep["config"]["recipe"]["augment"] is False
    with pytest.raises(ValueError, match="clean data has no noise"):
        ex.separability(P, ex.CLEAN, "noise", store)
