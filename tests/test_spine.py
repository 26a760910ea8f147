"""The spine: runs as values with stable addresses, the defense hook, one PGD, one-class poisoning."""

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from miue import experiments as ex
from miue import methods, settings
from miue.attacks import ATTACKS, create_attack
from miue.attacks.miue import MIUEConfig
from miue.defenses import DEFENSES, create_defense
from miue.pgd import pgd, project
from miue.profiles import profile
from miue.runs import config_hash
from miue.specs import PoisonSpec

ROOT = Path(__file__).resolve().parent.parent
P = profile("smoke", dataset="digits", n_train=None, n_test=None, victim_epochs=3, mi_slices=50, mi_bins=10,
            attacks={"em": {"max_rounds": 2, "pgd_steps": 5, "step_size": 2 / 255, "model": "lenet5", "width": 0.5}})


def test_every_committed_record_is_found_at_its_recomputed_address():
    paths = sorted((ROOT / "data" / "runs").glob("*/*.json"))
    assert len(paths) >= 190
    for path in paths:
        rec = json.loads(path.read_text())
        assert config_hash(rec["kind"], rec["config"]) == rec["hash"] == path.stem, path


def test_the_cpu_profile_specs_address_the_committed_records():
    cpu = profile("cpu")
    for m in ["clean", "random", "em", "ap", "miue", "miue-code"]:
        for s in cpu.seeds:
            for spec in (ex.victim_spec(cpu, m, s), ex.mi_spec(cpu, m, s)):
                assert (ROOT / "data" / "runs" / f"{spec.address}.json").exists(), spec.describe()


def test_adding_a_setting_with_a_default_keeps_every_address():
    @dataclasses.dataclass(frozen=True)
    class Grown(MIUEConfig):
        new_knob: float = settings.setting(0.25, low=0, added=True)

    old = PoisonSpec("miue", MIUEConfig(epochs=8), "fashion-mnist", 4000)
    same = PoisonSpec("miue", Grown(epochs=8), "fashion-mnist", 4000)
    moved = PoisonSpec("miue", Grown(epochs=8, new_knob=0.5), "fashion-mnist", 4000)
    assert same.hash == old.hash and moved.hash != old.hash
    assert "new_knob" not in same.config()["attack"] and moved.config()["attack"]["new_knob"] == 0.5
    # the optional poison and victim settings too: absent at their defaults, present otherwise
    v = ex.victim_spec(P, "em", 0)
    assert "defense" not in v.config() and "classes" not in v.poison.config()
    assert ex.victim_spec(P, "em", 0, defense="jpeg").hash != v.hash
    assert ex.poison_spec(P, "em", classes=[3]).hash != v.poison.hash


def test_specs_list_dependencies_without_computing(store):
    spec = ex.mi_spec(P, "em", 0)
    assert [d.kind for d in spec.dependencies()] == ["victim", "poison"]
    assert not any(store.root.glob("*/*.json"))  # building specs computed nothing


def test_every_method_has_one_label_and_one_colour():
    names = ["clean", *ATTACKS, *DEFENSES]
    labels = [methods.label(n) for n in names]
    assert len(set(labels)) == len(labels) and methods.label("miue") == "MI-UE"
    colours = [methods.color(n) for n in ["clean", *ATTACKS]]
    assert len(set(colours)) == len(colours)
    defenses = [methods.color(n) for n in ["none", *DEFENSES]]  # a figure of defenses tells each apart too
    assert len(set(defenses)) == len(defenses) and all(n in methods.COLORS for n in DEFENSES)
    from miue import viz
    assert viz.palette(["miue", "em"]) == {"MI-UE": methods.color("miue"), "EM": methods.color("em")}


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_pgd_descends_and_ascends_within_budget(norm):
    torch.manual_seed(0)
    w = torch.randn(16)
    x = torch.rand(8, 16)
    eps = 8 / 255 if norm == "linf" else 0.5
    loss = lambda inp: (inp @ w).square().mean()  # noqa: E731
    base = loss(x).item()
    down, _ = pgd(loss, x, torch.zeros_like(x), eps=eps, step_size=eps / 4, steps=10, norm=norm)
    up, _ = pgd(loss, x, torch.zeros_like(x), eps=eps, step_size=eps / 4, steps=10, norm=norm, ascent=True)
    assert loss(x + down).item() < base < loss(x + up).item()
    for d in (down, up):
        size = d.abs().amax(1) if norm == "linf" else d.norm(dim=1)
        assert (size <= eps + 1e-5).all() and ((x + d) >= 0).all() and ((x + d) <= 1).all()
    assert torch.equal(project(torch.full_like(x, 1.0), x, 0.1), (x + 0.1).clamp(0, 1) - x)


