"""GUE: game-theoretic unlearnable example generator (Liu, Wang & Gao, AAAI 2024).

A Stackelberg game. The follower, a classifier θ, minimises g(a, θ) = CE(f_θ(x + δ_a(x)), y) on the poisoned
data; the leader, a generator G_a with δ_a(x) = ε·tanh(G_a(x)), minimises the follower's clean
generalisation surrogate f(θ) = mean_i max_{k≠y_i} CE(f_θ(x_i), k) on clean images. The bilevel problem is
solved by the first-order BOME step, per batch:

1. θ_T: a copy of θ after ``inner_steps`` (T = 10) Adam steps (lr 1e-4) on g;
2. q(a, θ) = g(a, θ) − g(a, θ_T);
3. λ = ReLU((η‖∇q‖² − ⟨∇f, ∇q⟩) / ‖∇q‖²), the gradients over (a, θ), η = 1.5;
4. a ← a − lr_atk·λ∇_a q (SGD, lr 0.1) and θ ← θ − lr_cls·(∇_θ f + λ∇_θ q) (SGD, lr 0.01).

The generator is diffusers' ``UNet2DModel`` at a fixed timestep (the official code uses its own UNet), on
images padded to a multiple of 8. Deviation: the official run trains a scratch model every 5 epochs to keep
the best generator; here the last generator is kept.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..settings import setting
from ..train import as_float, prepare
from .base import Attack, AttackConfig, register, source_model
from .shared.generator import Generator


@dataclass(frozen=True)
class GUEConfig(AttackConfig):
    epochs: int = setting(50, low=1)
    batch_size: int = setting(256, low=2)
    lr_atk: float = setting(0.1, low=0, low_open=True, doc="generator SGD learning rate")
    lr_cls: float = setting(0.01, low=0, low_open=True, doc="classifier SGD learning rate (no momentum)")
    inner_steps: int = setting(10, low=1, doc="Adam steps of θ_T on g (T)")
    inner_lr: float = setting(1e-4, low=0, low_open=True)
    eta: float = setting(1.5, low=0, low_open=True, doc="BOME's η")
    generator_width: int = setting(32, low=4, doc="channels of the UNet's first level")
    model: str = "resnet18"
    width: float = setting(1.0, low=0, low_open=True)


def clean_surrogate(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """f(θ) = mean_i max_{k≠y_i} CE(f_θ(x_i), k) = mean_i −min_{k≠y_i} log p_k: small only when every wrong
    class is likely, i.e. when the follower does not recognise the clean image."""
    logp = F.log_softmax(logits.float(), dim=1)
    return (-logp).scatter(1, y[:, None], float("-inf")).max(1).values.mean()


@register
class GameTheoreticUE(Attack):
    name = "gue"
    label = "GUE"
    Config = GUEConfig

    def start(self, data, device, checkpoint):
        c = self.config
        torch.manual_seed(c.seed)
        generator = Generator(data.shape[0], c.generator_width, c.eps).to(device)
        classifier = prepare(source_model(c, data), device)
        both = torch.nn.ModuleDict({"generator": generator, "classifier": classifier})
        return self.new_state(data, device, epochs=c.epochs,
                              model=both, generators={"gen": torch.Generator().manual_seed(c.seed)},
                              tensors={"delta": torch.zeros(data.images.shape, device=device)})

    def epoch(self, state, data, epoch, device):
        c, gen = self.config, state.generators["gen"]
        g_net, clf = state.model["generator"], state.model["classifier"]
        x_all, y_all = state.extra["x"], state.extra["y"]
        a_params, t_params = list(g_net.parameters()), list(clf.parameters())
        lambdas, fs = [], []
        clf.train()
        for idx in torch.randperm(len(x_all), generator=gen).split(c.batch_size):
            idx = idx.to(device)
            x, y = as_float(x_all[idx], device), y_all[idx]
            # 1. θ_T: T Adam steps on g from θ (the poison held fixed)
            with torch.no_grad():
                poisoned = (x + g_net(x)).clamp(0, 1)
            inner = copy.deepcopy(clf)
            inner.train()
            opt = torch.optim.Adam(inner.parameters(), lr=c.inner_lr)
            for _ in range(c.inner_steps):
                loss = F.cross_entropy(inner(poisoned), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            inner.requires_grad_(False)
            # 2. q(a, θ) = g(a, θ) − g(a, θ_T), and f(θ) on the clean batch
            poisoned = (x + g_net(x)).clamp(0, 1)
            q = F.cross_entropy(clf(poisoned), y) - F.cross_entropy(inner(poisoned), y)
            dq = torch.autograd.grad(q, a_params + t_params, allow_unused=True)
            dq = [torch.zeros_like(p) if d is None else d for p, d in zip(a_params + t_params, dq)]
            f = clean_surrogate(clf(x), y)
            df = torch.autograd.grad(f, t_params)
            # 3. λ
            norm2 = sum((d * d).sum() for d in dq)
            inner_prod = sum((a * b).sum() for a, b in zip(df, dq[len(a_params):]))
            lam = torch.relu((c.eta * norm2 - inner_prod) / norm2.clamp_min(1e-12)).item()
            # 4. the leader's and the follower's steps
            with torch.no_grad():
                for p, d in zip(a_params, dq[:len(a_params)]):
                    p -= c.lr_atk * lam * d
                for p, d_f, d_q in zip(t_params, df, dq[len(a_params):]):
                    p -= c.lr_cls * (d_f + lam * d_q)
            lambdas.append(lam)
            fs.append(f.item())
        return {"epoch": epoch + 1, "lambda": sum(lambdas) / len(lambdas), "clean_surrogate": sum(fs) / len(fs)}

    def finish(self, state, data, device):
        state.delta.copy_(state.model["generator"].perturb_set(state.extra["x"], device))
        return self._poison(data, state.delta, history=state.history)
