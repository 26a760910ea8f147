"""Defenses behind one interface: ``create_defense(name or spec)``; data-side ``purify``, training-side ``hook``."""

from . import adversarial, cutmix, cutout, diffusion, dvae, jpeg, mixup, projection, ueraser  # noqa: F401  (importing registers them)
from .base import DEFENSES, KINDS, Defense, DefenseConfig, create_defense, register

__all__ = ["DEFENSES", "KINDS", "Defense", "DefenseConfig", "create_defense", "register"]
