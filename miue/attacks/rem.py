"""REM: robust error-minimizing noise (Fu et al., ICLR 2022), and SEM: stable error-minimizing noise
(Liu et al., AAAI 2024), which differs from it in one place.

Min-min-max: a source model θ is trained adversarially on the defended data while the defensive noise δu
(‖δu‖∞ ≤ ρu = 8/255) minimizes the loss the model incurs in expectation over the training transform t
(crop + flip, ``eot`` samples) and under a perturbation δa (‖δa‖∞ ≤ ρa = 4/255):

    min_θ  min_δu  E_t  max_δa  CE(f_θ(t(x + δu) + δa), y).

Each training step (batch ``batch_size``, ``steps`` in all, SGD lr 0.1 ×0.1 every ``lr_decay_every``):

1. δu for the batch, from a uniform random start, by ``pgd_steps`` signed steps of ``step_size``; each step
   averages the gradient over ``eot`` draws of t, and for each draw δa is the inner maximizer (REM: PGD,
   ``adv_steps`` × ``adv_step_size`` from a random start) or a uniform draw in ±ρa (SEM);
2. one SGD step of θ on PGD-adversarial examples (ρa) of t(x + δu): the source model is trained
   adversarially in both methods.

After the last step δu is regenerated for the whole set with the final model (REM's final regeneration).
The regeneration runs as further checkpointed epochs, each over at most as many batches as a training epoch,
in the same order and from the same random stream as one pass would: an interrupted generation resumes
bit-identically and loses at most one epoch's work, also at 60,000 images where the whole regeneration costs
about two training epochs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..augment import augment as apply_augment
from ..models import frozen
from ..pgd import pgd, project
from ..settings import setting
from ..train import as_float, autocast, prepare
from .base import Attack, AttackConfig, register, source_model


@dataclass(frozen=True)
class REMConfig(AttackConfig):
    adv_eps: float = setting(4 / 255, low=0, high=1, doc="ρa: radius of δa (0: plain error-minimizing noise)")
    steps: int = setting(5000, low=1, doc="training steps of the source model")
    batch_size: int = setting(128, low=1)
    pgd_steps: int = setting(10, low=1, doc="signed steps on δu per batch")
    step_size: float = setting(1.6 / 255, low=0, low_open=True, high=1)
    adv_steps: int = setting(10, low=1, doc="PGD steps of δa (inner max and the model's adversarial training)")
    adv_step_size: float = setting(0.8 / 255, low=0, low_open=True, high=1)
    eot: int = setting(5, low=1, doc="draws of the training transform per δu step")
    lr: float = setting(0.1, low=0, low_open=True)
    momentum: float = setting(0.9, low=0, high=1, high_open=True)
    weight_decay: float = setting(5e-4, low=0)
    lr_decay_every: int = setting(2000, low=1, doc="lr ×0.1 every this many steps")
    model: str = "resnet18"
    width: float = setting(1.0, low=0, low_open=True)


def _ce(model, inp, y, device):
    with autocast(device):
        return F.cross_entropy(model(inp).float(), y)


def _uniform(shape, radius, generator, device):
    return ((torch.rand(shape, generator=generator) * 2 - 1) * radius).to(device)


def adversarial(model, inp, y, cfg: REMConfig, generator, device) -> torch.Tensor:
    """δa: PGD ascent of CE within ±ρa around ``inp`` (random start, image box kept)."""
    if cfg.adv_eps == 0:
        return torch.zeros_like(inp)
    start = project(_uniform(inp.shape, cfg.adv_eps, generator, device), inp, cfg.adv_eps)
    d, _ = pgd(lambda z: _ce(model, z, y, device), inp, start, eps=cfg.adv_eps, step_size=cfg.adv_step_size,
               steps=cfg.adv_steps, ascent=True)
    return d


class RobustErrorMinimizing(Attack):
    """Shared loop of REM and SEM; ``inner`` says how δa is chosen in the δu update."""

    inner = "adversarial"
    Config = REMConfig

    @classmethod
    def work(cls, config: dict, n: int) -> float:
        """``steps`` batches of δu's passes and the model's adversarial step, then δu for each of the ``n``
        images: the training does not grow with the set, only the final regeneration does."""
        du = config["pgd_steps"] * config["eot"] * (1 + config["adv_steps"] if cls.inner == "adversarial" else 1)
        return config["steps"] * config["batch_size"] * (du + config["adv_steps"] + 1) + n * du

    def defensive_noise(self, model, x, y, aug_spec, generator, device) -> torch.Tensor:
        """δu for a clean batch ``x`` against the current model (step 1 above), from a random start."""
        c = self.config
        with frozen(model):  # eval mode, input gradients only
            du = project(_uniform(x.shape, c.eps, generator, device), x, c.eps)
            for _ in range(c.pgd_steps):
                du.requires_grad_(True)
                grad = torch.zeros_like(x)
                for _ in range(c.eot):
                    inp = apply_augment(x + du, aug_spec, generator)
                    if self.inner == "adversarial":
                        da = adversarial(model, inp.detach(), y, c, generator, device)
                    else:  # SEM: a random δr within ±ρa, kept in the image box
                        da = project(_uniform(inp.shape, c.adv_eps, generator, device), inp.detach(), c.adv_eps)
                    loss = _ce(model, inp + da, y, device)
                    grad += torch.autograd.grad(loss, du)[0]
                du = project(du.detach() - c.step_size * grad.sign(), x, c.eps)
        return du.detach()

    def start(self, data, device, checkpoint):
        c = self.config
        model = prepare(source_model(c, data), device)
        optimizer = torch.optim.SGD(model.parameters(), lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay)
        per_epoch = math.ceil(len(data) / c.batch_size)
        training = math.ceil(c.steps / per_epoch)
        piece = min(per_epoch, c.steps)  # batches per regeneration epoch: no more than a training epoch's
        return self.new_state(data, device, epochs=training + math.ceil(per_epoch / piece),
                              model=model, optimizer=optimizer,
                              generators={"gen": torch.Generator().manual_seed(c.seed)},
                              tensors={"delta": torch.zeros(data.images.shape, device=device)},
                              extra={"per_epoch": per_epoch, "training": training, "piece": piece})

    def epoch(self, state, data, epoch, device):
        if epoch >= state.extra["training"]:
            return self.regenerate(state, data, epoch - state.extra["training"], device)
        c, gen, model = self.config, state.generators["gen"], state.model
        x_all, y_all, per_epoch = state.extra["x"], state.extra["y"], state.extra["per_epoch"]
        order = torch.randperm(len(data), generator=gen)
        first = epoch * per_epoch
        losses, correct, seen = [], 0, 0
        for k in range(min(per_epoch, c.steps - first)):
            step = first + k
            for g in state.optimizer.param_groups:
                g["lr"] = c.lr * 0.1 ** (step // c.lr_decay_every)
            idx = order[k * c.batch_size:(k + 1) * c.batch_size].to(device)
            x, y = as_float(x_all[idx], device), y_all[idx]
            du = self.defensive_noise(model, x, y, data.augmentation, gen, device)
            state.delta[idx] = du
            # θ: one step of adversarial training on t(x + δu)
            inp = apply_augment((x + du).clamp(0, 1), data.augmentation, gen)
            with frozen(model):
                da = adversarial(model, inp, y, c, gen, device)
            model.train()
            with autocast(device):
                out = model(inp + da).float()
                loss = F.cross_entropy(out, y)
            state.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            state.optimizer.step()
            losses.append(loss.item())
            correct += (out.argmax(1) == y).sum().item()
            seen += len(y)
        return {"epoch": epoch + 1, "steps": first + len(losses), "adv_train_loss": sum(losses) / len(losses),
                "adv_train_acc": correct / seen, "lr": state.optimizer.param_groups[0]["lr"]}

    def regenerate(self, state, data, piece: int, device) -> None:
        """REM's final regeneration, piece ``piece``: δu with the final model for the images of the next
        ``extra["piece"]`` batches (in index order), over the training δu. Returns no history entry."""
        c, gen, size = self.config, state.generators["gen"], state.extra["piece"] * self.config.batch_size
        x_all, y_all = state.extra["x"], state.extra["y"]
        for s in range(piece * size, min((piece + 1) * size, len(data)), c.batch_size):
            x, y = as_float(x_all[s:s + c.batch_size], device), y_all[s:s + c.batch_size]
            state.delta[s:s + c.batch_size] = self.defensive_noise(state.model, x, y, data.augmentation, gen, device)
        return None


@register
class REM(RobustErrorMinimizing):
    name = "rem"
    label = "REM"


@register
class SEM(RobustErrorMinimizing):
    """SEM: REM with the δu update against a random δr ∼ U[−ρa, ρa] instead of the adversarial δa."""

    name = "sem"
    label = "SEM"
    inner = "random"
