"""REM and SEM: the budget, determinism, the one difference between them, and what δu does to the model."""

import pytest
import torch
import torch.nn.functional as F

from miue.attacks import create_attack
from miue.data import stratified_subset

TINY = dict(steps=6, batch_size=64, eot=1, pgd_steps=3, step_size=3 / 255, adv_steps=2, adv_step_size=2 / 255,
            width=0.25)


@pytest.fixture(scope="module")
def small(digits):
    return stratified_subset(digits[0], 300, 0)


@pytest.mark.parametrize("method", ["rem", "sem"])
def test_budget_shapes_and_determinism(method, small):
    a = create_attack(method, **TINY).generate(small, progress=False)
    b = create_attack(method, **TINY).generate(small, progress=False)
    assert a.delta.shape == small.images.shape and torch.equal(a.delta, b.delta)
    assert a.meta["checks"]["linf_levels"] <= 8 and a.delta.abs().max() <= 8 / 255 + 1e-6
    assert [h["steps"] for h in a.meta["history"]] == [5, 6]  # 300 images / 64 = 5 steps an epoch, 6 in all


def test_sem_differs_from_rem_only_in_the_inner_perturbation(small):
    from miue.attacks.rem import REM, SEM
    assert REM.inner == "adversarial" and SEM.inner == "random" and REM.Config is SEM.Config
    rem = create_attack("rem", **TINY).generate(small, progress=False)
    sem = create_attack("sem", **TINY).generate(small, progress=False)
    assert not torch.equal(rem.delta, sem.delta)


def test_defensive_noise_lowers_the_models_loss_more_than_random_noise(small):
    """Step 1 of the loop minimizes the (transformed, perturbed) loss: against the same model, δu's loss is
    below that of uniform noise of the same budget and below the clean loss."""
    attack = create_attack("sem", **{**TINY, "pgd_steps": 8})
    device = torch.device("cpu")
    state = attack.start(small, device, None)
    attack.epoch(state, small, 0, device)
    model = state.model.eval()
    x, y = small.images[:128].float() / 255, small.labels[:128]
    du = attack.defensive_noise(model, x, y, small.augmentation, torch.Generator().manual_seed(1), device)
    noise = (torch.rand(x.shape, generator=torch.Generator().manual_seed(2)) * 2 - 1) * 8 / 255
    with torch.no_grad():
        def ce(z):
            return F.cross_entropy(model(z.clamp(0, 1)), y).item()
        assert ce(x + du) < ce(x + noise) and ce(x + du) < ce(x)
    assert du.abs().max() <= 8 / 255 + 1e-6
