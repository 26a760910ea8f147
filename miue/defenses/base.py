"""The interface every defense shares, the twin of :mod:`miue.attacks.base`.

A defense is configured by a frozen, checked dataclass whose defaults are its own paper's settings. Two
kinds:

* ``data`` — transforms the published training set before training (JPEG compression, grayscale, and the
  fitted purifiers): :meth:`Defense.purify` maps uint8 images to images of the same shape, uint8 or (OP's
  projection, whose values leave the pixel box) float32 on the [0, 1] pixel scale. A *fitted*
  data-side defense (``fitted = True``: OP's linear model, D-VAE, a diffusion purifier) first learns its state
  from the published set with :meth:`Defense.fit`; that fit is a run of its own (kind ``purifier``, see
  :class:`miue.specs.PurifierSpec`) whose state is a cached, hash-verified artifact, shared by every victim
  that uses it.
* ``training`` — a per-batch hook inside :func:`miue.train.fit` that sees the model and returns the inputs
  and the targets (class indices or soft targets): Mixup, Cutout, CutMix, adversarial training, UEraser.

A victim's config gains ``defense`` (the defense's name and settings), left out of the address when absent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from .. import settings
from ..settings import setting

DEFENSES: dict[str, type["Defense"]] = {}
KINDS = ("data", "training")


def register(cls):
    """Class decorator: make a defense available by its ``name`` in :data:`DEFENSES`."""
    if cls.kind not in KINDS:
        raise ValueError(f"defense kind must be one of {KINDS}, got {cls.kind!r}")
    DEFENSES[cls.name] = cls
    return cls


@dataclass(frozen=True)
class DefenseConfig:
    seed: int = setting(0, low=0, doc="seed of the defense's own randomness")

    def __post_init__(self):
        settings.check(self)


class Defense:
    """Base class: ``Defense(config or **settings)``; data-side ``purify(images)``, training-side ``hook``."""

    name: ClassVar[str]
    label: ClassVar[str] = ""
    kind: ClassVar[str] = "data"
    fitted: ClassVar[bool] = False
    Config: ClassVar[type] = DefenseConfig

    def __init__(self, config=None, **overrides):
        self.config = settings.configure(f"defense {self.name}", self.Config, config, overrides)

    def spec(self) -> dict:
        """What goes into a victim's config: the name and the settings (added settings at default left out)."""
        return {"name": self.name, **settings.address(self.config)}

    @property
    def relative_cost(self) -> float:
        """Training cost of a victim under this defense relative to standard training (an estimate from loop
        counts, for planning: a forward pass counts one third of a forward-backward step)."""
        return 1.0

    def fit(self, images: torch.Tensor, labels: torch.Tensor, device: torch.device) -> dict[str, torch.Tensor]:
        """Fitted data-side defenses: learn the purifier's state (tensors) from the published training set."""
        raise NotImplementedError(f"{self.name} is not a fitted defense")

    def purify(self, images: torch.Tensor, state: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """Data-side: uint8 N×C×H×W → uint8 N×C×H×W (``state``: what :meth:`fit` learned, if fitted)."""
        raise NotImplementedError(f"{self.name} is a {self.kind}-side defense")

    def hook(self, model, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator):
        """Training-side: (float batch in [0, 1], labels) → (inputs, targets)."""
        raise NotImplementedError(f"{self.name} is a {self.kind}-side defense")

    def __call__(self, model, x, y, generator):
        """A training-side defense is the ``hook`` of :func:`miue.train.train_steps`."""
        return self.hook(model, x, y, generator)

    def begin_epoch(self, epoch: int, epochs: int) -> None:
        """Training-side: called by :func:`miue.train.fit` before each epoch (0-based) of ``epochs``."""


def create_defense(spec) -> Defense:
    """A defense from its name or from a victim config's ``{"name": ..., **settings}``."""
    if isinstance(spec, Defense):
        return spec
    if isinstance(spec, str):
        spec = {"name": spec}
    if not isinstance(spec, dict) or "name" not in spec:
        raise ValueError(f"a defense is a name or a dict with 'name', got {spec!r}")
    spec = dict(spec)
    name = spec.pop("name")
    if name not in DEFENSES:
        raise ValueError(f"unknown defense {name!r}; choose one of {', '.join(sorted(DEFENSES))}")
    return DEFENSES[name](**spec)


def soft_targets(y: torch.Tensor, num_classes: int) -> torch.Tensor:
    return torch.nn.functional.one_hot(y, num_classes).float()


def torch_seed(generator: torch.Generator) -> int:
    """A seed drawn from ``generator`` for code that draws from torch's global generator (kornia)."""
    return int(torch.randint(0, 2**62, (1,), generator=generator).item())
