"""EM: error-minimizing noise (Huang et al., ICLR 2021), sample-wise, bi-level min-min.

    min_θ min_{‖δ_i‖∞≤ε} Σ_i CE(f_θ(x_i + δ_i), y_i)

Rounds alternate ``train_steps`` SGD batches on x + δ with a PGD sweep over the whole set (signed
gradient *descent*, model in eval mode), until training accuracy on x + δ exceeds 1 − ``stop_error``
(the official stop condition, 99%) or ``max_rounds`` is reached. δ starts at zero; no augmentation
in generation, as in the official code (see methods.md). ``mi_weight`` > 0 adds MI-UE Table 8's MINE
regulariser (:mod:`miue.attacks.shared.mi_regularizer`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..settings import setting
from ..train import Recipe, as_float, evaluate, prepare, sgd, train_steps
from .base import Attack, AttackConfig, register, source_model
from .shared.sweep import pgd_sweep


@dataclass(frozen=True)
class EMConfig(AttackConfig):
    pgd_steps: int = setting(20, low=1)
    step_size: float = setting(0.8 / 255, low=0, low_open=True, high=1)
    train_steps: int = setting(10, low=1)
    batch_size: int = setting(512, low=1)
    lr: float = setting(0.1, low=0, low_open=True)
    momentum: float = setting(0.9, low=0, high=1, high_open=True)
    weight_decay: float = setting(5e-4, low=0)
    grad_clip: float = setting(5.0, low=0)
    stop_error: float = setting(0.01, low=0, high=1)
    max_rounds: int = setting(100, low=1)
    model: str = "resnet18"
    width: float = setting(1.0, low=0, low_open=True)
    mi_weight: float = setting(0.0, low=0, added=True,
                               doc="weight of the MINE estimate of I(g(x); g(x+δ)) added to the loss (Table 8)")


@register
class ErrorMinimizing(Attack):
    name = "em"
    label = "EM"
    Config = EMConfig

    def start(self, data, device, checkpoint):
        c = self.config
        model = prepare(source_model(c, data), device)
        recipe = Recipe(epochs=1, batch_size=c.batch_size, lr=c.lr, momentum=c.momentum,
                        weight_decay=c.weight_decay, schedule="constant", augment=False, grad_clip=c.grad_clip)
        gen = torch.Generator().manual_seed(c.seed)
        order = torch.randperm(len(data), generator=gen)
        return self.new_state(data, device, epochs=c.max_rounds,
                              model=model, optimizer=sgd(model, recipe), generators={"gen": gen},
                              tensors={"delta": torch.zeros(data.images.shape, device=device), "order": order},
                              meta={"cursor": 0},
                              extra={"recipe": recipe})

    def done(self, state):
        return bool(state.history) and state.history[-1]["train_acc"] > 1 - self.config.stop_error

    def epoch(self, state, data, rnd, device):
        c, gen = self.config, state.generators["gen"]
        x_all, y_all = state.extra["x"], state.extra["y"]
        # θ: train_steps batches on x + δ, continuing through a shuffled pass
        need = c.train_steps * c.batch_size
        order, cursor = state.tensors["order"].cpu(), state.meta["cursor"]
        if cursor + need > len(order):
            order, cursor = torch.randperm(len(data), generator=gen), 0
        batch_idx = order[cursor:cursor + need]
        state.tensors["order"], state.meta["cursor"] = order, cursor + need
        poisoned = (as_float(x_all, device) + state.delta).clamp_(0, 1)
        train_steps(state.model, state.optimizer, poisoned, y_all, batch_idx, state.extra["recipe"], None, gen, device)
        # δ: PGD sweep over the whole set, minimizing the error
        state.tensors["delta"], _ = pgd_sweep(state.model, x_all, y_all, state.delta, y_all, c, device,
                                              mi_reg=self.mi_regularizer(state, device))
        _, acc = evaluate(state.model, ((as_float(x_all, device) + state.delta).clamp_(0, 1), y_all), device)
        entry = {"round": rnd + 1, "train_acc": acc}
        if c.mi_weight:
            entry["mine_bound"] = state.extra["mi_reg"].last
        return entry

    def mi_regularizer(self, state, device):
        """Table 8's MINE regulariser (None unless ``mi_weight`` > 0), kept across rounds in memory."""
        if not self.config.mi_weight:
            return None
        if "mi_reg" not in state.extra:
            from .shared.mi_regularizer import MIRegularizer
            state.extra["mi_reg"] = MIRegularizer(state.model.feature_dim, self.config.mi_weight, device,
                                                  seed=self.config.seed)
        return state.extra["mi_reg"]

    def finish(self, state, data, device):
        converged = self.done(state)
        return self._poison(data, state.delta, history=state.history, converged=converged, rounds=len(state.history))