def test_one_class_poison_leaves_other_classes_byte_identical(store):
    spec = ex.poison_spec(P, "random", classes=[3])
    rec = ex.run(spec, store, progress=False)
    pois = ex.load_poison(spec, store)
    train, _ = ex.datasets(P)
    published = pois.apply(train.images)
    other = train.labels != 3
    assert torch.equal(published[other], train.images[other])
    assert not torch.equal(published[~other], train.images[~other])
    assert rec["metrics"]["poisoned_images"] == int((~other).sum())
    # cut from the whole-set poison, which is its own (shared) run: the class keeps exactly its δ
    assert spec.dependencies() == [spec.whole()] and store.get("poison", spec.whole().config()) is not None
    whole = ex.load_poison(spec.whole(), store)
    assert torch.equal(pois.delta[~other], whole.delta[~other])
    half = ex.poison_spec(P, "random", fraction=0.5)
    ex.run(half, store, progress=False)
    changed = (ex.load_poison(half, store).apply(train.images) != train.images).flatten(1).any(1)
    assert abs(changed.float().mean().item() - 0.5) < 0.02


def test_poison_carries_its_norm_and_is_checked_against_it(tmp_path):
    from miue.poisons import InvalidPoisonError, Poison
    x = torch.randint(0, 256, (4, 1, 8, 8), dtype=torch.uint8)
    d = torch.zeros(4, 1, 8, 8)
    d[:, 0, 2, 3] = 0.5
    p = Poison(d, 1, {"method": "ops"}, norm="l0")
    p.validate(x)
    p.save(tmp_path / "p.safetensors")
    assert Poison.load(tmp_path / "p.safetensors").norm == "l0"
    d[:, 0, 4, 4] = 0.5
    with pytest.raises(InvalidPoisonError, match="l0"):
        Poison(d, 1, {"method": "ops"}, norm="l0").validate(x)
    with pytest.raises(InvalidPoisonError, match="l2"):
        Poison(torch.full((4, 1, 8, 8), 0.2), 0.5, {"method": "lsp"}, norm="l2").validate(x)


def test_jpeg_and_grayscale_return_valid_images():
    x = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8)
    low, high = create_defense({"name": "jpeg", "quality": 10}).purify(x), create_defense("jpeg").__class__(
        quality=90).purify(x)
    assert low.dtype == torch.uint8 and low.shape == x.shape
    err = lambda y: (y.float() - x.float()).abs().mean().item()  # noqa: E731
    assert err(high) < err(low) and err(low) > 1  # a real lossy codec: lower quality, larger error
    g = create_defense("grayscale").purify(x)
    assert g.shape == x.shape and torch.equal(g[:, 0], g[:, 1]) and torch.equal(g[:, 1], g[:, 2])
    one = torch.randint(0, 256, (3, 1, 28, 28), dtype=torch.uint8)
    assert create_defense("jpeg").purify(one).shape == one.shape
    with pytest.raises(ValueError, match="unknown defense 'jpg'"):
        create_defense("jpg")
    with pytest.raises(ValueError, match="quality"):
        create_defense({"name": "jpeg", "quality": 0})


def test_mixup_soft_targets_sum_to_one_and_mix_pairs():
    from miue.models import create_model
    model = create_model("2-nn", 10, 1, 8, 1.0)
    x, y = torch.rand(32, 1, 8, 8), torch.randint(0, 10, (32,))
    g = torch.Generator().manual_seed(0)
    xm, t = create_defense("mixup").hook(model, x, y, g)
    assert xm.shape == x.shape and t.shape == (32, 10)
    assert torch.allclose(t.sum(1), torch.ones(32)) and (t >= 0).all()
    assert (t > 0).sum(1).max() <= 2 and not torch.equal(xm, x)


