"""Projected gradient steps on a perturbation δ: the one PGD routine of every attack and defense.

    δ ← Π_{‖δ‖≤ε, 0≤x+δ≤1}(δ ∓ α·step(∇_δ L(aug(x + δ))))

``step`` is the gradient's sign for l∞ (Madry et al. 2018) and the per-image unit-l2 gradient for l2. Descent
(``ascent=False``) minimises the loss (EM, MI-UE, AP's targeted loss, REM's and SEM's δu); ascent maximises it
(adversarial training, REM's and SEM's inner δa). The augmentation, when given, is applied to x + δ inside
the loop and is differentiable, so δ is optimised in expectation over it (EOT).
"""

from __future__ import annotations

from typing import Callable

import torch

from .augment import augment as apply_augment


def project(delta: torch.Tensor, x: torch.Tensor, eps: float, norm: str = "linf") -> torch.Tensor:
    """Project δ onto the ε-ball of ``norm`` (l∞ or per-image l2) and keep x + δ inside the image box [0, 1]."""
    if norm == "linf":
        delta = delta.clamp(-eps, eps)
    elif norm == "l2":
        n = delta.flatten(1).norm(dim=1).clamp_min(1e-12)
        delta = delta * (eps / n).clamp(max=1.0).view(-1, *([1] * (delta.dim() - 1)))
    else:
        raise ValueError(f"PGD projects onto l∞ or l2 balls, not {norm!r}")
    return (x + delta).clamp(0, 1) - x


def _direction(grad: torch.Tensor, norm: str) -> torch.Tensor:
    if norm == "linf":
        return grad.sign()
    n = grad.flatten(1).norm(dim=1).clamp_min(1e-12)
    return grad / n.view(-1, *([1] * (grad.dim() - 1)))


def pgd(loss_fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, delta: torch.Tensor, *, eps: float,
        step_size: float, steps: int, norm: str = "linf", ascent: bool = False, augmentation=None,
        generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``steps`` projected steps on ``delta`` for the scalar ``loss_fn(inputs)``; returns (δ, the last loss).

    ``x`` is the clean float batch in [0, 1]; ``augmentation`` a dataset :class:`~miue.data.Augmentation`
    (or a differentiable function (x, generator) → x) applied to x + δ at every step with ``generator``.
    """
    d, loss = delta.detach(), None
    sign = 1.0 if ascent else -1.0
    for _ in range(steps):
        d.requires_grad_(True)
        inp = x + d
        if callable(augmentation):  # a differentiable augmentation function (x, generator) → x
            inp = augmentation(inp, generator)
        elif augmentation is not None:
            inp = apply_augment(inp, augmentation, generator)
        loss = loss_fn(inp)
        grad, = torch.autograd.grad(loss, d)
        d = project(d.detach() + sign * step_size * _direction(grad, norm), x, eps, norm)
    return d.detach(), (None if loss is None else loss.detach())
