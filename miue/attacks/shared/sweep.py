"""One PGD sweep over a whole training set, batch by batch, descending a (targeted) cross-entropy: the inner
step EM (its labels) and AP (the next class) share."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ...models import frozen
from ...pgd import pgd
from ...train import as_float, autocast


def pgd_sweep(model, x_all, y_all, delta, targets, cfg, device, generator=None, aug_spec=None, mi_reg=None):
    """PGD descent of CE(f(aug(x+δ)), target) for every batch of the set; returns (δ, per-sample final loss).

    With ``mi_reg`` (a :class:`~miue.attacks.shared.mi_regularizer.MIRegularizer`) the loss also carries its MINE
    penalty on (g(x), g(x+δ)), its statistics network refitted on each batch first (Table 8)."""
    final = torch.empty(len(x_all), device=device)
    with frozen(model):  # eval mode, input gradients only
        for s in range(0, len(x_all), cfg.batch_size):
            sl = slice(s, s + cfg.batch_size)
            x, t = as_float(x_all[sl], device), targets[sl]
            clean_features = None
            if mi_reg is not None:
                with torch.no_grad(), autocast(device):
                    clean_features = model.features(x).float()
                    mi_reg.fit_batch(clean_features, model.features((x + delta[sl]).clamp(0, 1)).float())

            def loss_fn(inp, t=t, clean_features=clean_features):
                with autocast(device):
                    if mi_reg is None:
                        return F.cross_entropy(model(inp).float(), t)
                    z = model.features(inp)
                    return F.cross_entropy(model.head(z).float(), t) + mi_reg.penalty(clean_features, z.float())

            d, _ = pgd(loss_fn, x, delta[sl].clone(), eps=cfg.eps, step_size=cfg.step_size, steps=cfg.pgd_steps,
                       augmentation=aug_spec, generator=generator)
            with torch.no_grad(), autocast(device):
                final[sl] = F.cross_entropy(model(x + d).float(), t, reduction="none")
            delta[sl] = d
    return delta, final
