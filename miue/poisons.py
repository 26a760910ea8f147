"""Per-sample perturbations δ with ‖δ‖∞ ≤ ε, and the images a data owner would publish.

``Poison.apply(images)`` returns uint8 images: clip(x + δ, 0, 1) quantized to 8 bits. Every poison is
checked by :meth:`Poison.validate` before it is stored (finite, within budget after quantization, not
degenerate), and stored as safetensors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .checkpoint import load_tensors, save_tensors


class InvalidPoisonError(ValueError):
    """A generated poison failed its checks and must not be published."""


def check_epsilon(eps: float) -> float:
    if not isinstance(eps, (int, float)) or not (0 < eps <= 1) or math.isnan(eps):
        raise ValueError(f"ε must be in (0, 1] (pixel scale; 8/255 ≈ 0.0314 is the paper's), got {eps!r}")
    return float(eps)


def publish(images: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """uint8 images + float δ → clip to [0, 1] → round to 8 bits (what a data owner releases)."""
    x = images.float().div(255) + delta.to(images.device, torch.float32)
    return x.clamp_(0, 1).mul_(255).round_().to(torch.uint8)


@dataclass
class Poison:
    """δ for each training sample (float32, N×C×H×W), its budget ε and metadata (method, config, …)."""

    delta: torch.Tensor
    eps: float
    meta: dict = field(default_factory=dict)

    def apply(self, images: torch.Tensor) -> torch.Tensor:
        if images.shape != self.delta.shape:
            raise ValueError(f"poison is for shape {tuple(self.delta.shape)}, images are {tuple(images.shape)}")
        return publish(images, self.delta)

    def validate(self, images: torch.Tensor) -> dict:
        """Check the poison on the clean ``images``; returns summary statistics or raises InvalidPoisonError."""
        d = self.delta
        if not torch.isfinite(d).all():
            raise InvalidPoisonError("poison has NaN or infinite entries")
        linf = d.abs().max().item()
        if linf > self.eps + 1e-6:
            raise InvalidPoisonError(f"‖δ‖∞ = {linf:.5f} exceeds ε = {self.eps:.5f}")
        published = self.apply(images)
        change = (published.int() - images.int()).abs()
        levels = math.ceil(self.eps * 255 - 1e-6)
        if change.max().item() > levels:
            raise InvalidPoisonError(f"published images differ by {change.max().item()} levels > ε·255 = {levels}")
        flat = published.flatten(1).float()
        constant = (flat.std(1) == 0).float().mean().item()
        if constant > 0.01:
            raise InvalidPoisonError(f"{constant:.1%} of published images are constant (all-black or blank)")
        if self.meta.get("method") not in (None, "clean") and change.sum().item() == 0:
            raise InvalidPoisonError("poison changes no pixel after quantization")
        return {"linf": linf, "linf_levels": int(change.max().item()),
                "mean_abs_levels": change.float().mean().item(), "constant_images": constant}

    def save(self, path: str | Path) -> None:
        save_tensors(path, {"delta": self.delta.float().cpu()}, {"eps": self.eps, **self.meta})

    @classmethod
    def load(cls, path: str | Path) -> "Poison":
        tensors, meta = load_tensors(path)
        eps = meta.pop("eps")
        return cls(tensors["delta"], eps, meta)
