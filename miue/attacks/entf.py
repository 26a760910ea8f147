"""EntF: entangled features (Wen et al., ICLR 2023, "Is adversarial training really a silver bullet for
mitigating data poisoning?"), a poison made to survive adversarial training.

A reference model φ is adversarially trained on the clean data (PGD-``robust_steps`` at ``robust_eps`` 4/255,
step 2/255; the official 100 epochs, lr 0.1 ×0.1 at 75% and 90%), and the class centroids c_k of its
penultimate features over the clean training set are computed. Each image is then perturbed within ε by
``iterations`` signed steps of ``step_ratio``·ε through differentiable crop+flip, from a Gaussian start:

* ``pull`` (EntF-Pull): minimise ‖φ(x+δ) − c_{k*}‖², k* the other class whose centroid is nearest the
  current poisoned feature;
* ``push`` (EntF-Push): maximise ‖φ(x+δ) − c_y‖².

Either way the robust features of a class are entangled with another's, which an adversarially trained victim
cannot undo. The MI-UE paper (Table 4) does not say which variant it ran; ``pull`` is the default here.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..checkpoint import Checkpoint
from ..models import frozen
from ..pgd import pgd
from ..settings import setting
from ..train import Recipe, as_float, autocast, extract_features, fit, prepare
from .base import Attack, AttackConfig, project, register, source_model


@dataclass(frozen=True)
class EntFConfig(AttackConfig):
    variant: str = setting("pull", choices=("pull", "push"))
    source_epochs: int = setting(100, low=1, doc="epochs of the adversarially trained reference model")
    source_lr: float = setting(0.1, low=0, low_open=True)
    source_batch_size: int = setting(128, low=1)
    robust_eps: float = setting(4 / 255, low=0, low_open=True, high=1, doc="the reference model's AT budget")
    robust_steps: int = setting(10, low=1)
    iterations: int = setting(300, low=1, doc="signed steps on δ (official --attackiter)")
    step_ratio: float = setting(0.05, low=0, low_open=True, high=1, doc="step = step_ratio · ε (TAP's rule)")
    batch_size: int = setting(512, low=1)
    augment: bool = True
    model: str = "resnet18"
    width: float = setting(1.0, low=0, low_open=True)


def entanglement_loss(features: torch.Tensor, labels: torch.Tensor, centroids: torch.Tensor,
                      variant: str) -> torch.Tensor:
    """The loss PGD descends: pull, squared distance to the nearest other-class centroid; push, minus the
    squared distance to the own-class centroid (both averaged over the batch)."""
    d2 = torch.cdist(features.float(), centroids.float()).pow(2)  # N×C
    if variant == "push":
        return -d2.gather(1, labels[:, None]).mean()
    if variant != "pull":
        raise ValueError(f"variant must be 'pull' or 'push', got {variant!r}")
    other = d2.detach().scatter(1, labels[:, None], float("inf")).argmin(1)
    return d2.gather(1, other[:, None]).mean()


@register
class EntangledFeatures(Attack):
    name = "entf"
    label = "ENTF"
    Config = EntFConfig

    def start(self, data, device, checkpoint):
        from ..defenses.adversarial import AdversarialTraining
        c = self.config
        model = source_model(c, data)
        recipe = Recipe(epochs=c.source_epochs, batch_size=c.source_batch_size, lr=c.source_lr, weight_decay=5e-4,
                        schedule="multistep", milestones=(round(0.75 * c.source_epochs), round(0.9 * c.source_epochs)))
        robust = AdversarialTraining(eps=c.robust_eps, steps=c.robust_steps, step_size=2 / 255)
        src_ckpt = Checkpoint(checkpoint.path.with_name("source.safetensors")) if checkpoint else None
        source_history = fit(model, data, recipe, seed=c.seed, device=device, progress=self.progress,
                             checkpoint=src_ckpt, desc="EntF reference (AT)", hook=robust)
        model = prepare(model, device).eval()
        feats = extract_features(model, data.images, device)
        centroids = torch.stack([feats[data.labels == k].mean(0) for k in range(data.num_classes)]).to(device)
        return self.new_state(data, device, epochs=1, generators={"gen": torch.Generator().manual_seed(c.seed + 1)},
                              tensors={"delta": torch.zeros(data.images.shape, device=device)},
                              extra={"model": model, "centroids": centroids, "source_history": source_history})

    def epoch(self, state, data, r, device):
        c, gen = self.config, state.generators["gen"]
        model, centroids = state.extra["model"], state.extra["centroids"]
        x_all, y_all = state.extra["x"], state.extra["y"]
        losses = []
        with frozen(model):
            for s in range(0, len(x_all), c.batch_size):
                sl = slice(s, s + c.batch_size)
                x, y = as_float(x_all[sl], device), y_all[sl]
                init = project((torch.randn(x.shape, generator=gen) * c.eps).to(device), x, c.eps)

                def loss_fn(inp, y=y):
                    with autocast(device):
                        z = model.features(inp)
                    return entanglement_loss(z, y, centroids, c.variant)

                d, loss = pgd(loss_fn, x, init, eps=c.eps, step_size=c.step_ratio * c.eps, steps=c.iterations,
                              augmentation=data.augmentation if c.augment else None, generator=gen)
                state.delta[sl] = d
                losses.append(float(loss))
        return {"pass": r + 1, "mean_loss": sum(losses) / len(losses)}

    def finish(self, state, data, device):
        return self._poison(data, state.delta, source_history=state.extra["source_history"])
