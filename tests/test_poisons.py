import math

import pytest
import torch

from miue.poisons import InvalidPoisonError, Poison, check_epsilon, publish


def test_publish_clips_and_quantizes():
    images = torch.tensor([[[[0, 128, 255]]]], dtype=torch.uint8)
    delta = torch.tensor([[[[-8 / 255, 3.4 / 255, 8 / 255]]]])
    out = publish(images, delta)
    assert out.dtype == torch.uint8 and out.tolist() == [[[[0, 131, 255]]]]


def test_validate_accepts_a_budgeted_poison_and_roundtrips(tmp_path):
    x = torch.randint(0, 256, (20, 1, 8, 8), dtype=torch.uint8)
    eps = 8 / 255
    p = Poison((torch.rand(x.shape) * 2 - 1) * eps, eps, {"method": "random"})
    stats = p.validate(x)
    assert stats["linf_levels"] <= 8 and stats["constant_images"] == 0
    p.save(tmp_path / "p.safetensors")
    q = Poison.load(tmp_path / "p.safetensors")
    assert torch.equal(p.delta, q.delta) and q.eps == eps and q.meta["method"] == "random"
    assert (tmp_path / "p.safetensors").read_bytes()[:8] != b"\x80\x04\x95"  # not a pickle


@pytest.mark.parametrize("bad, message", [
    (lambda d: d.fill_(float("nan")), "NaN"),
    (lambda d: d.fill_(9 / 255), "exceeds"),
])
def test_validate_rejects_broken_poisons(bad, message):
    x = torch.randint(1, 255, (10, 1, 8, 8), dtype=torch.uint8)
    p = Poison(bad(torch.zeros(x.shape)), 8 / 255, {"method": "em"})
    with pytest.raises(InvalidPoisonError, match=message):
        p.validate(x)


def test_validate_rejects_all_black_and_no_op_poisons():
    x = torch.full((10, 1, 8, 8), 4, dtype=torch.uint8)
    x[:, :, 0, 0] = 6
    with pytest.raises(InvalidPoisonError, match="constant"):
        Poison(torch.full(x.shape, -8 / 255), 8 / 255, {"method": "em"}).validate(x)
    with pytest.raises(InvalidPoisonError, match="no pixel"):
        Poison(torch.zeros(x.shape), 8 / 255, {"method": "em"}).validate(x)


@pytest.mark.parametrize("eps", [0, -0.1, 1.5, math.nan, "8/255"])
def test_epsilon_outside_budget_is_rejected(eps):
    with pytest.raises(ValueError, match="ε must be in"):
        check_epsilon(eps)
