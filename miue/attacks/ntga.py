"""NTGA: neural tangent generalization attack (Yuan & Wu, ICML 2021), the FNN-kernel version MI-UE uses.

The surrogate is an infinitely wide network, 5 × [Dense(W_std² = 1.76, b_std² = 0.18) + Erf] and a Dense
readout, trained by gradient descent on the MSE for time t: its mean prediction on validation images is

    f_t(X_val) = Θ(X_val, X_b) Θ(X_b, X_b)⁻¹ (I − exp(−Θ(X_b, X_b)·t/n)) Y_b,

with Θ the network's neural tangent kernel (closed form for Erf, below; the official code uses the Neural
Tangents library, which is not used here), n the block size and a 1e-4 diagonal regulariser. Each block of
``block_size`` training images is perturbed by ``steps`` signed *ascent* steps of 1.1·ε/``steps`` (no random
start) on CE(f_t(X_val), Y_val): a set that makes the kernel machine generalise badly.

Deviation: the official code holds out 10,000 training images as X_val and publishes the other 40,000; an
attack here sees only the published set and perturbs all of it, so each block's X_val is ``val_size`` images
of the set outside that block.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..settings import setting
from ..train import as_float
from .base import Attack, AttackConfig, project, register


@dataclass(frozen=True)
class NTGAConfig(AttackConfig):
    depth: int = setting(5, low=1, doc="Erf layers of the surrogate FNN")
    weight_var: float = setting(1.76, low=0, low_open=True, doc="W_std²")
    bias_var: float = setting(0.18, low=0, doc="b_std²")
    t: float = setting(64.0, low=0, low_open=True, doc="training time of the kernel machine (official default 64)")
    block_size: int = setting(512, low=2)
    val_size: int = setting(10000, low=10, doc="validation images outside the block (capped by the set)")
    steps: int = setting(10, low=1, doc="PGD steps per block, of size 1.1·ε/steps")
    diag_reg: float = setting(1e-4, low=0)


def erf_ntk(x1: torch.Tensor, x2: torch.Tensor, depth: int = 5, weight_var: float = 1.76,
            bias_var: float = 0.18) -> torch.Tensor:
    """The NTK Θ(x1, x2) of ``depth`` × [Dense + Erf] + Dense, in closed form (Williams 1997 for E[erf·erf]):

    E[erf(u) erf(v)] = 2/π · arcsin(2k_uv / √((1 + 2k_uu)(1 + 2k_vv))),
    E[erf'(u) erf'(v)] = 4/π / √((1 + 2k_uu)(1 + 2k_vv) − 4k_uv²),
    K⁰ = W²·x·x'/d + b²,  K^{l+1} = W²·E[φφ] + b²,  Θ^{l+1} = K^{l+1} + W²·E[φ'φ']·Θ^l."""
    d = x1.shape[1]
    k12 = weight_var * (x1 @ x2.T) / d + bias_var
    k11 = weight_var * (x1 * x1).sum(1) / d + bias_var
    k22 = weight_var * (x2 * x2).sum(1) / d + bias_var
    theta = k12
    for _ in range(depth):
        a, b = 1 + 2 * k11, 1 + 2 * k22
        prod = a[:, None] * b[None, :]
        s = (2 * k12 / prod.sqrt()).clamp(-1 + 1e-6, 1 - 1e-6)
        e_phi = 2 / math.pi * torch.asin(s)
        e_dphi = 4 / math.pi / (prod - 4 * k12 * k12).clamp_min(1e-12).sqrt()
        k11 = weight_var * 2 / math.pi * torch.asin((2 * k11 / a).clamp(max=1 - 1e-6)) + bias_var
        k22 = weight_var * 2 / math.pi * torch.asin((2 * k22 / b).clamp(max=1 - 1e-6)) + bias_var
        k12 = weight_var * e_phi + bias_var
        theta = k12 + weight_var * e_dphi * theta
    return theta


def kernel_prediction(theta_vb: torch.Tensor, theta_bb: torch.Tensor, y_b: torch.Tensor, t: float,
                      diag_reg: float = 1e-4) -> torch.Tensor:
    """Mean prediction at time t of gradient descent on the MSE (loss averaged over the n block images)."""
    n = len(theta_bb)
    lam, v = torch.linalg.eigh(theta_bb + diag_reg * torch.eye(n, dtype=theta_bb.dtype, device=theta_bb.device))
    lam = lam.clamp_min(1e-12)
    gain = -torch.expm1(-lam * t / n) / lam
    return theta_vb @ (v @ (gain[:, None] * (v.T @ y_b)))


@register
class NeuralTangentGeneralization(Attack):
    name = "ntga"
    label = "NTGA"
    Config = NTGAConfig

    def start(self, data, device, checkpoint):
        g = torch.Generator().manual_seed(self.config.seed)
        order = torch.randperm(len(data), generator=g)
        blocks = list(order.split(self.config.block_size))
        return self.new_state(data, device, epochs=len(blocks), generators={"gen": g},
                              tensors={"delta": torch.zeros(data.images.shape, device=device), "order": order},
                              extra={"blocks": blocks})

    def epoch(self, state, data, b, device):
        c, gen = self.config, state.generators["gen"]
        x_all, y_all = state.extra["x"], state.extra["y"]
        block = state.extra["blocks"][b].to(device)
        outside = torch.ones(len(x_all), dtype=torch.bool, device=device)
        outside[block] = False
        pool = torch.nonzero(outside).flatten()
        val = pool[torch.randperm(len(pool), generator=gen)[:c.val_size].to(device)]
        x_b = as_float(x_all[block], device).double()
        x_v = as_float(x_all[val], device).flatten(1).double()
        y_b = F.one_hot(y_all[block], data.num_classes).double()
        y_v = y_all[val]
        kw = dict(depth=c.depth, weight_var=c.weight_var, bias_var=c.bias_var)

        def val_loss(xb):
            flat = xb.flatten(1)
            pred = kernel_prediction(erf_ntk(x_v, flat, **kw), erf_ntk(flat, flat, **kw), y_b, c.t, c.diag_reg)
            return F.cross_entropy(pred, y_v)

        with torch.no_grad():
            clean = float(val_loss(x_b))
        delta = torch.zeros_like(x_b)
        step = 1.1 * c.eps / c.steps
        for _ in range(c.steps):
            delta.requires_grad_(True)
            loss = val_loss(x_b + delta)
            grad, = torch.autograd.grad(loss, delta)
            delta = project(delta.detach() + step * grad.sign(), x_b, c.eps)
        state.delta[block] = delta.float()
        with torch.no_grad():
            after = float(val_loss(x_b + delta))
        return {"block": b + 1, "val_loss_clean": clean, "val_loss_poisoned": after}

    def finish(self, state, data, device):
        return self._poison(data, state.delta, history=state.history)
