"""SAL (SAL/UD Eq. 3), the learnable threshold (Eq. 4) and the unlearnable distance (Eq. 5)."""

import numpy as np
import pytest
import torch

from miue import experiments as ex, sal
from miue.models import create_model
from miue.profiles import profile


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """The models here are tiny: one thread avoids OpenMP barrier stalls on a shared 2-core machine."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _data(digits, n=120):
    train, _ = digits
    return train.images[:n], train.labels[:n]


def _trained(digits, name="resnet18", width=0.125, steps=10):
    """A small model fitted a little, so its loss is neither at chance nor at zero."""
    images, labels = _data(digits, 100)
    torch.manual_seed(0)
    model = create_model(name, 10, 1, 8, width)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for _ in range(steps):
        loss = torch.nn.functional.cross_entropy(model(images.float() / 255), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model


def test_sal_is_nonnegative_and_weights_and_mode_are_restored(digits):
    images, labels = _data(digits)
    lenet = _trained(digits, "lenet5", 1.0, steps=30)
    res = sal.model_sal(lenet, images, labels, steps=3, progress=False, details=True)
    assert list(res) == sal.sal_layers(lenet) and len(res) == 5  # 2 convs + 3 linear layers
    assert all(r["sal"] >= 0 and r["sal"] == max(r["ascent"], r["descent"] or 0) for r in res.values())
    assert all(r["sal"] > 0 for r in res.values())
    model = _trained(digits).train()  # with BatchNorm: eval mode during the search, buffers untouched
    before = {k: v.clone() for k, v in model.state_dict().items()}
    sal.model_sal(model, images, labels, steps=2, progress=False, layers=["features.0", "features.4.conv2", "head"])
    assert model.training and all(p.requires_grad for p in model.parameters())
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # bit-exact, BN buffers included


def test_perturbation_stays_in_the_relative_l2_ball(digits):
    model = _trained(digits, "lenet5", 1.0)
    images, labels = _data(digits)
    layer = dict(model.named_modules())["features.0.3"]  # the second conv
    theta = layer.weight.detach().clone()
    seen = []
    hook = layer.register_forward_pre_hook(lambda m, inp: seen.append((m.weight - theta).norm().item()))
    try:
        res = sal.layer_sal(model, "features.0.3", images, labels, eps=0.05, steps=4, lr=5.0)  # lr large: hits the ball
    finally:
        hook.remove()
    assert max(seen) <= 0.05 * theta.norm().item() * (1 + 1e-5)
    assert max(seen) >= 0.05 * theta.norm().item() * (1 - 1e-3)  # the search does reach the boundary
    assert res["reach_ascent"] <= 0.05 + 1e-7 and torch.equal(layer.weight, theta)
    # mini-batch passes (one SGD step per batch, as the paper's code does) respect the ball as well
    seen.clear()
    hook = layer.register_forward_pre_hook(lambda m, inp: seen.append((m.weight - theta).norm().item()))
    try:
        mb = sal.layer_sal(model, "features.0.3", images, labels, steps=2, lr=5.0, batch_size=40)
    finally:
        hook.remove()
    assert len(seen) > 2 * 2 * 3 and max(seen) <= 0.05 * theta.norm().item() * (1 + 1e-5) and mb["sal"] >= 0


def test_graph_split_and_bn_folding_match_full_forward_passes(digits, monkeypatch):
    model = _trained(digits)
    images, labels = _data(digits, 48)
    layers = ["features.0", "features.5.conv2", "features.7.downsample.0", "head"]
    fast = sal.model_sal(model, images, labels, steps=3, progress=False, layers=layers, details=True)
    traced = []
    monkeypatch.setattr(sal.measure, "_trace", traced.append)  # returns None: every pass through the whole eager model
    slow = sal.model_sal(model, images, labels, steps=3, progress=False, layers=layers, details=True)
    assert traced == [model]  # the patch took effect: model_sal looks _trace up in sal.measure
    for name in layers:
        assert fast[name]["loss"] == pytest.approx(slow[name]["loss"], rel=1e-5)
        assert fast[name]["sal"] == pytest.approx(slow[name]["sal"], rel=1e-3, abs=1e-5)


def test_threshold_between_clusters_and_learnable_counts():
    low, high = [0.10, 0.11, 0.12, 0.13], [1.0, 1.1]
    beta = sal.learnable_threshold(low + high)
    assert max(low) < beta < min(high)
    assert beta == pytest.approx((np.mean(low) + np.mean(high)) / 2)
    # Eq. 4: per-epoch centres, averaged over epochs (a list of per-epoch dicts works too)
    epochs = [dict(zip("abcdef", low + high)), dict(zip("abcdef", [2 * v for v in low + high]))]
    assert sal.learnable_threshold(epochs) == pytest.approx(1.5 * beta)
    assert sal.learnable_counts(epochs, 0.2).tolist() == [2, 5]  # λ of Eq. 5: layers above β
    sizes = dict(zip("abcdef", [1, 1, 1, 1, 10, 100]))
    assert sal.learnable_parameters(epochs, 0.2) == 3.5
    assert sal.learnable_parameters(epochs, 0.2, sizes) == pytest.approx((110 + 113) / 2)
    assert sal.unlearnable_distance(0.62, 3.32) == pytest.approx(0.187, abs=5e-4)  # SAL/UD Table 1, EM CIFAR-10


def test_sal_run_records_every_layer_each_epoch_and_reads_back(digits, store):
    p = profile("smoke", dataset="digits", n_train=None, n_test=None, model="lenet5", width=1.0, victim_epochs=3,
                sal_samples=100, sal_every=1, sal_steps=2)
    rec = sal.sal_run(p, "clean", 0, store, progress=False)
    hist = sal.sal_history(rec)
    assert len(hist) == 3 == len(rec["history"]) and set(hist[0]) == set(rec["metrics"]["layers"])
    assert rec["metrics"]["n_sal"] == 100 and all(v >= 0 for h in hist for v in h.values())
    table = sal.ud_table({"clean": rec}, rec, reference_lp=2.0)
    assert table.loc["clean", "lp"] > 0
    assert sal.sal_run(p, "clean", 0, store, progress=False) == rec  # stored: read back, not recomputed


def test_bad_inputs_are_rejected_with_a_clear_message(digits):
    model = create_model("2-nn", 10, 1, 8, 0.125)
    images, labels = _data(digits, 20)
    with pytest.raises(ValueError, match="images must be a non-empty N×C×H×W"):
        sal.model_sal(model, images[0], labels)
    with pytest.raises(ValueError, match="labels must be an integer tensor with one entry per image"):
        sal.model_sal(model, images, labels[:5])
    with pytest.raises(ValueError, match="eps must be a positive number"):
        sal.model_sal(model, images, labels, eps=0)
    with pytest.raises(ValueError, match="steps must be a positive integer"):
        sal.model_sal(model, images, labels, steps=0)
    with pytest.raises(ValueError, match="layer 'features.9' is not a Conv2d/Linear layer.*head"):
        sal.layer_sal(model, "features.9", images, labels)
    with pytest.raises(ValueError, match="2-means needs at least two layer SALs"):
        sal.learnable_threshold([[0.3]])
    with pytest.raises(ValueError, match="lp_clean is 0"):
        sal.unlearnable_distance(1.0, 0.0)
    with pytest.raises(ValueError, match="unknown method 'tap'"):
        sal.sal_run(profile("smoke"), "tap")


def test_sal_under_a_defense_is_its_own_run_on_what_the_victim_sees(digits, store):
    """SAL/UD Table 2: the victim trains under the defense; SAL is measured on the purified images."""
    p = profile("smoke", dataset="digits", n_train=None, n_test=None, model="lenet5", width=1.0, victim_epochs=2,
                sal_samples=64, sal_every=1, sal_steps=1)
    plain = sal.sal_run(p, "clean", 0, store, progress=False)
    for d in ("jpeg", "mixup"):
        rec = sal.sal_run(p, "clean", 0, store, progress=False, defense=d)
        assert rec["config"]["victim"]["defense"]["name"] == d and rec["hash"] != plain["hash"]
        assert len(sal.sal_history(rec)) == 2
    assert "defense" not in plain["config"]["victim"]  # undefended addresses are unchanged


def test_the_grid_computes_a_sal_run_after_its_poison_and_sal_run_reads_it_back(digits, store):
    """A SAL run is a run spec: the grid puts its poison in an earlier wave and records the run where sal_run
    looks; describe names the defense."""
    from miue import grid
    p = profile("smoke", dataset="digits", n_train=None, n_test=None, model="lenet5", width=1.0, victim_epochs=2,
                sal_samples=64, sal_every=1, sal_steps=1)
    spec = sal.sal_spec(p, "em", 0, defense="mixup")
    assert spec.describe() == "SAL lenet5 on em + mixup"
    assert spec.victim == ex.victim_spec(p, "em", 0, defense="mixup")  # a value: its victim's spec, not a profile
    assert spec.config()["victim"] == spec.victim.config() and spec.config()["epochs"] == [1, 2]
    assert spec == sal.sal_spec(p, "em", 0, defense="mixup") and hash(spec) == hash(sal.sal_spec(p, "em", 0, defense="mixup"))
    assert [d.kind for d in spec.dependencies()] == ["poison"]
    waves = grid.waves([spec, *spec.dependencies()], store)
    assert [[s.kind for s in w] for w in waves] == [["poison"], ["sal"]]
    out = grid.dispatch([spec, *spec.dependencies()], store=store, log=lambda *_: None)
    assert [o.state for o in out] == ["COMPLETED", "COMPLETED"]
    rec = store.lookup(spec)
    assert rec is not None and len(sal.sal_history(rec)) == 2
    assert sal.sal_run(p, "em", 0, store, progress=False, defense="mixup") == rec  # read back, not recomputed
    with pytest.raises(ValueError, match="unknown architecture 'resnet9000'"):
        sal.sal_spec(p, "em", 0, arch="resnet9000")


def _synthetic_sal(sals: list[list[float]], acc: float = 0.5) -> dict:
    """A sal record with the given per-epoch layer SALs (no training): enough for the UD tables."""
    layers = [f"l{i}" for i in range(len(sals[0]))]
    return {"kind": "sal", "config": {"victim": {"model": "lenet5"}},
            "metrics": {"test_acc": acc, "layers": layers, "layer_params": {n: 10 for n in layers}},
            "history": [{"epoch": e + 1, "sal": dict(zip(layers, s))} for e, s in enumerate(sals)]}


def test_ud_under_defenses_divides_by_the_undefended_clean_model():
    """SAL/UD Table 2: β and the #LP that UD divides by come from the undefended clean model."""
    clean = _synthetic_sal([[0.1, 0.1, 0.1, 1.0, 1.0, 0.1]] * 2, 0.9)  # 2 learnable layers, β = 0.55
    em = _synthetic_sal([[0.1, 0.1, 0.1, 1.0, 0.1, 0.1]] * 2, 0.3)  # 1 learnable: UD 0.5
    em_jpeg = _synthetic_sal([[0.1, 1.0, 0.1, 1.0, 1.0, 0.1]] * 2, 0.7)  # 3: UD 1.5, +1.0
    clean_at = _synthetic_sal([[1.0, 1.0, 1.0, 1.0, 0.1, 0.1]] * 2, 0.8)  # 4: UD 2.0 (the paper's vanilla AT: 2.151)
    tab = sal.ud_defense_table({("em", "JPEG"): em_jpeg, ("clean", "AT"): clean_at}, {"em": em}, clean)
    assert tab[["method", "defense"]].values.tolist() == [["em", "JPEG"], ["clean", "AT"]]
    assert tab["lp"].tolist() == [3, 4] and tab["ud"].tolist() == [1.5, 2.0]
    assert tab["ud_delta"].tolist() == [1.0, 1.0]  # from EM's undefended 0.5 and the clean model's 1
    assert tab["beta"].tolist() == [pytest.approx(0.55)] * 2 and tab["test_acc"].tolist() == [70, 80]
    assert np.isnan(sal.ud_defense_table({("ap", "JPEG"): em_jpeg}, {}, clean)["ud_delta"].iloc[0])  # no base
    with pytest.raises(ValueError, match="defended is empty"):
        sal.ud_defense_table({}, {"em": em}, clean)
