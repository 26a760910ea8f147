"""OP, orthogonal projection (Sandoval-Segura et al., NeurIPS 2023, "What can we learn from unlearnable
datasets?") as a fitted data-side defense.

Fit: a bias-free linear classifier W ∈ R^{C×d} on the flattened published images (logistic regression; no
augmentation or normalisation; 20 epochs, batch 1024, SGD lr 0.1 ×0.1 at 50% and 75% of the epochs, the
official step 1). Purify: orthonormalise W's rows by QR and remove their span from every image,
x ← x − Q Qᵀ x (step 2). A linearly separable (class-wise) poison lives largely in that span. The projected
images leave the pixel box, so the purified set is float32 on the [0, 1] pixel scale; test images are not
projected (as in the official code).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..settings import setting
from .base import Defense, DefenseConfig, register


@dataclass(frozen=True)
class ProjectionConfig(DefenseConfig):
    epochs: int = setting(20, low=1, doc="epochs of the linear model")
    batch_size: int = setting(1024, low=1)
    lr: float = setting(0.1, low=0, low_open=True)


def _flat(images: torch.Tensor) -> torch.Tensor:
    x = images.float()
    return (x / 255 if images.dtype == torch.uint8 else x).flatten(1)


@register
class OrthogonalProjection(Defense):
    name = "op"
    label = "OP"
    kind = "data"
    fitted = True
    Config = ProjectionConfig

    def fit(self, images, labels, device):
        c = self.config
        x, y = _flat(images).to(device), labels.to(device)
        num_classes = int(labels.max()) + 1
        w = torch.zeros(num_classes, x.shape[1], device=device, requires_grad=True)
        opt = torch.optim.SGD([w], lr=c.lr)
        sched = torch.optim.lr_scheduler.MultiStepLR(opt, [c.epochs // 2, (3 * c.epochs) // 4], 0.1)
        g = torch.Generator().manual_seed(c.seed)
        for _ in range(c.epochs):
            for idx in torch.randperm(len(x), generator=g).split(c.batch_size):
                loss = F.cross_entropy(x[idx] @ w.T, y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
            sched.step()
        with torch.no_grad():
            acc = ((x @ w.T).argmax(1) == y).float().mean()
        return {"weights": w.detach(), "train_acc": acc.reshape(1)}

    @staticmethod
    def basis(weights: torch.Tensor) -> torch.Tensor:
        """d×C orthonormal basis of the span of the linear model's class directions (QR)."""
        q, _ = torch.linalg.qr(weights.T.double())
        return q.float()

    def purify(self, images, state=None):
        if state is None or "weights" not in state:
            raise ValueError("OP purifies with the weights of its fitted linear model: pass the state fit returned")
        q = self.basis(state["weights"].cpu())
        x = _flat(images)
        return (x - (x @ q) @ q.T).view(images.shape).contiguous()
