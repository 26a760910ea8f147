import pytest
import torch

from miue.models import MODELS, Classifier, create_model

WIDTH = {"vit-l": 1 / 16, "vit-h": 1 / 16, "vit-b": 1 / 12, "wrn34-10": 0.1}


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
def test_every_model_is_h_after_g_on_small_images(name, shape):
    c, h, _ = shape
    m = create_model(name, 10, c, h, width=WIDTH.get(name, 0.125))
    assert isinstance(m, Classifier)
    x = torch.rand(2, *shape, generator=torch.Generator().manual_seed(0))
    m.eval()
    z = m.features(x)
    assert z.ndim == 2 and z.shape == (2, m.feature_dim)
    logits = m(x)
    assert logits.shape == (2, 10)
    with torch.no_grad():  # g is the penultimate layer: the head's weights change logits, never features
        # a random change, not a constant one: a constant adds sum(z) to every logit, and layer-normed
        # features (ViT) sum to about 0
        m.head.weight.add_(torch.randn(m.head.weight.shape, generator=torch.Generator().manual_seed(1)))
    assert torch.allclose(m.features(x), z)
    assert z.abs().sum() == 0 or not torch.allclose(m(x), logits)


def test_width_scales_parameters():
    small = sum(p.numel() for p in create_model("resnet18", 10, 3, 32, 0.25).parameters())
    full = sum(p.numel() for p in create_model("resnet18", 10, 3, 32, 1.0).parameters())
    assert 11_000_000 < full < 11_300_000  # ResNet-18 (CIFAR stem) has about 11.2 M parameters
    assert small < full / 10


def test_bad_model_arguments():
    with pytest.raises(ValueError, match="unknown model 'resnet19'.*resnet18"):
        create_model("resnet19", 10)
    with pytest.raises(ValueError, match="width"):
        create_model("resnet18", 10, width=0)


ODD_BATCH = """
import torch, torch.nn.functional as F
from miue.models import create_model
from miue.train import prepare
torch.set_num_threads(2)
torch.manual_seed(0)
for name, width in (("resnet18", 0.125), ("wrn34-10", 0.0625)):
    m = prepare(create_model(name, 13, 3, 32, width), torch.device("cpu"))
    for n in (3, 9, 113):
        x = torch.rand(n, 3, 32, 32).contiguous(memory_format=torch.channels_last)
        F.cross_entropy(m(x), torch.randint(0, 13, (n,))).backward()
print("ok")
"""


@pytest.mark.slow
def test_odd_batches_train_at_two_threads_without_a_native_crash():
    """oneDNN's strided 1×1 conv weight-gradient kernel wrote out of bounds for odd channels_last batches of
    ≤ 8 channels at > 1 thread (segfault in miue verify); the shortcut now subsamples, then convolves."""
    import subprocess
    import sys
    r = subprocess.run([sys.executable, "-c", ODD_BATCH], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0 and r.stdout.strip() == "ok", (r.returncode, r.stderr[-2000:])


def test_strided_shortcut_equals_a_strided_convolution():
    from miue.models import StridedPointwiseConv
    torch.manual_seed(0)
    conv = StridedPointwiseConv(8, 16, 2)
    x = torch.randn(4, 8, 15, 15)
    ref = torch.nn.functional.conv2d(x, conv.weight, stride=2)
    assert torch.allclose(conv(x), ref, atol=1e-6) and conv(x).shape == (4, 16, 8, 8)
    assert set(conv.state_dict()) == {"weight"}  # checkpoints of the old Conv2d still load


def _trained_resnet(channels: int = 1, width: float = 0.125):
    from miue.train import prepare
    torch.manual_seed(0)
    model = prepare(create_model("resnet18", 10, channels, 28, width), torch.device("cpu"))
    model.train()
    with torch.no_grad():
        for _ in range(3):  # running statistics away from their initial 0 and 1
            model(torch.rand(64, channels, 28, 28) * 3)
    return model


def test_frozen_model_is_the_eval_model_with_input_gradients_only():
    """``frozen`` computes each batch norm as its eval-mode affine map: the same outputs and input gradients
    as the eval model to float rounding, no weight gradients inside, and everything restored on exit."""
    from miue.models import frozen
    model = _trained_resnet()
    x, y = torch.rand(32, 1, 28, 28), torch.arange(32) % 10

    def outputs_and_input_grad():
        d = torch.zeros_like(x, requires_grad=True)
        out = model(x + d)
        return out.detach(), torch.autograd.grad(torch.nn.functional.cross_entropy(out, y), d)[0]

    model.eval()
    ref_out, ref_grad = outputs_and_input_grad()
    with frozen(model) as m:
        assert m is model and not model.training
        assert not any(p.requires_grad for p in model.parameters())
        out, grad = outputs_and_input_grad()
    torch.testing.assert_close(out, ref_out, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-4, atol=1e-9)
    assert grad.abs().max() > 0
    assert all(p.requires_grad for p in model.parameters())
    assert not any("forward" in vars(m) for m in model.modules())
    model.train()  # batch statistics again once out of the context: outputs differ from the eval model's
    assert not torch.allclose(model(x), ref_out)


def test_narrow_batch_norms_compute_the_same_function_in_a_faster_layout():
    from miue.models import NarrowBatchNorm2d, narrow_batchnorms
    import copy
    model = _trained_resnet()
    narrow = narrow_batchnorms(copy.deepcopy(model))
    kinds = [type(m) for m in narrow.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert NarrowBatchNorm2d in kinds and torch.nn.BatchNorm2d in kinds  # 8 channels narrow; 16 and up not
    assert list(narrow.state_dict()) == list(model.state_dict())
    x = torch.rand(16, 1, 28, 28).contiguous(memory_format=torch.channels_last)
    for mode in ("train", "eval"):
        getattr(model, mode)(), getattr(narrow, mode)()
        out_ref, out = model(x), narrow(x)
        torch.testing.assert_close(out, out_ref, rtol=1e-4, atol=1e-5)
    for a, b in zip(model.buffers(), narrow.buffers()):  # the same running statistics after the train pass
        torch.testing.assert_close(a.float(), b.float(), rtol=1e-4, atol=1e-6)
