"""JPEG compression and grayscale, the ISS defenses (Liu, Zhao & Larson, ICML 2023, "Image shortcut squeezing").

ISS compresses every training image with a real JPEG codec (Pillow's libjpeg) at a low quality, which removes
the high-frequency structure most error-minimizing noises rely on; Table 11 of the MI-UE paper sweeps the
quality (6–30); ISS's default for l∞ noises is quality 10. Grayscale (the ISS paper's other squeeze) keeps
the image's channel count by replicating the luminance.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from ..settings import setting
from .base import Defense, DefenseConfig, register


def jpeg_roundtrip(images: torch.Tensor, quality: int) -> torch.Tensor:
    """Encode and decode each uint8 image (N×C×H×W, C ∈ {1, 3}) as a baseline JPEG of ``quality``."""
    if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"JPEG takes uint8 N×C×H×W images with 1 or 3 channels, got {images.dtype} "
                         f"{tuple(images.shape)}")
    arr = images.permute(0, 2, 3, 1).numpy()
    out = np.empty_like(arr)
    for i, img in enumerate(arr):
        pil = Image.fromarray(img[..., 0], "L") if img.shape[-1] == 1 else Image.fromarray(img, "RGB")
        buf = io.BytesIO()
        pil.save(buf, format="JPEG", quality=quality)
        buf.seek(0)
        dec = np.asarray(Image.open(buf).convert(pil.mode))
        out[i] = dec[..., None] if dec.ndim == 2 else dec
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()


@dataclass(frozen=True)
class JPEGConfig(DefenseConfig):
    quality: int = setting(10, low=1, high=95, doc="JPEG quality (ISS: 10; Table 11: 6-30)")


@register
class JPEG(Defense):
    name = "jpeg"
    label = "JPEG"
    kind = "data"
    Config = JPEGConfig

    def purify(self, images, state=None):
        return jpeg_roundtrip(images, self.config.quality)


@register
class Grayscale(Defense):
    name = "grayscale"
    label = "Grayscale"
    kind = "data"

    def purify(self, images, state=None):
        if images.shape[1] == 1:
            return images.clone()
        w = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)  # ITU-R BT.601 luma (PIL's convert("L") rounds in fixed point)
        gray = (images.float() * w).sum(1, keepdim=True).round().clamp(0, 255).to(torch.uint8)
        return gray.expand(-1, 3, -1, -1).contiguous()
