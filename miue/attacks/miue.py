"""MI-UE: Mutual Information Unlearnable Examples (Algorithm 1, loss Eq. 2, min-min Eq. 3).

Each epoch trains the source model θ for one pass of cross-entropy on the augmented poisoned data, then
runs ``pgd_steps`` signed steps on δ per batch to minimize L_mi (Eq. 2), projecting to the ε-ball:

    L_mi = log(1 + Σ_{k: y_k≠y_j} exp(s_jk/τ) / Σ_{k: y_k=y_j} exp(s_jk/τ)) + ζ·log(1 + Σ_k ‖g_j − g_k‖₂)

with s_jk the cosine similarity of poisoned features g(x+δ). The paper's settings (App. E.4) are the
defaults of ``miue``. ``miue-code`` is the authors' public code (hala64/mi-ue@4cd3879, ``gen_miue.py`` run
with the README's command), made faithful to it: source lr 0.1 and batch 128 (the poison batch stays 512),
ζ = 0, the PGD step annealed from α to α_final as the code computes it, the distance term over same-class
pairs divided by the feature dimension, the clean image alone flipped (δ added unflipped, no crop: the
``--post-aug`` transform), ImageNet mean/std normalization inside the network, He-normal convolutions, and
the published images truncated to 8 bits rather than rounded.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..augment import random_flip
from ..models import frozen, kaiming_normal_init, normalize_inputs
from ..pgd import pgd
from ..settings import setting
from ..train import Recipe, as_float, autocast, prepare, sgd, train_steps
from .base import Attack, AttackConfig, register, source_model


def mi_loss(z: torch.Tensor, y: torch.Tensor, tau: float = 0.1, zeta: float = 0.1,
            distance: str = "all", similarity: bool = True) -> torch.Tensor:
    """Eq. 2 averaged over the batch. ``distance``: 'all' (paper) or 'same-class' (code: same-class pairs / d).

    ``similarity=False`` drops the first (cosine) term and ``zeta=0`` the second: Table 6's ablations."""
    same = y[:, None] == y[None, :]
    loss = z.new_zeros(len(z), dtype=torch.float32)
    if similarity:
        zn = F.normalize(z.float(), dim=1)
        s = zn @ zn.T / tau
        neg_inf = torch.finfo(s.dtype).min
        pos = torch.logsumexp(s.masked_fill(~same, neg_inf), dim=1)
        neg = torch.logsumexp(s.masked_fill(same, neg_inf), dim=1)
        loss = loss + F.softplus(neg - pos)  # log(1 + Σneg/Σpos), stable
    if zeta:
        zf = z.float()
        sq = (zf * zf).sum(1)
        d2 = (sq[:, None] + sq[None, :] - 2 * zf @ zf.T).clamp_min(1e-12)
        eye = torch.eye(len(z), dtype=torch.bool, device=z.device)
        dist = torch.where(eye, torch.zeros_like(d2), d2.sqrt())
        if distance == "all":
            total = dist.sum(1)
        elif distance == "same-class":
            total = (dist * same).sum(1) / z.shape[1]
        else:
            raise ValueError(f"distance must be 'all' or 'same-class', got {distance!r}")
        loss = loss + zeta * torch.log1p(total)
    return loss.mean()