@pytest.mark.parametrize("defense", ["jpeg", "mixup", "at", "cutout", "cutmix", "ueraser", "op", "d-vae"])
def test_defenses_run_end_to_end_as_victims(store, defense):
    rec = ex.victim(P, "em", 0, store, progress=False, defense=defense)
    base = ex.victim(P, "em", 0, store, progress=False)
    assert rec["config"]["defense"]["name"] == defense and rec["hash"] != base["hash"]
    assert rec["config"]["poison"] == base["config"]["poison"]  # same poison, defended victim
    per_class = rec["metrics"]["test_acc_per_class"]
    assert len(per_class) == 10 and abs(sum(per_class) / 10 - rec["metrics"]["test_acc"]) < 0.02
    # digits, 3 epochs: the defended victim still learns, except where the defense removes what 8×8 digits
    # are learned from in 3 epochs: CutMix's mixed targets slow it (chance at 3 epochs, 84% at 10 on clean
    # digits), OP projects out the digits' own linear directions, D-VAE's 2-epoch smoke VAEs blur them
    assert rec["metrics"]["test_acc"] > {"cutmix": 0.08, "op": 0.08, "d-vae": 0.08}.get(defense, 0.3)


def test_settings_are_checked_with_one_message():
    with pytest.raises(ValueError, match="'epochs' must be int"):
        create_attack("miue", epochs="3")
    with pytest.raises(ValueError, match="'epochs' = 0 is out of range"):
        create_attack("miue", epochs=0)
    with pytest.raises(ValueError, match="'distance' = 'x' is not allowed"):
        create_attack("miue", distance="x")
    import numpy as np
    assert create_attack("em", eps=np.float64(8 / 255)).config.eps == pytest.approx(8 / 255)


def test_every_chapter_lists_its_runs_and_each_is_recorded_at_the_cpu_profile():
    from miue.chapters import CHAPTERS, StoredSpec, chapter_specs
    cpu = profile("cpu")
    for chapter in CHAPTERS:
        for spec in chapter_specs(chapter, cpu):
            assert (ROOT / "data" / "runs" / f"{spec.address}.json").exists(), (chapter, spec.describe())
    listed = chapter_specs("01_at_a_glance", cpu)
    assert {s.kind for s in listed if not isinstance(s, StoredSpec)} == {"victim", "mi", "poison"}


def test_the_width_study_runs_em_to_its_stop_and_leaves_full_width_to_a_gpu():
    from miue.chapters import EM_STOP_ROUNDS, STUDIES, em_to_stop
    cpu = profile("cpu")
    stop = em_to_stop(cpu)
    assert stop.attack_settings("em")["max_rounds"] == EM_STOP_ROUNDS > cpu.attack_settings("em")["max_rounds"]
    assert {k: v for k, v in stop.attack_settings("em").items() if k != "max_rounds"} == {
        k: v for k, v in cpu.attack_settings("em").items() if k != "max_rounds"}
    assert stop.attack_settings("ap") == cpu.attack_settings("ap")
    assert ex.victim_spec(stop, "em", 0).address != ex.victim_spec(cpu, "em", 0).address

    def cells(p):
        return {(s.config()["n_train"], s.config()["width"]) for s in STUDIES["width_curve"](p) if s.kind == "victim"}

    base = {(4000, cpu.width), (16000, cpu.width)}  # EM to its stop, at the profile's width
    assert cells(cpu) == base | {(4000, 0.25), (4000, 0.5), (16000, 0.25)}
    assert cells(cpu.override(device="cuda")) == base | {(n, w) for n in (4000, 16000) for w in (0.25, 0.5, 1.0)}


def test_the_transfer_chapter_leaves_the_costliest_architectures_to_a_gpu_and_says_which():
    from miue.chapters import TRANSFER_GPU_ONLY, transfer_lists
    cpu, gpu = transfer_lists(profile("cpu")), transfer_lists(profile("gpu"))
    assert not set(cpu["archs"]) & set(TRANSFER_GPU_ONLY) and cpu["gpu_only"] == list(TRANSFER_GPU_ONLY)
    assert set(TRANSFER_GPU_ONLY) <= set(gpu["archs"]) and gpu["gpu_only"] == []
    assert set(cpu["archs"]) | set(cpu["gpu_only"]) == set(gpu["archs"])  # nothing dropped silently
    # shallow victims train at their own size (scaled by 1/8, LeNet-5 keeps 1 and 2 channels), deep ones scaled
    assert cpu["widths"] == {a: 1.0 if a in ("lenet5", "3-nn", "2-nn") else profile("cpu").width for a in cpu["archs"]}


