"""Per-sample perturbations δ within a norm budget, and the images a data owner would publish.

``Poison.apply(images)`` returns uint8 images: clip(x + δ, 0, 1) quantized to 8 bits. A poison carries its
norm: ``linf`` (‖δ‖∞ ≤ ε, most methods), ``l2`` (per-image ‖δ‖₂ ≤ ε, AR and LSP) or ``l0`` (at most ε
changed pixels per image, OPS: ε = 1). Every poison is checked by :meth:`Poison.validate` before it is
stored and again when it is loaded from the cache (finite, within budget after quantization, not
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


NORMS = ("linf", "l2", "l0")


class NotAPoisonFile(ValueError):
    """A file that is not a poison written by :meth:`Poison.save`."""


def check_epsilon(eps: float, norm: str = "linf") -> float:
    """ε as a float, or one clear error: (0, 1] for l∞, (0, ∞) for l2, a whole number ≥ 1 of pixels for l0."""
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {', '.join(NORMS)}, got {norm!r}")
    import numbers
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or math.isnan(float(eps)):
        allowed = {"linf": "in (0, 1] (pixel scale; 8/255 ≈ 0.0314 is the paper's)",
                   "l2": "in (0, ∞) (an l2 budget)", "l0": "in {1, 2, …} (an l0 budget: whole pixels)"}[norm]
        raise ValueError(f"ε must be {allowed}, a number; got {eps!r} ({type(eps).__name__})")
    eps = float(eps)
    if norm == "linf" and not 0 < eps <= 1:
        raise ValueError(f"ε must be in (0, 1] (pixel scale; 8/255 ≈ 0.0314 is the paper's), got {eps!r}")
    if norm == "l2" and not 0 < eps < math.inf:
        raise ValueError(f"an l2 budget ε must be positive and finite, got {eps!r}")
    if norm == "l0" and (eps < 1 or eps != int(eps)):
        raise ValueError(f"an l0 budget is a whole number of pixels ≥ 1, got {eps!r}")
    return eps


def delta_norms(delta: torch.Tensor, norm: str) -> torch.Tensor:
    """Per-image norm of δ (N×C×H×W): max |δ|, ‖δ‖₂, or the number of pixels (H×W positions) changed."""
    flat = delta.flatten(1)
    if norm == "linf":
        return flat.abs().amax(1)
    if norm == "l2":
        return flat.norm(dim=1)
    return (delta.abs().amax(1) > 0).flatten(1).sum(1).float()


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
    norm: str = "linf"

    def __post_init__(self):
        self.eps = check_epsilon(self.eps, self.norm)

    def apply(self, images: torch.Tensor) -> torch.Tensor:
        if images.shape != self.delta.shape:
            raise ValueError(f"poison is for shape {tuple(self.delta.shape)}, images are {tuple(images.shape)}")
        if images.dtype != torch.uint8:
            raise TypeError(f"Poison.apply takes the uint8 images (0-255) the poison was made for, got "
                            f"{images.dtype}; convert with (x * 255).round().to(torch.uint8)")
        return publish(images, self.delta)

    def restricted(self, mask: torch.Tensor) -> "Poison":
        """The same poison with δ zeroed outside ``mask`` (bool, one per image): one-class or partial poisoning."""
        keep = mask.to(torch.bool).view(-1, *([1] * (self.delta.dim() - 1)))
        return Poison(torch.where(keep, self.delta, torch.zeros((), dtype=self.delta.dtype)), self.eps,
                      dict(self.meta), self.norm)

    def validate(self, images: torch.Tensor) -> dict:
        """Check the poison on the clean ``images``; returns summary statistics or raises InvalidPoisonError."""
        d = self.delta
        if not torch.isfinite(d).all():
            raise InvalidPoisonError("poison has NaN or infinite entries")
        linf = d.abs().max().item()
        worst = delta_norms(d, self.norm).max().item()
        tol = 1e-6 if self.norm != "l2" else 1e-4 * max(self.eps, 1.0)
        if worst > self.eps + tol:
            raise InvalidPoisonError(f"{self.norm} norm of δ = {worst:.5f} exceeds ε = {self.eps:.5f}")
        published = self.apply(images)
        change = (published.int() - images.int()).abs()
        realised = delta_norms((published.float() - images.float()) / 255, self.norm).max().item()
        if self.norm == "linf":
            levels = math.ceil(self.eps * 255 - 1e-6)
            if change.max().item() > levels:
                raise InvalidPoisonError(f"published images differ by {change.max().item()} levels > ε·255 = "
                                         f"{levels}")
        elif self.norm == "l0" and realised > self.eps:
            raise InvalidPoisonError(f"published images change {realised:.0f} pixels > ε = {self.eps:.0f}")
        elif self.norm == "l2":  # rounding to 8 bits may add up to √(CHW)·0.5/255 to ‖δ‖₂
            slack = 0.5 / 255 * math.sqrt(d[0].numel())
            if realised > self.eps + slack:
                raise InvalidPoisonError(f"published images' ‖δ‖₂ = {realised:.4f} > ε + rounding = "
                                         f"{self.eps + slack:.4f}")
        flat = published.flatten(1).float()
        constant = (flat.std(1) == 0).float().mean().item()
        if constant > 0.01:
            raise InvalidPoisonError(f"{constant:.1%} of published images are constant (all-black or blank)")
        if self.meta.get("method") not in (None, "clean") and change.sum().item() == 0:
            raise InvalidPoisonError("poison changes no pixel after quantization")
        out = {"linf": linf, "linf_levels": int(change.max().item()),
               "mean_abs_levels": change.float().mean().item(), "constant_images": constant}
        if self.norm != "linf":
            out[f"{self.norm}_max"] = worst
        return out

    def save(self, path: str | Path) -> None:
        meta = {"eps": self.eps, **self.meta}
        if self.norm != "linf":
            meta["norm"] = self.norm
        save_tensors(path, {"delta": self.delta.float().cpu()}, meta)

    @classmethod
    def load(cls, path: str | Path, images: torch.Tensor | None = None) -> "Poison":
        """Read a poison written by :meth:`save`; with the clean ``images``, re-validate it against its ε."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no poison file at {path}")
        try:
            tensors, meta = load_tensors(path)
        except Exception as exc:  # noqa: BLE001 - the safetensors reader's errors name no remedy
            raise NotAPoisonFile(f"{path} is not a poison file (not a safetensors file written by Poison.save: "
                                 f"{type(exc).__name__}); regenerate it or pass the right file") from None
        if not isinstance(meta, dict) or "delta" not in tensors or "eps" not in meta:
            raise NotAPoisonFile(f"{path} is a safetensors file but not a poison (it lacks "
                                 f"{'the delta tensor' if 'delta' not in tensors else 'the eps metadata'})")
        eps, norm = meta.pop("eps"), meta.pop("norm", "linf")
        delta = tensors["delta"]
        if not delta.is_floating_point() or delta.dim() < 2:
            raise NotAPoisonFile(f"{path} is not a poison: its delta is {delta.dtype} of shape {tuple(delta.shape)}, "
                                 "not float N×C×H×W")
        try:
            poison = cls(delta.float(), eps, meta, norm)
        except ValueError as exc:
            raise NotAPoisonFile(f"{path} is not a poison written by Poison.save: {exc}") from None
        # the checks that need no clean images, always; the rest with them
        if not torch.isfinite(poison.delta).all():
            raise InvalidPoisonError(f"{path}: poison has NaN or infinite entries; regenerate it")
        worst = delta_norms(poison.delta, poison.norm).max().item() if len(poison.delta) else 0.0
        tol = 1e-6 if poison.norm != "l2" else 1e-4 * max(poison.eps, 1.0)
        if worst > poison.eps + tol:
            raise InvalidPoisonError(f"{path}: {poison.norm} norm of δ = {worst:.5f} exceeds ε = {poison.eps:.5f}; "
                                     "regenerate it")
        if images is not None:
            poison.validate(images)
        return poison
