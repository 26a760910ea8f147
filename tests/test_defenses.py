"""Each defense's invariants (budgets, ranges, shapes, soft targets, orthogonality) and, at smoke scale, that
adversarial training and OP undo a class-wise l∞ shortcut that standard training falls for."""

import pytest
import torch
import torch.nn.functional as F

from miue.defenses import create_defense
from miue.models import create_model
from miue.profiles import ProfileError, profile
from miue.train import Recipe, evaluate, fit


def _model(c=1, h=8):
    torch.manual_seed(0)
    return create_model("2-nn", 10, c, h, 1.0)


def test_adversarial_examples_stay_in_budget_and_raise_the_loss():
    model = _model()
    x, y = torch.rand(64, 1, 8, 8), torch.randint(0, 10, (64,))
    for eps, rule, step in [(8 / 255, "fixed", 2 / 255), (4 / 255, "fifth", 0.8 / 255)]:
        at = create_defense({"name": "at", "eps": eps, "step_rule": rule})
        assert at.step == pytest.approx(step)
        adv, target = at.hook(model, x, y, torch.Generator().manual_seed(0))
        assert torch.equal(target, y)
        assert (adv - x).abs().max() <= eps + 1e-6 and adv.min() >= 0 and adv.max() <= 1
        model.eval()
        with torch.no_grad():
            assert F.cross_entropy(model(adv), y) > F.cross_entropy(model(x), y)
    assert create_defense({"name": "at", "steps": 10}).relative_cost == 11


def test_cutout_zeroes_one_square_per_image():
    x = torch.rand(16, 3, 32, 32) + 0.1  # no zero pixels before
    out, y = create_defense({"name": "cutout", "length": 8}).hook(None, x, torch.zeros(16, dtype=torch.long),
                                                                   torch.Generator().manual_seed(0))
    zeros = (out == 0).all(1).flatten(1).sum(1)
    assert out.shape == x.shape and (zeros <= 64).all() and (zeros > 0).all()
    assert torch.equal(out[out != 0], x[out != 0])
    rows = (out == 0).all(1).any(2).sum(1)  # the hole is a square clipped by the border: at most 8 rows
    assert (rows <= 8).all()


@pytest.mark.parametrize("name", ["cutmix", "mixup"])
def test_mixing_defenses_give_soft_targets_that_sum_to_one(name):
    model = _model(3, 16)
    x, y = torch.rand(32, 3, 16, 16), torch.randint(0, 10, (32,))
    d = create_defense(name)
    xm, t = d.hook(model, x, y, torch.Generator().manual_seed(1))
    assert xm.shape == x.shape and t.shape == (32, 10) and xm.min() >= 0 and xm.max() <= 1
    assert torch.allclose(t.sum(1), torch.ones(32)) and (t >= 0).all() and (t > 0).sum(1).max() <= 2
    again, t2 = d.hook(model, x, y, torch.Generator().manual_seed(1))
    assert torch.equal(again, xm) and torch.equal(t, t2)  # the run's generator seeds kornia's draws


def test_cutmix_pastes_boxes_and_weights_labels_by_area():
    model = _model(1, 16)
    x = torch.arange(8).float().view(8, 1, 1, 1).expand(8, 1, 16, 16) / 10  # image i is constant i/10
    y = torch.arange(8)
    xm, t = create_defense("cutmix").hook(model, x, y, torch.Generator().manual_seed(3))
    for i in range(8):
        own = (xm[i] == x[i]).float().mean()
        assert t[i, i] == pytest.approx(float(own), abs=1e-5)  # the label weights are the areas