def test_a_fitted_purifier_is_a_run_of_its_own_shared_by_its_victims(store, monkeypatch):
    """A toy fitted defense (subtracts the per-pixel mean shift the poison adds): its fit runs once, is cached
    with its hash, and both victims that use it read the same state."""
    from miue.defenses.base import DEFENSES, Defense, register

    fits = []

    @register
    class MeanShift(Defense):
        name, label, kind, fitted = "mean-shift-test", "Mean shift (test)", "data", True

        def fit(self, images, labels, device):
            fits.append(1)
            return {"mean": images.float().mean(0)}

        def purify(self, images, state=None):
            centred = images.float() - state["mean"] + 127.5
            return centred.round().clamp(0, 255).to(torch.uint8)

    try:
        v0 = ex.victim_spec(P, "random", 0, defense="mean-shift-test")
        v1 = ex.victim_spec(P, "random", 1, defense="mean-shift-test")
        assert v0.purifier() == v1.purifier() and v0.purifier() in v0.dependencies()
        r0, r1 = ex.run(v0, store, progress=False), ex.run(v1, store, progress=False)
        assert fits == [1] and r0["config"]["defense"]["name"] == "mean-shift-test"
        rec = store.get("purifier", v0.purifier().config())
        assert rec["artifacts"]["purifier.safetensors"] and rec["metrics"]["mean_abs_change_levels"] > 0
        assert r1["metrics"]["test_acc"] > 0.3
        # a damaged purifier state is detected by its hash and refitted into the cache; its record stays as it was
        art = store.cache / "purifier" / rec["hash"] / "purifier.safetensors"
        before = (store.root / "purifier" / f"{rec['hash']}.json").read_bytes()
        art.write_bytes(art.read_bytes()[: art.stat().st_size // 2])
        with pytest.warns(UserWarning, match="tampered with or damaged"):
            ex.run(ex.victim_spec(P, "random", 2, defense="mean-shift-test"), store, progress=False)
        assert fits == [1, 1] and (store.root / "purifier" / f"{rec['hash']}.json").read_bytes() == before
    finally:
        DEFENSES.pop("mean-shift-test")


class _Stop(Exception):
    pass


@pytest.mark.parametrize("method, settings_, stop", [
    ("miue", {"epochs": 3, "pgd_steps": 2, "batch_size": 128}, 1),
    ("em", {"max_rounds": 3, "pgd_steps": 2, "train_steps": 2, "batch_size": 128, "stop_error": 0.0}, 1),
    ("ap", {"source_epochs": 1, "restarts": 3, "iterations": 2, "batch_size": 128}, 1),
    # 300 images = 3 batches: 1 training epoch of 2 steps, then the final regeneration in 2 pieces of at most
    # 2 batches each; stopped after the first piece, in the middle of the regeneration
    ("rem", {"steps": 2, "pgd_steps": 2, "adv_steps": 1, "eot": 1, "batch_size": 128}, 2),
])
def test_the_template_resumes_an_interrupted_generation_bit_identically(tmp_path, digits, method, settings_, stop):
    from miue.checkpoint import Checkpoint
    from miue.data import stratified_subset
    train = stratified_subset(digits[0], 300)
    attack = create_attack(method, model="lenet5", width=0.25, **settings_)
    whole = attack.generate(train, progress=False)

    def stop_after_first(epoch, delta):
        if epoch == stop:
            raise _Stop

    ck = Checkpoint(tmp_path / "ck.safetensors")
    with pytest.raises(_Stop):
        attack.generate(train, progress=False, checkpoint=ck, on_epoch=stop_after_first)
    assert ck.saved_epoch() == stop
    resumed = attack.generate(train, progress=False, checkpoint=ck)
    assert torch.equal(whole.delta, resumed.delta)
    assert whole.meta.get("history") == resumed.meta.get("history")
    if method == "rem":  # the regeneration's epochs add no history entry: one per training epoch
        assert [h["steps"] for h in resumed.meta["history"]] == [2]


def test_the_miue_command_lists_a_chapters_runs_without_computing(capsys, store):
    from miue.cli import main
    assert main(["--help"]) == 0 and "grid" in capsys.readouterr().out
    assert main(["grid", "01_at_a_glance", "--profile", "smoke", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "victim/" in out and "missing" in out and not any(store.root.glob("*/*.json"))
    assert main(["frobnicate"]) == 2


def test_a_new_estimator_setting_with_its_default_keeps_the_mi_addresses(monkeypatch):
    from miue import estimators
    cpu = profile("cpu")
    before = ex.mi_spec(cpu, "miue", 0, estimator="ksg").hash
    original = estimators.estimator_settings

    def grown(name):
        out = dict(original(name))
        if name == "ksg":
            out["metric"] = "chebyshev"
        return out

    monkeypatch.setattr(estimators, "estimator_settings", grown)
    monkeypatch.setitem(estimators.ADDED_SETTINGS, "ksg", {"metric": "chebyshev"})
    assert ex.mi_spec(cpu, "miue", 0, estimator="ksg").hash == before
    monkeypatch.setitem(estimators.ADDED_SETTINGS, "ksg", {"metric": "euclidean"})  # not its default: moves
    assert ex.mi_spec(cpu, "miue", 0, estimator="ksg").hash != before


def test_a_runs_per_epoch_snapshots_come_from_one_generation(store):
    """Table 9's curve: δ after each epoch of one MI-UE run, each a poison with its own address."""
    p = P.override(attacks={"miue": {"epochs": 3, "batch_size": 256, "pgd_steps": 2, "step_size": 2 / 255,
                                     "model": "lenet5", "width": 0.25}})
    snaps = [ex.poison_spec(p, "miue", after_epoch=k) for k in (1, 2, 3)]
    assert len({s.hash for s in snaps} | {snaps[0].finished().hash}) == 4
    assert snaps[0].config()["after_epoch"] == 1 and "after_epoch" not in snaps[0].finished().config()
    poisons = [ex.load_poison(s, store, progress=False) for s in snaps]
    finished = snaps[0].finished().address
    assert [a for a in store.computed if a.startswith("poison/")].count(finished) == 1  # generated once
    train, _ = ex.datasets(p)
    last = ex.load_poison(snaps[0].finished(), store, progress=False)
    assert torch.equal(poisons[2].apply(train.images), last.apply(train.images))
    assert not torch.equal(poisons[0].apply(train.images), poisons[2].apply(train.images))
    for pois in poisons:
        assert (pois.apply(train.images).int() - train.images.int()).abs().max() <= round(8 / 255 * 255)
    assert len(ex.run(snaps[1], store, progress=False)["history"]) == 2
    # a cache without the snapshots (a fresh clone, or a run generated before them) regenerates the run
    # once, leaving its record as it was
    record = store.record_path("poison", snaps[0].finished().hash).read_text()
    import shutil
    shutil.rmtree(store.cache)
    with pytest.warns(UserWarning, match="snapshots are not in the cache"):
        again = ex.load_poison(ex.poison_spec(p, "miue", after_epoch=2, tau=0.1), store, progress=False)
    assert store.record_path("poison", snaps[0].finished().hash).read_text() == record
    assert again.delta.shape == poisons[1].delta.shape
    # a run interrupted while generated without snapshots restarts when a snapshot needs it
    from miue.attacks import ATTACKS as _A
    from miue.checkpoint import Checkpoint
    other = ex.poison_spec(p, "miue", after_epoch=1, tau=0.2)
    train_ck = Checkpoint(store.artifacts("poison", other.finished().hash) / "checkpoint.safetensors")

    def interrupt(epoch, delta):
        if epoch == 2:
            raise _Stop

    with pytest.raises(_Stop):
        _A["miue"](other.attack).generate(train, progress=False, checkpoint=train_ck, on_epoch=interrupt)
    assert train_ck.saved_epoch() == 2
    with pytest.warns(UserWarning, match="lacks earlier snapshots"):
        first = ex.load_poison(other, store, progress=False)
    assert first.delta.abs().max() > 0
    with pytest.raises(ValueError, match="no per-epoch snapshots"):
        ex.poison_spec(P, "em", after_epoch=1)
    with pytest.raises(ValueError, match="1 to 3"):
        ex.poison_spec(p, "miue", after_epoch=4)
    with pytest.raises(ValueError, match="clean data has no generation epochs"):
        ex.victim_spec(p, "clean", 0, after_epoch=1)
