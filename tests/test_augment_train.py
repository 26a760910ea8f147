import torch

from miue.augment import augment, random_crop, random_flip
from miue.data import Augmentation
from miue.models import create_model
from miue.train import Recipe, evaluate, fit


def test_random_crop_is_a_shifted_window_of_the_padded_image():
    x = torch.arange(2 * 1 * 6 * 6, dtype=torch.float32).view(2, 1, 6, 6)
    out = random_crop(x, 2, torch.Generator().manual_seed(0))
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for b in range(2):
        windows = [padded[b, :, i:i + 6, j:j + 6] for i in range(5) for j in range(5)]
        assert any(torch.equal(out[b], w) for w in windows)


def test_flip_and_gradients_flow_through_augmentation():
    x = torch.rand(64, 3, 8, 8, requires_grad=True)
    y = random_flip(x, torch.Generator().manual_seed(1))
    flipped = sum(torch.equal(y[i], x[i].flip(2)) for i in range(64))
    assert 15 < flipped < 49  # about half
    augment(x, Augmentation(2, True), torch.Generator().manual_seed(2)).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_cosine_schedule_matches_the_paper():
    r = Recipe(epochs=200, lr=0.5, min_lr=1e-6)
    assert r.lr_at(0) == 0.5 and abs(r.lr_at(100) - (0.5 + 1e-6) / 2) < 1e-9 and r.lr_at(199) < 1e-3


def test_fit_learns_digits_and_resumes_identically(digits, tmp_path):
    from miue.checkpoint import Checkpoint
    train, test = digits
    recipe = Recipe(epochs=4, batch_size=64, lr=0.05, weight_decay=5e-4)
    torch.manual_seed(0)
    m = create_model("resnet18", 10, 1, 8, 0.125)
    hist = fit(m, train, recipe, test=test, seed=0, progress=False)
    assert hist[-1]["test_acc"] > 0.75 and len(hist) == 4
    # interrupted after 2 epochs, resumed from the checkpoint: the same weights as one uninterrupted run
    torch.manual_seed(0)
    a = create_model("resnet18", 10, 1, 8, 0.125)
    ck = Checkpoint(tmp_path / "ck.safetensors")
    fit(a, train, Recipe(**{**recipe.__dict__, "epochs": 4}), seed=0, progress=False, checkpoint=ck)
    torch.manual_seed(0)
    b = create_model("resnet18", 10, 1, 8, 0.125)
    ck2 = Checkpoint(tmp_path / "ck2.safetensors")
    _interrupted(b, train, recipe, ck2)
    torch.manual_seed(123)
    c = create_model("resnet18", 10, 1, 8, 0.125)
    fit(c, train, recipe, seed=0, progress=False, checkpoint=ck2)
    for pa, pc in zip(a.state_dict().values(), c.state_dict().values()):
        assert torch.allclose(pa.float(), pc.float(), atol=1e-5)
    assert evaluate(c, test, torch.device("cpu"))[1] > 0.75


def _interrupted(model, train, recipe, ck):
    import miue.train as tr
    calls = {"n": 0}
    orig = tr.train_steps

    def stop_after_two(*a, **k):
        calls["n"] += 1
        if calls["n"] > 2:
            raise KeyboardInterrupt
        return orig(*a, **k)

    tr.train_steps = stop_after_two
    try:
        fit(model, train, recipe, seed=0, progress=False, checkpoint=ck)
    except KeyboardInterrupt:
        pass
    finally:
        tr.train_steps = orig


def test_bf16_precision_autocasts_on_the_cpu_only_inside_its_scope_and_still_learns(digits):
    from miue.train import autocast, precision
    cpu = torch.device("cpu")
    x = torch.rand(4, 3)
    w = torch.rand(3, 2)
    with autocast(cpu):
        assert (x @ w).dtype == torch.float32  # 'auto': float32 on the CPU (every committed CPU record)
    with precision("bf16"), autocast(cpu):
        assert (x @ w).dtype == torch.bfloat16
    with autocast(cpu):
        assert (x @ w).dtype == torch.float32  # the scope ends with its block
    try:
        with precision("fp16"):
            pass
        raise AssertionError("an unknown precision was accepted")
    except ValueError as exc:
        assert "auto, bf16" in str(exc)
    train, test = digits
    torch.manual_seed(0)
    m = create_model("resnet18", 10, 1, 8, 0.125)
    hist = fit(m, train, Recipe(epochs=4, batch_size=64, lr=0.05, weight_decay=5e-4, precision="bf16"), test=test,
               seed=0, progress=False)
    assert hist[-1]["test_acc"] > 0.75  # as the float32 run of the test above
    assert all(p.dtype == torch.float32 for p in m.parameters())  # autocast: the weights stay float32


def test_a_profiles_precision_is_in_the_address_only_when_not_auto():
    from miue import experiments as ex
    from miue.profiles import profile
    p = profile("cpu")
    for method in ("clean", "miue"):
        auto, bf16 = ex.victim_spec(p, method, 0), ex.victim_spec(p.override(precision="bf16"), method, 0)
        assert "precision" not in auto.recipe.__dict__ or auto.recipe.precision == "auto"
        assert "precision" not in auto.config()["recipe"] and bf16.config()["recipe"]["precision"] == "bf16"
        assert auto.address != bf16.address
    assert ex.poison_spec(p.override(precision="bf16"), "miue").attack.precision == "bf16"
    assert "precision" not in ex.poison_spec(p, "miue").config()["attack"]
    try:
        p.override(precision="fp8")
        raise AssertionError("an unknown precision was accepted")
    except Exception as exc:
        assert "precision" in str(exc)
