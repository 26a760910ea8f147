"""The interface every attack shares (torchattacks-style: one small class per method, one base that owns the plumbing).

An attack is configured by a frozen dataclass whose defaults are the method's own paper settings and whose
every setting is checked at construction (:mod:`miue.settings`). ``generate(data)`` is a template that owns
the device, the checkpoint and resume, the progress bar and the per-epoch callback; a method supplies
:meth:`Attack.start` (its state), :meth:`Attack.epoch` (one outer iteration) and optionally
:meth:`Attack.finish`, and returns a validated :class:`~miue.poisons.Poison` in its norm. Adding a method
means adding one module that defines a subclass and decorates it with :func:`register`.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass, field
from typing import Callable, ClassVar

import torch
from ..progress import tqdm

from .. import settings
from ..checkpoint import Checkpoint
from ..data import ImageDataset
from ..models import MODELS, Classifier, create_model
from ..pgd import project as _project
from ..poisons import Poison, check_epsilon
from ..train import PRECISION_DOC, PRECISIONS, resolve_device, run_precision

ATTACKS: dict[str, type["Attack"]] = {}


def register(cls):
    """Class decorator: make an attack available by its ``name`` in :data:`ATTACKS`."""
    ATTACKS[cls.name] = cls
    return cls


@dataclass(frozen=True)
class AttackConfig:
    eps: float = settings.setting(8 / 255, low=0, low_open=True, high=1, doc="budget, pixel scale (l∞)")
    seed: int = settings.setting(0, low=0, doc="seed of every random choice of the generation")
    precision: str = settings.setting("auto", choices=PRECISIONS, added=True, doc=PRECISION_DOC)

    def __post_init__(self):
        settings.check(self)
        if "model" in {f.name for f in dataclasses.fields(self)} and getattr(self, "model") not in MODELS:
            raise settings.SettingError(f"{type(self).__name__} setting 'model' = {getattr(self, 'model')!r} is "
                                        f"not an architecture; choose one of {', '.join(MODELS)}")


@dataclass
class AttackState:
    """What :meth:`Attack.generate` checkpoints: model, optimizer, generators, tensors (δ …), meta, history."""

    epochs: int
    tensors: dict = field(default_factory=dict)
    model: torch.nn.Module | None = None
    optimizer: torch.optim.Optimizer | None = None
    generators: dict = field(default_factory=dict)
    meta: dict = field(default_factory=dict)
    history: list = field(default_factory=list)
    extra: dict = field(default_factory=dict)  # not checkpointed: rebuilt by start()

    @property
    def delta(self) -> torch.Tensor:
        return self.tensors["delta"]


class Attack:
    """Base class: ``Attack(config or **settings).generate(data, device=, progress=, checkpoint=, on_epoch=)``."""

    name: ClassVar[str]
    label: ClassVar[str] = ""
    norm: ClassVar[str] = "linf"
    Config: ClassVar[type] = AttackConfig
    snapshots: ClassVar[bool] = False  # δ after any epoch is itself a usable poison (Table 9's per-epoch curve)
    progress: bool = False

    def __init__(self, config=None, **overrides):
        self.config = settings.configure(self.name, self.Config, config, overrides)
        self.norm = self.norm_of(self.config)
        if self.config.eps:  # 0 only where a method derives its budget from the data (LSP)
            check_epsilon(self.config.eps, self.norm)

    @classmethod
    def norm_of(cls, config) -> str:
        """The norm of the budget under ``config`` (AR's is a setting)."""
        return cls.norm

    # -- what a method supplies ------------------------------------------------------------------------

    @classmethod
    def work(cls, config: dict, n: int) -> float:
        """Forward-backward passes of one image through the source model, summed over a generation on ``n``
        images under ``config`` (the attack's settings as a dict): what :mod:`miue.grid` scales a method's
        recorded seconds by. The default, ``epochs`` passes over the set of 1 + ``pgd_steps`` each, counts a
        round of EM as one epoch whatever its cap: its stop condition, not the cap, decides its rounds."""
        return n * config.get("epochs", 1) * (1 + config.get("pgd_steps", 0))

    def start(self, data: ImageDataset, device: torch.device, checkpoint: Checkpoint | None) -> AttackState:
        """Build the state before the first epoch (models, optimizers, δ = 0 …). The default, no epochs and no
        state, suits the model-free attacks (AR, LSP, OPS), which build δ in :meth:`finish`."""
        return AttackState(epochs=0)

    @staticmethod
    def new_state(data: ImageDataset, device: torch.device, epochs: int, **fields) -> AttackState:
        """An :class:`AttackState` whose ``extra`` also holds the training set on the device, ``x`` (uint8 images)
        and ``y`` (labels), as every method's epochs read them."""
        state = AttackState(epochs=epochs, **fields)
        state.extra = {"x": data.images.to(device), "y": data.labels.to(device), **state.extra}
        return state

    def epoch(self, state: AttackState, data: ImageDataset, epoch: int, device: torch.device) -> dict:
        """Run outer iteration ``epoch`` (0-based); return its history entry (None: the epoch adds none, as
        REM's checkpointed final regeneration)."""
        raise NotImplementedError

    def done(self, state: AttackState) -> bool:
        """Stop before the budget of epochs (EM's error threshold)."""
        return False

    def published(self, data: ImageDataset, delta: torch.Tensor) -> torch.Tensor:
        """δ as the method publishes it (the default: as optimized; rounding to 8 bits happens on release)."""
        return delta

    def finish(self, state: AttackState, data: ImageDataset, device: torch.device) -> Poison:
        return self._poison(data, self.published(data, state.delta), history=state.history)

    # -- the template ------------------------------------------------------------------------------------

    def generate(self, data: ImageDataset, *, device="cpu", progress: bool = True,
                 checkpoint: Checkpoint | None = None,
                 on_epoch: Callable[[int, torch.Tensor], None] | None = None) -> Poison:
        with run_precision(self.config.precision):
            return self._generate(data, device, progress, checkpoint, on_epoch)

    def _generate(self, data, device, progress, checkpoint, on_epoch) -> Poison:
        device = resolve_device(device)
        self.progress = progress
        state = self.start(data, device, checkpoint)
        begin = 0
        if checkpoint is not None and state.epochs > 0:
            restored = checkpoint.load(model=state.model, optimizer=state.optimizer, generators=state.generators,
                                       device=device)
            if restored is not None and not set(state.tensors) <= set(restored[1]) or (
                    restored is not None and restored[2].get("method", self.name) != self.name):
                warnings.warn(f"{checkpoint.path} holds another layout of {self.name}'s state (an older miue?); "
                              "starting the generation from the beginning", stacklevel=2)
                checkpoint.remove()
                state = self.start(data, device, checkpoint)
                restored = None
            if restored is not None:
                begin, tensors, meta = restored
                state.tensors.update(tensors)
                state.history = meta.pop("history", [])
                meta.pop("epoch", None)
                meta.pop("method", None)
                state.meta.update(meta)
        bar = tqdm(range(begin, state.epochs), desc=self.label or self.name, initial=begin, total=state.epochs,
                   disable=not progress, leave=False, mininterval=1.0)
        for epoch in bar:
            if self.done(state):
                break
            entry = self.epoch(state, data, epoch, device)
            if entry is not None:
                state.history.append(entry)
                bar.set_postfix({k: round(v, 3) for k, v in entry.items() if isinstance(v, float)}, refresh=False)
            if checkpoint is not None:
                checkpoint.save(epoch + 1, model=state.model, optimizer=state.optimizer, generators=state.generators,
                                tensors=state.tensors, meta={"history": state.history, "method": self.name,
                                                             **state.meta})
            if on_epoch is not None:
                on_epoch(epoch + 1, state.delta)
        return self.finish(state, data, device)

    def _poison(self, data: ImageDataset, delta: torch.Tensor, eps: float | None = None, **meta) -> Poison:
        """δ as a validated :class:`Poison` with budget ``eps`` (default: the config's ε)."""
        config = dataclasses.asdict(self.config)
        if config.get("precision") == "auto":  # as written before the setting existed: the same file, the same digest
            del config["precision"]
        poison = Poison(delta.detach().float().cpu(), self.config.eps if eps is None else eps,
                        {"method": self.name, "config": config, **meta}, self.norm)
        poison.meta["checks"] = poison.validate(data.images)
        return poison


def source_model(cfg, data: ImageDataset) -> Classifier:
    """The surrogate network an attack trains or uses (``cfg.model`` at ``cfg.width``), seeded."""
    torch.manual_seed(cfg.seed)
    c, h, _ = data.shape
    return create_model(cfg.model, data.num_classes, c, h, cfg.width)


def project(delta: torch.Tensor, x: torch.Tensor, eps: float) -> torch.Tensor:
    """Project δ onto the l∞ ε-ball and keep x + δ inside the image box [0, 1] (see :func:`miue.pgd.project`)."""
    return _project(delta, x, eps, "linf")
