"""A registry of the paper's architectures, each split as f = h∘g (Sec. 3).

``create_model(name, num_classes, in_channels, image_size, width)`` returns a :class:`Classifier` whose
``features`` is the feature extractor g (penultimate features, a vector per image) and ``head`` the linear
classifier h. ``width`` multiplies every channel count (1.0 is the paper's width); CPU profiles use 1/8.
ResNets, DenseNet and ViTs come from timm/torchvision with a small-image stem; only WRN-34-10 (CIFAR style,
which no well-kept library ships) and the toy MLP/LeNet models are written here.
"""

from __future__ import annotations

from functools import partial as _partial
from typing import Callable

import torch
from torch import nn


class Classifier(nn.Module):
    """f = h∘g: ``features`` (g) maps images to vectors, ``head`` (h) maps them to logits."""

    def __init__(self, features: nn.Module, head: nn.Linear):
        super().__init__()
        self.features = features
        self.head = head

    @property
    def feature_dim(self) -> int:
        return self.head.in_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class StridedPointwiseConv(nn.Conv2d):
    """A 1×1 convolution with stride s computed as s-subsampling then a stride-1 1×1 convolution: the same
    weights, state-dict keys and (on the CPUs measured) bit-identical outputs and gradients.

    Why: oneDNN's JIT kernel for the weight gradient of a *strided* 1×1 convolution
    (``jit_avx512_common_1x1_convolution_bwd_weights``) writes out of bounds on AVX-512 CPUs when the input is
    channels_last, has at most 8 channels (ResNet at width 1/8), the batch size is odd and more than one
    thread runs: a segfault or ``double free or corruption`` in ``loss.backward()`` (torch 2.14.1). A training
    set whose size leaves an odd last batch (9 owner images + 1,000 reference: 113) hit it in ``miue verify``.
    The stride-1 kernel has no such case."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__(cin, cout, 1, 1, bias=False)
        self.step = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x[:, :, ::self.step, ::self.step] if self.step != 1 else x)


def _c(channels: int, width: float) -> int:
    return max(1, int(round(channels * width)))


def _mlp(depth: int):
    def build(num_classes, in_channels, image_size, width):
        d, hidden, layers = in_channels * image_size * image_size, _c(512, width), [nn.Flatten()]
        for _ in range(depth - 1):
            layers += [nn.Linear(d, hidden), nn.ReLU(inplace=True)]
            d = hidden
        return Classifier(nn.Sequential(*layers), nn.Linear(d, num_classes))
    return build


def _lenet5(num_classes, in_channels, image_size, width):
    """LeNet-5 (LeCun et al., 1998) with ReLU and max-pooling; padding 2 keeps 28×28 inputs working."""
    c1, c2 = _c(6, width), _c(16, width)
    pad2 = 0 if image_size // 2 >= 10 else 2  # keep 8×8 inputs (digits) valid
    conv = nn.Sequential(nn.Conv2d(in_channels, c1, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(2),
                         nn.Conv2d(c1, c2, 5, padding=pad2), nn.ReLU(inplace=True), nn.MaxPool2d(2), nn.Flatten())
    with torch.no_grad():
        d = conv(torch.zeros(1, in_channels, image_size, image_size)).shape[1]
    g = nn.Sequential(conv, nn.Linear(d, _c(120, width)), nn.ReLU(inplace=True),
                      nn.Linear(_c(120, width), _c(84, width)), nn.ReLU(inplace=True))
    return Classifier(g, nn.Linear(_c(84, width), num_classes))


def _vgg11(num_classes, in_channels, image_size, width):
    """VGG-11 with batch norm (torchvision's ``make_layers`` config 'A'), pooled to one vector.

    Pooling layers that would shrink the map below 1×1 are dropped (28×28 inputs allow four of five).
    """
    from torchvision.models.vgg import cfgs, make_layers
    size, cfg = image_size, []
    for v in cfgs["A"]:
        if v == "M":
            if size >= 2:
                cfg.append("M")
                size //= 2
        else:
            cfg.append(_c(v, width))
    body = make_layers(cfg, batch_norm=True)
    body[0] = nn.Conv2d(in_channels, cfg[0], 3, padding=1)
    g = nn.Sequential(body, nn.AdaptiveAvgPool2d(1), nn.Flatten())
    return Classifier(g, nn.Linear(cfg[-1] if cfg[-1] != "M" else cfg[-2], num_classes))


class _PooledBody(nn.Module):
    """Wraps a timm model whose classifier was removed: forward gives its pooled features."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x)


def _resnet(layers, bottleneck: bool):
    """ResNet (He et al., 2016) from torchvision's BasicBlock/Bottleneck, with channel counts scaled by
    ``width`` (torchvision and timm fix the stem at 64 channels). Small images get the CIFAR stem of the
    official code: a 3×3 stride-1 conv and no max-pool; large ones the ImageNet 7×7/2 conv + max-pool."""
    def build(num_classes, in_channels, image_size, width):
        from torchvision.models.resnet import BasicBlock, Bottleneck
        block = Bottleneck if bottleneck else BasicBlock
        inplanes = _c(64, width)
        if image_size <= 64:
            stem = [nn.Conv2d(in_channels, inplanes, 3, 1, 1, bias=False), nn.BatchNorm2d(inplanes), nn.ReLU(inplace=True)]
        else:
            stem = [nn.Conv2d(in_channels, inplanes, 7, 2, 3, bias=False), nn.BatchNorm2d(inplanes),
                    nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1)]
        stages = []
        for i, (planes, n) in enumerate(zip((64, 128, 256, 512), layers)):
            planes, stride = _c(planes, width), 1 if i == 0 else 2
            for j in range(n):
                s = stride if j == 0 else 1
                down = None
                if s != 1 or inplanes != planes * block.expansion:
                    down = nn.Sequential(StridedPointwiseConv(inplanes, planes * block.expansion, s),
                                         nn.BatchNorm2d(planes * block.expansion))
                stages.append(block(inplanes, planes, s, down))
                inplanes = planes * block.expansion
        g = nn.Sequential(*stem, *stages, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        return Classifier(g, nn.Linear(inplanes, num_classes))
    return build


def _densenet121(num_classes, in_channels, image_size, width):
    from torchvision.models import DenseNet
    init = _c(64, width)
    m = DenseNet(growth_rate=_c(32, width), block_config=(6, 12, 24, 16), num_init_features=init)
    if image_size <= 64:
        m.features.conv0 = nn.Conv2d(in_channels, init, 3, 1, 1, bias=False)
        m.features.pool0 = nn.Identity()
    else:
        m.features.conv0 = nn.Conv2d(in_channels, init, 7, 2, 3, bias=False)
    g = nn.Sequential(m.features, nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    return Classifier(g, nn.Linear(m.classifier.in_features, num_classes))


class _WideBlock(nn.Module):
    """Pre-activation wide basic block (Zagoruyko & Komodakis, 2016)."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(cin), nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2, self.conv2 = nn.BatchNorm2d(cout), nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.short = None if (cin == cout and stride == 1) else StridedPointwiseConv(cin, cout, stride)

    def forward(self, x):
        o = torch.relu(self.bn1(x))
        y = self.conv1(o)
        y = self.conv2(torch.relu(self.bn2(y)))
        return y + (x if self.short is None else self.short(o))


def _wrn34_10(num_classes, in_channels, image_size, width):
    """WRN-34-10: depth 34 ((34-4)/6 = 5 blocks per stage), widen factor 10, CIFAR layout."""
    n, k = 5, 10
    widths = [_c(16, width)] + [_c(c * k, width) for c in (16, 32, 64)]
    layers = [nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)]
    cin = widths[0]
    for cout, stride in zip(widths[1:], (1, 2, 2)):
        for i in range(n):
            layers.append(_WideBlock(cin, cout, stride if i == 0 else 1))
            cin = cout
    layers += [nn.BatchNorm2d(cin), nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return Classifier(nn.Sequential(*layers), nn.Linear(cin, num_classes))


def _vit(embed_dim, depth, heads):
    def build(num_classes, in_channels, image_size, width):
        from timm.models.vision_transformer import VisionTransformer
        nh = max(1, int(round(heads * width)))
        dim = nh * (embed_dim // heads)
        patch = 4 if image_size <= 64 else 16  # App. E.2: patch 4 on CIFAR-sized images
        m = VisionTransformer(img_size=image_size, patch_size=patch, in_chans=in_channels, num_classes=0,
                              embed_dim=dim, depth=depth, num_heads=nh, dynamic_img_pad=image_size % patch != 0)
        return Classifier(_PooledBody(m), nn.Linear(dim, num_classes))
    return build


MODELS: dict[str, Callable[..., Classifier]] = {
    "linear": _mlp(1),
    "2-nn": _mlp(2),
    "3-nn": _mlp(3),
    "lenet5": _lenet5,
    "vgg11": _vgg11,
    "resnet18": _resnet((2, 2, 2, 2), False),
    "resnet34": _resnet((3, 4, 6, 3), False),
    "resnet50": _resnet((3, 4, 6, 3), True),
    "resnet101": _resnet((3, 4, 23, 3), True),
    "resnet152": _resnet((3, 8, 36, 3), True),
    "densenet121": _densenet121,
    "wrn34-10": _wrn34_10,
    "vit-b": _vit(768, 12, 12),
    "vit-l": _vit(1024, 24, 16),
    "vit-h": _vit(1280, 32, 16),
}


def create_model(name: str, num_classes: int, in_channels: int = 3, image_size: int = 32,
                 width: float = 1.0) -> Classifier:
    """Build architecture ``name`` (see :data:`MODELS`) as a :class:`Classifier` f = h∘g."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")
    if not (0 < width <= 4):
        raise ValueError(f"width must be in (0, 4], got {width}")
    if num_classes < 2 or in_channels < 1 or image_size < 4:
        raise ValueError("num_classes >= 2, in_channels >= 1 and image_size >= 4 are required")
    return MODELS[name](num_classes, in_channels, image_size, width)


class Normalized(nn.Module):
    """Subtract a per-channel mean and divide by a std before ``body`` (differentiable: PGD runs through it)."""

    def __init__(self, body: nn.Module, mean, std):
        super().__init__()
        self.body = body
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x):
        return self.body((x - self.mean) / self.std)