@dataclass(frozen=True)
class MIUEConfig(AttackConfig):
    epochs: int = setting(100, low=1, doc="generation epochs (Alg. 1 outer loop)")
    batch_size: int = setting(512, low=2)
    pgd_steps: int = setting(10, low=1)
    step_size: float = setting(0.2 / 255, low=0, low_open=True, high=1)
    step_size_final: float = setting(0.0, low=0, high=1,
                                     doc="> 0: ramp the step linearly to this value at the last epoch (code)")
    lr: float = setting(0.5, low=0, low_open=True)
    momentum: float = setting(0.9, low=0, high=1, high_open=True)
    weight_decay: float = setting(1e-4, low=0)
    min_lr: float = setting(1e-6, low=0)
    tau: float = setting(0.1, low=0, low_open=True, doc="temperature τ of Eq. 2")
    zeta: float = setting(0.1, low=0, doc="balancing strength ζ of Eq. 2")
    distance: str = setting("all", choices=("all", "same-class"))
    augment: bool = True  # App. E.3: crop + flip in generation, for θ and (differentiably) for δ
    model: str = "resnet18"
    width: float = setting(1.0, low=0, low_open=True)
    augment_mode: str = setting("joint", choices=("joint", "flip-clean", "contrastive"), added=True,
                                doc="'joint': crop and flip x+δ together (EOT); 'flip-clean': flip x only, add δ "
                                    "unflipped, no crop (the code's --post-aug); 'contrastive': SimCLR's views of "
                                    "x+δ in both steps (A-MI-UE, Table 20)")
    train_batch_size: int = setting(0, low=0, added=True, doc="source-model batch; 0: batch_size")
    normalize: str = setting("none", choices=("none", "imagenet"), added=True,
                             doc="input normalization inside the source network")
    init: str = setting("default", choices=("default", "kaiming-normal"), added=True,
                        doc="convolution initialization of the source network")
    quantize: str = setting("round", choices=("round", "truncate"), added=True,
                            doc="how x+δ is published in 8 bits")
    similarity: bool = setting(True, added=True, doc="the cosine-similarity term of Eq. 2 (False: Table 6's "
                                                     "'w/o similarity' ablation)")

    def __post_init__(self):
        super().__post_init__()
        if not self.similarity and self.zeta == 0:
            raise ValueError("MI-UE with similarity=False and zeta=0 has no loss left; keep one of Eq. 2's terms")


@register
class MIUE(Attack):
    name = "miue"
    label = "MI-UE"
    Config = MIUEConfig
    snapshots = True

    def step_at(self, epoch: int) -> float:
        c = self.config
        if c.step_size_final <= 0 or c.epochs == 1:
            return c.step_size
        return c.step_size + (c.step_size_final - c.step_size) * epoch / (c.epochs - 1)

    def network(self, data):
        """The source model θ: ``model`` at ``width``, with the configured initialization and normalization."""
        c = self.config
        model = source_model(c, data)
        if c.init == "kaiming-normal":
            torch.manual_seed(c.seed)
            kaiming_normal_init(model)
        return normalize_inputs(model, data.shape[0]) if c.normalize == "imagenet" else model

    def start(self, data, device, checkpoint):
        c = self.config
        model = prepare(self.network(data), device)
        recipe = Recipe(epochs=c.epochs, batch_size=c.train_batch_size or c.batch_size, lr=c.lr, momentum=c.momentum,
                        weight_decay=c.weight_decay, min_lr=c.min_lr, augment=c.augment)
        return self.new_state(data, device, epochs=c.epochs, model=model, optimizer=sgd(model, recipe),
                              generators={"gen": torch.Generator().manual_seed(c.seed)},
                              tensors={"delta": torch.zeros(data.images.shape, device=device)},
                              extra={"recipe": recipe})

    def epoch(self, state, data, epoch, device):
        c, gen, recipe, model = self.config, state.generators["gen"], state.extra["recipe"], state.model
        x_all, y_all, delta = state.extra["x"], state.extra["y"], state.delta
        for g in state.optimizer.param_groups:
            g["lr"] = recipe.lr_at(epoch)
        joint = c.augment and c.augment_mode == "joint"
        flip = c.augment and c.augment_mode == "flip-clean" and data.augmentation.horizontal_flip
        views = c.augment and c.augment_mode == "contrastive"

        def clean(idx):  # the clean batch as the generation sees it: flipped alone in 'flip-clean' mode
            x = as_float(x_all[idx], device)
            return random_flip(x, gen) if flip else x

        # source model optimization (Alg. 1, inner loop over θ): one pass of CE on x + δ
        order = torch.randperm(len(data), generator=gen)
        if joint:
            poisoned = (as_float(x_all, device) + delta).clamp_(0, 1)
            _, train_acc = train_steps(model, state.optimizer, poisoned, y_all, order, recipe, data.augmentation,
                                       gen, device)
        elif views:
            from ..contrastive import simclr_augment
            _, train_acc = train_steps(model, state.optimizer,
                                       lambda idx: simclr_augment((clean(idx) + delta[idx]).clamp(0, 1), gen),
                                       y_all, order, recipe, None, gen, device)
        else:
            _, train_acc = train_steps(model, state.optimizer, lambda idx: (clean(idx) + delta[idx]).clamp_(0, 1),
                                       y_all, order, recipe, None, gen, device)
        # poison optimization (Alg. 1, PGD on L_mi)
        alpha, losses = self.step_at(epoch), []

        def loss_fn(inp, y):
            with autocast(device):
                z = model.features(inp)
            return mi_loss(z, y, c.tau, c.zeta, c.distance, c.similarity)

        order = torch.randperm(len(data), generator=gen)
        aug = simclr_augment if views else data.augmentation if joint else None  # (imported above for views)
        with frozen(model):
            for s in range(0, len(order), c.batch_size):
                idx = order[s:s + c.batch_size].to(device)
                x, y = clean(idx), y_all[idx]
                d, loss = pgd(lambda inp, y=y: loss_fn(inp, y), x, delta[idx].clone(), eps=c.eps, step_size=alpha,
                              steps=c.pgd_steps, augmentation=aug, generator=gen)
                losses.append(loss.item())
                delta[idx] = d
        return {"epoch": epoch + 1, "source_train_acc": train_acc, "mi_loss": sum(losses) / len(losses),
                "step_size": alpha, "lr": recipe.lr_at(epoch)}

    def published(self, data, delta):
        if self.config.quantize == "truncate":  # the code's clip(x·255 + δ·255, 0, 255).astype(uint8)
            return truncated(data.images.to(delta.device), delta)
        return delta