def test_ueraser_trains_on_the_worst_of_k_draws_in_range():
    model = _model(3, 16)
    x, y = torch.rand(16, 3, 16, 16), torch.randint(0, 10, (16,))
    d = create_defense({"name": "ueraser", "variant": "max", "repeats": 4})
    out, target = d.hook(model, x, y, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1 and torch.equal(target, y)
    g = torch.Generator().manual_seed(0)
    draws = [d.augment(x, g) for _ in range(4)]  # the same draws, in the same order
    with torch.no_grad():
        losses = torch.stack([F.cross_entropy(model(dr), y, reduction="none") for dr in draws])
        chosen = F.cross_entropy(model(out), y, reduction="none")
    assert torch.allclose(chosen, losses.max(0).values, atol=1e-5)
    lite = create_defense({"name": "ueraser", "variant": "standard"})
    lite.begin_epoch(0, 10)
    assert lite._adversarial
    lite.begin_epoch(3, 10)
    assert not lite._adversarial  # standard: the first 30% of the epochs only


def test_op_projects_out_the_linear_models_directions():
    x = torch.randint(0, 256, (200, 1, 8, 8), dtype=torch.uint8)
    y = torch.randint(0, 10, (200,))
    op = create_defense({"name": "op", "epochs": 3})
    state = op.fit(x, y, torch.device("cpu"))
    out = op.purify(x, state)
    assert out.shape == x.shape and out.dtype == torch.float32
    q = op.basis(state["weights"])
    assert q.shape == (64, 10) and torch.allclose(q.T @ q, torch.eye(10), atol=1e-5)
    assert (out.flatten(1) @ q).abs().max() < 1e-4
    with pytest.raises(ValueError, match="fitted linear model"):
        op.purify(x)


def test_profile_defense_settings_are_checked_and_used():
    from miue import experiments as ex
    with pytest.raises(ProfileError, match="defenses"):
        profile("smoke", defenses={"nope": {}})
    with pytest.raises(ProfileError, match=r"defenses\['at'\]"):
        profile("smoke", defenses={"at": {"steps": 0}})
    with pytest.raises(ProfileError, match="defense_recipes"):
        profile("smoke", defense_recipes={"at": {"schedule": "linear"}})
    paper = ex.victim_spec(profile("paper"), "em", 0, defense="at")
    assert paper.recipe.epochs == 100 and paper.recipe.lr_at(40) == pytest.approx(0.01)
    smoke = ex.victim_spec(profile("smoke"), "em", 0, defense={"name": "at", "eps": 2 / 255})
    assert dict(smoke.defense[1])["steps"] == 2 and dict(smoke.defense[1])["eps"] == pytest.approx(2 / 255)
    assert Recipe(schedule="multistep", milestones=(2, 4), lr=1.0).lr_at(4) == pytest.approx(0.01)


def _classwise_shortcut(train, eps=8 / 255, seed=0, labels=None):
    """A class-wise ±ε patch pattern (4×4 grid) added to every training image, by ``labels`` (default: the
    set's)."""
    g = torch.Generator().manual_seed(seed)
    c, h, w = train.images.shape[1:]
    coarse = torch.randint(0, 2, (10, c, 4, 4), generator=g).float() * 2 - 1  # a 4×4 grid of ±ε patches
    patterns = F.interpolate(coarse, size=(h, w), mode="nearest") * eps
    x = (train.images.float() / 255 + patterns[train.labels if labels is None else labels]).clamp(0, 1)
    return (x * 255).round().to(torch.uint8)


def test_op_makes_a_classwise_shortcut_no_longer_linearly_learnable(fmnist):
    """Fashion-MNIST images under shuffled labels carry class-wise ±16/255 patch patterns of those labels, the
    only linear signal for them. Before the projection a linear model fits them (measured 87.6%); after it a
    fresh linear model fits no better than on the images without patterns (18.7% against 33.4%, memorisation).
    With the true labels the linear model fits the garments instead and keeps the patterns: OP needs a poison
    that is the set's most linear feature."""
    train, _ = fmnist
    labels = train.labels[torch.randperm(len(train), generator=torch.Generator().manual_seed(0))]
    poisoned = _classwise_shortcut(train, 16 / 255, labels=labels)
    op = create_defense({"name": "op", "batch_size": 64})  # about the official number of steps (980)
    state = op.fit(poisoned, labels, torch.device("cpu"))
    purified = op.purify(poisoned, state)
    after = op.fit(purified, labels, torch.device("cpu"))["train_acc"].item()
    without = op.fit(train.images, labels, torch.device("cpu"))["train_acc"].item()
    assert state["train_acc"].item() > 0.8 and after < without + 0.05, (state["train_acc"].item(), after, without)


def _robust_acc(model, x, y, eps):
    adv = create_defense({"name": "at", "eps": eps, "steps": 10, "step_rule": "fifth"}).perturb(
        model, x, y, torch.Generator().manual_seed(1))
    with torch.no_grad():
        return (model(adv).argmax(1) == y).float().mean().item()


def test_adversarial_training_buys_robustness(digits):
    """Digits (16 grey levels, 16/255 apart), a 2-layer network, 15 epochs: PGD-10 accuracy at 64/255 of the
    model adversarially trained at 64/255 (3 steps) far above the standard one's. Measured (seed 0): clean 96.9%
    and 90.4%, robust 0.2% and 26.7%."""
    train, test = digits
    recipe = Recipe(epochs=15, lr=0.1, weight_decay=5e-4, augment=False)
    accs = {}
    eps = 64 / 255
    for name, hook in [("st", None), ("at", create_defense({"name": "at", "eps": eps, "steps": 3,
                                                             "step_size": eps / 2}))]:
        torch.manual_seed(0)
        m = create_model("2-nn", 10, 1, 8, 1.0)
        fit(m, train, recipe, seed=0, progress=False, hook=hook)
        x, y = test.images.float() / 255, test.labels
        accs[name] = (evaluate(m, test, torch.device("cpu"))[1], _robust_acc(m, x, y, eps))
    assert accs["at"][0] > 0.7  # still learns the digits
    assert accs["at"][1] > accs["st"][1] + 0.15, accs


def test_dvae_purifies_to_valid_images_and_refuses_a_foreign_state():
    x = torch.randint(0, 256, (64, 1, 12, 12), dtype=torch.uint8)
    y = torch.arange(64) % 4
    d = create_defense({"name": "d-vae", "epochs": 1, "width": 8})
    state = d.fit(x, y, torch.device("cpu"))
    out = d.purify(x, state)
    assert out.shape == x.shape and out.dtype == torch.uint8 and not torch.equal(out, x)
    with pytest.raises(ValueError, match="fitted on 64 images"):
        d.purify(x[:10], state)
    with pytest.raises(ValueError, match="two fitted VAEs"):
        d.purify(x)


@pytest.mark.parametrize("name, settings", [("ava", {"t_star": 50, "reverse_steps": 3}),
                                            ("le", {"rounds": 2, "t_star": 10, "reverse_steps": 2})])
@pytest.mark.slow
def test_diffusion_purifiers_return_images_of_the_inputs_shape(name, settings):
    from miue.defenses.diffusion import DenoiserSettings, train_denoiser
    x = torch.randint(0, 256, (12, 1, 28, 28), dtype=torch.uint8)
    y = torch.arange(12) % 3
    unet, losses = train_denoiser(x, y, 3, DenoiserSettings(images=12, steps=100, batch_size=8, width=8), "cpu",
                                  progress=False)
    assert len(losses) == 1 and losses[0] > 0
    d = create_defense({"name": name, "denoiser_width": 8, **settings})
    state = d.fit(x, y, torch.device("cpu"), denoiser=(unet, 3))
    out = d.purify(x, state)
    assert out.shape == x.shape and out.dtype == torch.uint8
    assert 0 < (out.float() - x.float()).abs().mean() < 128  # changed, not erased
    again = d.fit(x, y, torch.device("cpu"), denoiser=(unet, 3))["purified"]
    assert torch.equal(again, state["purified"])  # the defense's seed fixes the diffusion noise
    with pytest.raises(ValueError, match="denoiser trained on clean held-out data"):
        d.fit(x, y, torch.device("cpu"))


def test_the_denoisers_clean_split_is_disjoint_from_the_published_set(fmnist):
    from miue import experiments as ex
    from miue.data import load, stratified_subset
    full = load("fashion-mnist", "train", download=False)
    published = stratified_subset(full, 4000, seed=0).indices
    held = ex.holdout_split("fashion-mnist", 4000, 500)
    assert len(held) == 500 and not set(held.indices.tolist()) & set(published.tolist())
    assert torch.bincount(held.labels).tolist() == [50] * 10
    with pytest.raises(ValueError, match="publishes the whole"):
        ex.holdout_split("fashion-mnist", None, 500)