# ImageNet channel statistics (torchvision's); one channel takes their mean
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def normalize_inputs(model: Classifier, in_channels: int) -> Classifier:
    """``model`` with ImageNet mean/std normalization in front of its feature extractor g (as the MI-UE authors'
    ResNet does); a single-channel input uses the means of the three channels' statistics."""
    mean, std = IMAGENET_MEAN, IMAGENET_STD
    if in_channels != 3:
        mean, std = (sum(mean) / 3,) * in_channels, (sum(std) / 3,) * in_channels
    return Classifier(Normalized(model.features, mean, std), model.head)


def kaiming_normal_init(model: nn.Module) -> nn.Module:
    """He-normal initialization of every convolution (fan_out, ReLU gain), batch norms at weight 1 and bias 0:
    torchvision's ResNet initialization, which the MI-UE authors' ResNet keeps."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    return model


# depth of each architecture for the depth chapter (Fig. 2, Tables 13-15): weight layers (MLPs, LeNet, VGG,
# ResNets, DenseNet, WRN) or transformer blocks (ViT)
DEPTH = {"linear": 1, "2-nn": 2, "3-nn": 3, "lenet5": 5, "vgg11": 11, "resnet18": 18, "resnet34": 34, "resnet50": 50,
         "resnet101": 101, "resnet152": 152, "densenet121": 121, "wrn34-10": 34, "vit-b": 12, "vit-l": 24, "vit-h": 32}


def _folded_batchnorm(bn: nn.Module, scale: torch.Tensor, shift: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    if x.dtype != scale.dtype and bn.num_features >= NARROW_CHANNELS:  # bf16: ATen's own is faster from 16 up
        return type(bn).forward(bn, x)
    shape = (1, -1) + (1,) * (x.dim() - 2)
    return torch.addcmul(shift.view(shape), x, scale.view(shape)).to(x.dtype)


class frozen:
    """``with frozen(model):`` the network as a PGD step on its inputs sees it. Eval mode, no weight
    gradients, and every batch norm with running statistics computed as the one per-channel affine map it
    is in eval mode, y = x·a + b with a = γ/√(σ²+ε), b = β − μ·a. Bit for bit the function and input
    gradient of ATen's eval batch norm (checked in the tests), without its channels_last backward, which took
    42% of MI-UE's generation time at width 1/8 on 2 CPU cores (``python -m miue.bench``). Under bf16 autocast
    batch norms over 16 channels or more keep ATen's kernel, faster there. On exit the weights need gradients
    again and the batch norms are the model's own; the mode is left in eval (callers train with
    ``model.train()``)."""

    def __init__(self, model: nn.Module):
        self.model = model

    def __enter__(self) -> nn.Module:
        self.model.eval()
        self._grads = [(p, p.requires_grad) for p in self.model.parameters()]
        self.model.requires_grad_(False)
        self._folded = []
        for m in self.model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_var is not None and "forward" not in vars(m):
                with torch.no_grad():
                    scale = torch.rsqrt(m.running_var.float() + m.eps)
                    if m.weight is not None:
                        scale = scale * m.weight.float()
                    shift = -m.running_mean.float() * scale
                    if m.bias is not None:
                        shift = shift + m.bias.float()
                m.forward = _partial(_folded_batchnorm, m, scale, shift)
                self._folded.append(m)
        return self.model

    def __exit__(self, *exc):
        for m in self._folded:
            del m.forward
        for p, needed in self._grads:
            p.requires_grad_(needed)
        return False


class NarrowBatchNorm2d(nn.BatchNorm2d):
    """A batch norm over fewer than :data:`NARROW_CHANNELS` channels, computed in the contiguous layout.

    ATen's channels_last batch norm is slow for so few channels on the CPU: forward and backward of 8
    channels at 28×28 took 9.8 ms against 1.9 ms contiguous (2 cores, batch 128), a fifth of a width-1/8
    ResNet-18's training step. Parameters, buffers and state dict are the batch norm's own."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type != "cpu" or not x.is_contiguous(memory_format=torch.channels_last) or x.is_contiguous():
            return super().forward(x)
        return super().forward(x.contiguous()).contiguous(memory_format=torch.channels_last)


NARROW_CHANNELS = 16  # from 16 channels up, channels_last was as fast or faster (0.88 against 1.13 ms at 16×14×14)


def narrow_batchnorms(model: nn.Module) -> nn.Module:
    """Every plain :class:`~torch.nn.BatchNorm2d` of ``model`` over fewer than :data:`NARROW_CHANNELS`
    channels becomes a :class:`NarrowBatchNorm2d` (in place: the same parameters, a faster layout)."""
    for m in model.modules():
        if type(m) is nn.BatchNorm2d and m.num_features < NARROW_CHANNELS:
            m.__class__ = NarrowBatchNorm2d
    return model
