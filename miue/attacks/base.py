"""The interface every attack shares (torchattacks-style: one small class per method).

An attack is configured by a frozen dataclass (its defaults are the method's own paper settings) and
``generate(data)`` returns a validated :class:`~miue.poisons.Poison`. Adding a method means adding one
module that defines a subclass and decorates it with :func:`register`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable, ClassVar

import torch

from ..checkpoint import Checkpoint
from ..data import ImageDataset
from ..models import Classifier, create_model
from ..poisons import Poison, check_epsilon

ATTACKS: dict[str, type["Attack"]] = {}


def register(cls):
    """Class decorator: make an attack available by its ``name`` in :data:`ATTACKS`."""
    ATTACKS[cls.name] = cls
    return cls


@dataclass(frozen=True)
class AttackConfig:
    eps: float = 8 / 255
    seed: int = 0


class Attack:
    """Base class: ``Attack(config).generate(data, device=..., progress=..., checkpoint=...) -> Poison``."""

    name: ClassVar[str]
    Config: ClassVar[type] = AttackConfig

    def __init__(self, config=None, **overrides):
        config = config if config is not None else self.Config()
        if not isinstance(config, self.Config):
            raise TypeError(f"{self.name} takes a {self.Config.__name__}, got {type(config).__name__}")
        fields = {f.name for f in dataclasses.fields(self.Config)}
        unknown = set(overrides) - fields
        if unknown:
            raise ValueError(f"{self.name} has no setting(s) {sorted(unknown)}; its settings are {sorted(fields)}")
        self.config = dataclasses.replace(config, **overrides)
        check_epsilon(self.config.eps)

    def generate(self, data: ImageDataset, *, device="cpu", progress: bool = True,
                 checkpoint: Checkpoint | None = None,
                 on_epoch: Callable[[int, torch.Tensor], None] | None = None) -> Poison:
        raise NotImplementedError

    def _poison(self, data: ImageDataset, delta: torch.Tensor, **meta) -> Poison:
        poison = Poison(delta.detach().float().cpu(), self.config.eps,
                        {"method": self.name, "config": dataclasses.asdict(self.config), **meta})
        poison.meta["checks"] = poison.validate(data.images)
        return poison


def source_model(cfg, data: ImageDataset) -> Classifier:
    """The surrogate network an attack trains or uses (``cfg.model`` at ``cfg.width``), seeded."""
    torch.manual_seed(cfg.seed)
    c, h, _ = data.shape
    return create_model(cfg.model, data.num_classes, c, h, cfg.width)


def project(delta: torch.Tensor, x: torch.Tensor, eps: float) -> torch.Tensor:
    """Project δ onto the ε-ball and keep x + δ inside the image box [0, 1]."""
    delta = delta.clamp(-eps, eps)
    return (x + delta).clamp(0, 1) - x