def truncated(images: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """δ such that x + δ is x·255 + δ·255 truncated to whole levels (x uint8), so rounding publishes it exactly.

    A 10⁻³-level tolerance keeps float error (δ·255 = −8.0000005) from dropping a pixel to the next level and
    out of the budget."""
    x = images.float()
    levels = (x + delta.float() * 255 + 1e-3).floor().clamp_(0, 255)
    return (levels - x) / 255


@dataclass(frozen=True)
class MIUECodeConfig(MIUEConfig):
    lr: float = setting(0.1, low=0, low_open=True)
    zeta: float = setting(0.0, low=0)
    step_size_final: float = setting(0.4 / 255, low=0, high=1)
    distance: str = setting("same-class", choices=("all", "same-class"))
    # the faithful settings, always part of the address (not ``added``): records of the earlier, partial
    # code variant keep their own addresses
    augment_mode: str = setting("flip-clean", choices=("joint", "flip-clean"))
    train_batch_size: int = setting(128, low=0)
    normalize: str = setting("imagenet", choices=("none", "imagenet"))
    init: str = setting("kaiming-normal", choices=("default", "kaiming-normal"))
    quantize: str = setting("truncate", choices=("round", "truncate"))


@register
class MIUECode(MIUE):
    """MI-UE as the authors' public code (hala64/mi-ue@4cd3879) runs it, a named variant."""

    name = "miue-code"
    label = "MI-UE (code)"
    Config = MIUECodeConfig

    def step_at(self, epoch: int) -> float:
        """The code's anneal: α_e = α_final + (E − e)/E · (α − α_final) for 0-based e (α at the first epoch,
        one E-th of the way from α_final at the last)."""
        c = self.config
        if c.step_size_final <= 0:
            return c.step_size
        return c.step_size_final + (c.epochs - epoch) / c.epochs * (c.step_size - c.step_size_final)
