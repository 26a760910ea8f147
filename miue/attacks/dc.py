"""DC: DeepConfuse (Feng, Cai & Zhou, NeurIPS 2019), a generator that follows the victim's training trajectory.

max_ξ CE(f_{θ*(ξ)}(x), y) on clean data, θ*(ξ) trained on x + ε·g_ξ(x), with g a UNet autoencoder (tanh
output; the same generator module as GUE's). Each outer epoch trains a fresh classifier (VGG-11, SGD lr 0.01,
batch 256) for ``classifier_epochs`` on x + δ from a frozen copy of the generator; at every batch a pseudo-update
θ' = θ − lr·∇_θ CE(f_θ(x + ε·g'(x)), y) is taken through the trainable generator g' (second order), and g' takes
an Adam step (lr 1e-4) to *maximise* CE(f_θ'(x), y) on the clean batch. After the epoch the frozen copy becomes
g'. ε = 0.032 (the official CIFAR setting). The official run takes 1,000 outer epochs ("5 to 7 days on a
GPU"); every profile here runs far fewer, which the chapters state.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.func import functional_call

from ..settings import setting
from ..train import as_float, prepare
from .base import Attack, AttackConfig, register, source_model
from .shared.generator import Generator


@dataclass(frozen=True)
class DCConfig(AttackConfig):
    eps: float = setting(0.032, low=0, low_open=True, high=1, doc="budget, pixel scale (official 0.032)")
    epochs: int = setting(1000, low=1, doc="outer epochs (a fresh classifier each)")
    classifier_epochs: int = setting(20, low=1)
    batch_size: int = setting(256, low=2)
    classifier_lr: float = setting(0.01, low=0, low_open=True)
    generator_lr: float = setting(1e-4, low=0, low_open=True)
    generator_width: int = setting(32, low=4, doc="channels of the UNet's first level")
    model: str = "vgg11"
    width: float = setting(1.0, low=0, low_open=True)


@register
class DeepConfuse(Attack):
    name = "dc"
    label = "DC"
    Config = DCConfig

    def start(self, data, device, checkpoint):
        c = self.config
        torch.manual_seed(c.seed)
        generator = Generator(data.shape[0], c.generator_width, c.eps).to(device)
        opt = torch.optim.Adam(generator.parameters(), lr=c.generator_lr)
        return self.new_state(data, device, epochs=c.epochs, model=generator, optimizer=opt,
                              generators={"gen": torch.Generator().manual_seed(c.seed)},
                              tensors={"delta": torch.zeros(data.images.shape, device=device)})

    def epoch(self, state, data, epoch, device):
        c, gen, trainable = self.config, state.generators["gen"], state.model
        frozen = copy.deepcopy(trainable).eval().requires_grad_(False)
        x_all, y_all = state.extra["x"], state.extra["y"]
        clf = prepare(source_model(c, data), device).train()
        clf_opt = torch.optim.SGD(clf.parameters(), lr=c.classifier_lr)
        names = [n for n, _ in clf.named_parameters()]
        clean_losses = []
        for _ in range(c.classifier_epochs):
            for idx in torch.randperm(len(x_all), generator=gen).split(c.batch_size):
                idx = idx.to(device)
                x, y = as_float(x_all[idx], device), y_all[idx]
                # the generator: through a pseudo-update of the classifier on g'(x), maximise CE on clean x
                params = dict(clf.named_parameters())
                inner = F.cross_entropy(clf((x + trainable(x)).clamp(0, 1)), y)
                grads = torch.autograd.grad(inner, [params[n] for n in names], create_graph=True)
                updated = {n: params[n] - c.classifier_lr * g for n, g in zip(names, grads)}
                clean = F.cross_entropy(functional_call(clf, updated, (x,)), y)
                state.optimizer.zero_grad(set_to_none=True)
                (-clean).backward()
                state.optimizer.step()
                clean_losses.append(clean.item())
                # the classifier: an ordinary step on the frozen generator's poison
                with torch.no_grad():
                    poisoned = (x + frozen(x)).clamp(0, 1)
                loss = F.cross_entropy(clf(poisoned), y)
                clf_opt.zero_grad(set_to_none=True)
                loss.backward()
                clf_opt.step()
        return {"epoch": epoch + 1, "clean_loss_after_pseudo_update": sum(clean_losses) / len(clean_losses)}

    def finish(self, state, data, device):
        state.delta.copy_(state.model.perturb_set(state.extra["x"], device))
        return self._poison(data, state.delta, history=state.history)
