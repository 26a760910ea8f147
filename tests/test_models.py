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
