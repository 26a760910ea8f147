"""SAL of one layer and of a model (SAL/UD Eq. 3): the projected SGD search for the largest |Δloss|."""

from __future__ import annotations

import math

import torch
from torch import nn

from ..progress import tqdm
from ..train import resolve_device
from .layers import _Batches, _foldable, _Split, _trace, sal_layers

EPS = 0.05  # relative L2 radius of the weight perturbation (SAL/UD Sec. 3.3)
LR = 0.1  # SGD learning rate of the perturbation search (paper code: --sharp_lr_min/max 0.1)
STEPS = 10  # passes per direction ("the iterative step for optimizing v is 10")
CHUNK = 1024  # images per forward chunk (memory only; results do not depend on it)


def _check_data(images, labels) -> None:
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or len(images) == 0:
        raise ValueError("images must be a non-empty N×C×H×W tensor (uint8 pixels or floats in [0, 1]), got "
                         f"{type(images).__name__} {tuple(getattr(images, 'shape', ()))}")
    if not isinstance(labels, torch.Tensor) or labels.shape != (len(images),) or labels.is_floating_point():
        raise ValueError(f"labels must be an integer tensor with one entry per image ({len(images)}), got "
                         f"{type(labels).__name__} {tuple(getattr(labels, 'shape', ()))}")


def _check_search(eps, steps, lr, batch_size) -> None:
    if not (isinstance(eps, (int, float)) and eps > 0 and math.isfinite(eps)):
        raise ValueError(f"eps must be a positive number (relative L2 radius), got {eps!r}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    if not (isinstance(lr, (int, float)) and lr > 0 and math.isfinite(lr)):
        raise ValueError(f"lr must be a positive number, got {lr!r}")
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1):
        raise ValueError(f"batch_size must be None (full batch) or a positive integer, got {batch_size!r}")


def _project(v: torch.Tensor, radius: float) -> torch.Tensor:
    norm = v.norm()
    return v * (radius / norm) if norm > radius else v


def _layer_sal(split: _Split, batches: _Batches, weight: torch.Tensor, eps: float, steps: int, lr: float,
               batch_size: int | None) -> dict:
    theta = weight.detach().clone()
    radius = eps * theta.norm().item()
    minibatch = batch_size is not None and batch_size < batches.n
    try:
        l0, g0 = batches.loss(weight)
        result = {"loss": l0}
        for name, sign in (("ascent", 1.0), ("descent", -1.0)):
            if sign < 0 and result["ascent"] >= l0:  # cross-entropy >= 0: descent gains at most l0 (exact skip)
                result[name], result[f"reach_{name}"] = None, None
                continue
            v = torch.zeros_like(theta)
            best, reach, g = 0.0, 0.0, g0
            for k in range(steps):
                if minibatch:  # one SGD step per mini-batch, each projected (the paper's code projects per pass)
                    for j in range(len(batches.chunks)):
                        with torch.no_grad():
                            weight.copy_(theta + v)
                        _, gj = batches.loss(weight, [j])
                        v = _project(v + sign * lr * gj, radius)
                else:  # one full-batch step per pass
                    v = v + sign * lr * g
                v = _project(v, radius)
                reach = max(reach, v.norm().item() / max(theta.norm().item(), 1e-12))
                with torch.no_grad():
                    weight.copy_(theta + v)
                if not minibatch and k < steps - 1:
                    lk, g = batches.loss(weight)  # the iterate's loss and the next pass's gradient
                else:
                    lk, _ = batches.loss()
                best = max(best, sign * (lk - l0))
            result[name], result[f"reach_{name}"] = best, reach
        result["sal"] = max(result["ascent"], result["descent"] or 0.0)
        return result
    finally:
        with torch.no_grad():
            weight.copy_(theta)


def _chunking(images: torch.Tensor, labels: torch.Tensor, batch_size: int | None):
    if batch_size is None or batch_size >= len(labels):
        return CHUNK
    return batch_size


def layer_sal(model: nn.Module, layer: str, images: torch.Tensor, labels: torch.Tensor, *, eps: float = EPS,
              steps: int = STEPS, lr: float = LR, batch_size: int | None = None, device=None) -> dict:
    """SAL of one Conv2d/Linear layer (SAL/UD Eq. 3) on a fixed batch, no augmentation, BN in eval mode.

    Returns ``{"sal", "ascent", "descent", "loss", "reach_ascent", "reach_descent"}``: SAL = max(ascent,
    descent), the largest loss increase (decrease) any of the ``steps`` projected SGD passes reached, ``loss``
    the unperturbed mean cross-entropy and ``reach_*`` the largest ‖v‖/‖θ_l‖ used (≤ ``eps``). ``batch_size``
    None makes each pass one full-batch step; an integer makes it mini-batch SGD over the data, as in the
    paper's code (which projects once per pass; here every step is projected, so no weight outside the ball
    is ever evaluated). The model's weights and train/eval mode are restored exactly afterwards.
    """
    _check_data(images, labels)
    _check_search(eps, steps, lr, batch_size)
    names = sal_layers(model)
    if layer not in names:
        raise ValueError(f"layer {layer!r} is not a Conv2d/Linear layer of the model; layers are: {', '.join(names)}")
    return model_sal(model, images, labels, eps=eps, steps=steps, lr=lr, batch_size=batch_size, device=device,
                     layers=[layer], progress=False, details=True)[layer]


def model_sal(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, eps: float = EPS, steps: int = STEPS,
              lr: float = LR, device=None, *, layers: list[str] | None = None, batch_size: int | None = None,
              progress: bool = True, details: bool = False) -> dict:
    """SAL (Eq. 3) of every Conv2d/Linear layer (or of ``layers``): layer name → SAL (→ dict with ``details``).

    Each layer is perturbed alone (all others frozen) on the fixed ``images``/``labels`` with the model in
    eval mode; see :func:`layer_sal`. The model ends exactly as it started (weights, mode, device).
    """
    _check_data(images, labels)
    _check_search(eps, steps, lr, batch_size)
    names = sal_layers(model)
    if not names:
        raise ValueError("the model has no Conv2d/Linear layer to measure SAL on")
    layers = names if layers is None else list(layers)
    unknown = [n for n in layers if n not in names]
    if unknown:
        raise ValueError(f"not Conv2d/Linear layers of the model: {unknown}; layers are: {', '.join(names)}")
    device = resolve_device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    old_device = next(model.parameters()).device
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    modules = dict(model.named_modules())
    model.eval().to(device)
    out = {}
    try:
        for p in model.parameters():
            p.requires_grad_(False)
        gm = _trace(model)
        fold = _foldable(gm)
        chunk = _chunking(images, labels, batch_size)
        for name in tqdm(layers, desc="SAL layers", disable=not progress, leave=False, mininterval=1.0):
            weight = modules[name].weight
            weight.requires_grad_(True)
            try:
                split = _Split(model, gm, name, fold)
                batches = _Batches(split, images, labels, device, chunk)
                res = _layer_sal(split, batches, weight, eps, steps, lr, batch_size)
            finally:
                weight.requires_grad_(False)
            out[name] = res if details else res["sal"]
    finally:
        for n, p in model.named_parameters():
            p.requires_grad_(flags[n])
        model.to(old_device).train(was_training)
    return out
