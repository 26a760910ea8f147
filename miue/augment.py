"""Batched tensor augmentations (App. E.3): random crop with zero padding and horizontal flip.

Whole batches at once, no per-sample Python loop; differentiable in the input (PGD can run through
them); randomness from an explicit ``torch.Generator`` so runs resume exactly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .data import Augmentation


def random_crop(x: torch.Tensor, padding: int, generator: torch.Generator) -> torch.Tensor:
    """Pad by ``padding`` zeros and crop back to the original size at a random offset per image."""
    if padding <= 0:
        return x
    b, _, h, w = x.shape
    padded = F.pad(x, (padding,) * 4)
    dy = torch.randint(0, 2 * padding + 1, (b,), generator=generator, device=generator.device).to(x.device)
    dx = torch.randint(0, 2 * padding + 1, (b,), generator=generator, device=generator.device).to(x.device)
    rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]  # b,1,h,1
    cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]  # b,1,1,w
    bi = torch.arange(b, device=x.device)[:, None, None, None]
    ci = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
    return padded[bi, ci, rows, cols]


def random_flip(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Flip each image horizontally with probability 1/2."""
    mask = torch.rand(x.shape[0], generator=generator, device=generator.device).to(x.device) < 0.5
    return torch.where(mask[:, None, None, None], x.flip(3), x)


def augment(x: torch.Tensor, spec: Augmentation, generator: torch.Generator) -> torch.Tensor:
    """Apply the dataset's training augmentation ``spec`` to a float batch."""
    x = random_crop(x, spec.crop_padding, generator)
    return random_flip(x, generator) if spec.horizontal_flip else x
