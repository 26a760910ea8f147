"""The SimCLR contrastive loss (Chen et al., ICML 2020), NT-Xent, written once for every contrastive use.

For 2N views (z1[i] and z2[i] are two views of image i) with cosine similarities s and temperature τ,

    ℓ(i, j) = −log  exp(s_ij/τ) / Σ_{k≠i} exp(s_ik/τ),     L = (1/2N) Σ_i [ℓ(i, i⁺)],

where i⁺ is the other view of i. TUE's backbone and the SimCLR victims of MI-UE's Table 20 use it, with the
SimCLR views of :func:`simclr_augment` (also A-MI-UE's generation augmentation) and :func:`pretrain`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from . import settings
from .settings import setting


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, tau: float = 0.5) -> torch.Tensor:
    """NT-Xent over the 2N views ``z1``, ``z2`` (N×d each; the i-th rows are the positive pair)."""
    if z1.shape != z2.shape or z1.dim() != 2 or len(z1) < 2:
        raise ValueError(f"nt_xent takes two N×d batches of views with N >= 2, got {tuple(z1.shape)} and "
                         f"{tuple(z2.shape)}")
    if not tau > 0:
        raise ValueError(f"the temperature must be positive, got {tau}")
    z = F.normalize(torch.cat([z1, z2]).float(), dim=1)
    n = len(z1)
    s = z @ z.T / tau
    s = s.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
    positive = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(s, positive)


def simclr_augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One SimCLR view of every image of ``x`` (float in [0, 1]), differentiable in ``x``: a random resized crop
    (scale 0.2–1), a horizontal flip, colour jitter (0.4, 0.4, 0.4, 0.1 with probability 0.8; brightness and
    contrast only on grey images) and, for colour images, grey with probability 0.2 (Chen et al., 2020's CIFAR
    recipe, through kornia; its draws seeded from ``generator``)."""
    import kornia.augmentation as K

    size = tuple(x.shape[-2:])
    ops = [K.RandomResizedCrop(size, scale=(0.2, 1.0)), K.RandomHorizontalFlip()]
    if x.shape[1] == 3:
        ops += [K.ColorJitter(0.4, 0.4, 0.4, 0.1, p=0.8), K.RandomGrayscale(p=0.2)]
    else:
        ops += [K.ColorJitter(0.4, 0.4, p=0.8)]
    from .defenses.base import torch_seed
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(torch_seed(generator))
        out = x
        for op in ops:
            out = op(out)
    return out.clamp(0, 1)


@dataclass(frozen=True)
class SimCLRConfig:
    """A SimCLR victim (MI-UE Table 20): contrastive pre-training of the feature extractor on the published
    images, then a linear probe (scikit-learn logistic regression) on its frozen features of the published
    images and their labels, tested on clean test images."""

    epochs: int = setting(100, low=1, doc="contrastive pre-training epochs")
    batch_size: int = setting(256, low=2)
    lr: float = setting(1e-3, low=0, low_open=True, doc="Adam learning rate")
    tau: float = setting(0.5, low=0, low_open=True, doc="NT-Xent temperature")
    projection: int = setting(128, low=1, doc="output size of the two-layer projection head")

    def __post_init__(self):
        settings.check(self)


def pretrain(model, images: torch.Tensor, c: SimCLRConfig, seed: int, device, progress: bool = True,
             checkpoint=None) -> list[dict]:
    """SimCLR pre-training of ``model.features`` (a projection head is trained alongside and dropped)."""
    from .progress import tqdm

    from .train import as_float, prepare
    model = prepare(model, device)
    head = torch.nn.Sequential(torch.nn.Linear(model.feature_dim, model.feature_dim), torch.nn.ReLU(),
                               torch.nn.Linear(model.feature_dim, c.projection)).to(device)
    both = torch.nn.ModuleDict({"model": model, "head": head})  # checkpointed together
    params = list(model.features.parameters()) + list(head.parameters())
    opt = torch.optim.Adam(params, lr=c.lr, weight_decay=1e-6)
    gen = torch.Generator().manual_seed(seed)
    history, start = [], 0
    if checkpoint is not None:
        restored = checkpoint.load(model=both, optimizer=opt, generators={"gen": gen})
        if restored is not None:
            start, _, meta = restored
            history = meta.get("history", [])
    for epoch in tqdm(range(start, c.epochs), desc="SimCLR", initial=start, total=c.epochs, disable=not progress,
                      mininterval=1.0, leave=False):
        model.train()
        total, count = 0.0, 0
        for idx in torch.randperm(len(images), generator=gen).split(c.batch_size):
            if len(idx) < 2:
                continue
            x = as_float(images[idx], device)
            z1 = head(model.features(simclr_augment(x, gen)))
            z2 = head(model.features(simclr_augment(x, gen)))
            loss = nt_xent(z1, z2, c.tau)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total, count = total + loss.item() * len(idx), count + len(idx)
        history.append({"epoch": epoch + 1, "contrastive_loss": total / max(count, 1)})
        if checkpoint is not None:
            checkpoint.save(epoch + 1, model=both, optimizer=opt, generators={"gen": gen}, meta={"history": history})
    return history


def linear_probe(train_features: torch.Tensor, train_labels: torch.Tensor, test_features: torch.Tensor,
                 test_labels: torch.Tensor) -> tuple[float, float]:
    """(train, test) accuracy of a logistic regression on standardised frozen features."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    clf.fit(train_features.numpy(), train_labels.numpy())
    return (float(clf.score(train_features.numpy(), train_labels.numpy())),
            float(clf.score(test_features.numpy(), test_labels.numpy())))
