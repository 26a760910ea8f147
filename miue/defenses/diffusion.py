"""Diffusion purification: AVA (Dolatabadi et al., SaTML 2024, "The devil's advocate: shattering the illusion
of unexploitable data using diffusion models") and LE (Jiang et al., ACM MM 2023, "Unlearnable examples give
a false sense of security: piercing through unexploitable data with learnable examples").

Both need a denoising diffusion model trained on clean data. No pretrained weights can be downloaded here, so
the defender trains its own (:func:`train_denoiser`): diffusers' ``UNet2DModel`` (class-conditional, with a
"no label" class for unconditional use) and ``DDPMScheduler`` (1,000 steps, linear β from 1e-4 to 0.02, the
discrete form of the VP-SDE's β 0.1 → 20 that AVA's score model uses), ε-prediction, on a clean split of the
same distribution disjoint from the published training set (:class:`miue.specs.DenoiserSpec`). It is far
smaller and shorter-trained than the published CIFAR-10 score models: the chapters say so.

* **AVA** diffuses each published image to step t* (100 of 1,000: the released CIFAR-10 files) and runs the
  reverse chain back to 0, unconditionally, with ``reverse_steps`` DDPM steps respaced over [0, t*]
  (DiffPure integrates the reverse SDE with small Euler steps; 20 respaced ancestral steps at the cpu profile).
* **LE** repeats ``rounds`` (4) times: diffuse the current image to step t* (20) and denoise back,
  conditioned on the published label, with a guidance step toward the equally diffused published image after
  every reverse step, x ← x − s·(x_t − UE_t). The official guidance adds an LPIPS term computed with an
  ImageNet-pretrained AlexNet that cannot be had offline: pixel (MSE) guidance only, a stated deviation; its
  scale s is this project's choice.

The purified set is the state of the purifier run (purification, not a fit, is the expensive step).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from ..progress import tqdm

from ..settings import setting
from .base import Defense, DefenseConfig, register

TIMESTEPS = 1000


def build_unet(channels: int, num_classes: int, width: int):
    """diffusers' UNet2DModel at 32×32 (images are padded to it), three resolutions, class-conditional with
    one extra "no label" class."""
    from diffusers import UNet2DModel
    return UNet2DModel(sample_size=32, in_channels=channels, out_channels=channels,
                       block_out_channels=(width, 2 * width, 2 * width), layers_per_block=1,
                       down_block_types=("DownBlock2D",) * 3, up_block_types=("UpBlock2D",) * 3,
                       num_class_embeds=num_classes + 1, norm_num_groups=min(8, width))


def scheduler():
    from diffusers import DDPMScheduler
    return DDPMScheduler(num_train_timesteps=TIMESTEPS, beta_schedule="linear", beta_start=1e-4, beta_end=0.02)


def _to_model(images: torch.Tensor) -> torch.Tensor:
    """uint8 (or [0, 1] float) N×C×H×W → [-1, 1] float padded to 32×32 (padding is black)."""
    x = images.float() / 255 if images.dtype == torch.uint8 else images.float()
    h, w = x.shape[-2:]
    if h > 32 or w > 32:
        raise ValueError(f"the denoiser works on images up to 32×32, got {h}×{w}")
    top, left = (32 - h) // 2, (32 - w) // 2
    return F.pad(x * 2 - 1, (left, 32 - w - left, top, 32 - h - top), value=-1.0)


def _from_model(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    top, left = (32 - h) // 2, (32 - w) // 2
    x = x[..., top:top + h, left:left + w]
    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


@dataclass(frozen=True)
class DenoiserSettings:
    """How the defender's diffusion model is trained (one model per dataset and held-out split)."""

    images: int = 4000
    steps: int = 3000
    batch_size: int = 64
    lr: float = 5e-4
    width: int = 32
    label_dropout: float = 0.1
    seed: int = 0


def train_denoiser(images: torch.Tensor, labels: torch.Tensor, num_classes: int, s: DenoiserSettings,
                   device: torch.device, progress: bool = True) -> tuple[dict, list[float]]:
    """ε-prediction DDPM training on clean ``images``; returns (UNet state, loss per 100 steps)."""
    g = torch.Generator().manual_seed(s.seed)
    torch.manual_seed(s.seed)
    unet = build_unet(images.shape[1], num_classes, s.width).to(device)
    sched = scheduler()
    opt = torch.optim.Adam(unet.parameters(), lr=s.lr)
    lr_at = torch.optim.lr_scheduler.CosineAnnealingLR(opt, s.steps)
    x0_all = _to_model(images)
    losses, running = [], 0.0
    unet.train()
    for step in tqdm(range(s.steps), desc="denoiser", disable=not progress, mininterval=1.0, leave=False):
        idx = torch.randint(0, len(x0_all), (s.batch_size,), generator=g)
        x0 = x0_all[idx].to(device)
        y = labels[idx].clone()
        y[torch.rand(len(y), generator=g) < s.label_dropout] = num_classes  # the "no label" class
        noise = torch.randn(x0.shape, generator=g).to(device)
        t = torch.randint(0, TIMESTEPS, (len(x0),), generator=g).to(device)
        pred = unet(sched.add_noise(x0, noise, t), t, class_labels=y.to(device)).sample
        loss = F.mse_loss(pred, noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        lr_at.step()
        running += loss.item()
        if (step + 1) % 100 == 0:
            losses.append(running / 100)
            running = 0.0
    return {k: v.detach().cpu() for k, v in unet.state_dict().items()}, losses


def load_unet(state: dict, channels: int, num_classes: int, width: int, device: torch.device):
    unet = build_unet(channels, num_classes, width)
    unet.load_state_dict(state)
    return unet.to(device).eval()


def _respaced(t_star: int, steps: int) -> list[int]:
    ts = torch.linspace(t_star - 1, 0, steps).round().long().unique().flip(0).tolist()
    return ts


@torch.no_grad()
def denoise(unet, x_t: torch.Tensor, timesteps: list[int], labels: torch.Tensor, generator: torch.Generator,
            guide: torch.Tensor | None = None, noise: torch.Tensor | None = None, scale: float = 0.0):
    """Reverse DDPM steps over ``timesteps`` (descending, starting at x_t's step). With ``guide`` (the clean
    reference at step 0) and ``noise``, each step is followed by x ← x − scale·(x − guide_t), guide_t the
    reference diffused with the same noise to the step reached."""
    sched = scheduler()
    sched.set_timesteps(timesteps=timesteps)
    x = x_t
    for i, t in enumerate(timesteps):
        tt = torch.full((len(x),), t, dtype=torch.long, device=x.device)
        eps = unet(x, tt, class_labels=labels).sample
        x = sched.step(eps, t, x, generator=generator).prev_sample
        if guide is not None and scale > 0:
            nxt = timesteps[i + 1] if i + 1 < len(timesteps) else None
            ref = guide if nxt is None else sched.add_noise(guide, noise, torch.full((len(x),), nxt, dtype=torch.long))
            x = x - scale * (x - ref)
    return x


class DiffusionPurifier(Defense):
    """The shared part of AVA and LE: the denoiser they need and batched purification."""

    kind = "data"
    fitted = True
    needs_denoiser = True

    def denoiser_settings(self) -> DenoiserSettings:
        c = self.config
        return DenoiserSettings(images=c.denoiser_images, steps=c.denoiser_steps, width=c.denoiser_width)

    def fit(self, images, labels, device, denoiser=None, progress: bool = False):
        if denoiser is None:
            raise ValueError(f"{self.label} purifies with a denoiser trained on clean held-out data: run it as a "
                             "victim's defense (the run store trains the denoiser), or pass denoiser=(state, "
                             "num_classes)")
        state, num_classes = denoiser
        unet = load_unet(state, images.shape[1], num_classes, self.config.denoiser_width, device)
        g = torch.Generator().manual_seed(self.config.seed)
        out = []
        batches = torch.arange(len(images)).split(self.config.batch_size)
        for idx in tqdm(batches, desc=f"{self.name} purify", disable=not progress, mininterval=1.0, leave=False):
            x = _to_model(images[idx]).to(device)
            out.append(_from_model(self.purify_batch(unet, x, labels[idx].to(device), num_classes, g).cpu(),
                                   *images.shape[-2:]))
        return {"purified": torch.cat(out)}

    def purify(self, images, state=None):
        if state is None or "purified" not in state:
            raise ValueError(f"{self.label}'s purified set is the state its fit returned: pass it")
        if state["purified"].shape != images.shape:
            raise ValueError(f"this {self.label} purification is of {tuple(state['purified'].shape)} images, "
                             f"not {tuple(images.shape)}")
        return state["purified"].clone()

    @property
    def relative_cost(self) -> float:
        return 1.5  # the victim; purification is the purifier run's


@dataclass(frozen=True)
class DiffusionConfig(DefenseConfig):
    """What AVA and LE share: the purification batch and the denoiser (one run for both when these agree)."""

    batch_size: int = setting(500, low=1)
    denoiser_images: int = setting(4000, low=10, doc="clean held-out images the denoiser learns from")
    denoiser_steps: int = setting(3000, low=1, doc="training steps of the denoiser (batch 64)")
    denoiser_width: int = setting(32, low=4, doc="channels of the denoiser's first level")


@dataclass(frozen=True)
class AVAConfig(DiffusionConfig):
    t_star: int = setting(100, low=1, high=TIMESTEPS, doc="diffusion depth t* of 1,000 (AVATAR's files: 100)")
    reverse_steps: int = setting(20, low=1, doc="DDPM steps respaced over [0, t*] on the way back")


@register
class AVA(DiffusionPurifier):
    name = "ava"
    label = "AVA"
    Config = AVAConfig

    def purify_batch(self, unet, x, labels, num_classes, g):
        c = self.config
        noise = torch.randn(x.shape, generator=g).to(x.device)
        x_t = scheduler().add_noise(x, noise, torch.full((len(x),), c.t_star - 1, dtype=torch.long))
        unconditional = torch.full_like(labels, num_classes)
        return denoise(unet, x_t, _respaced(c.t_star, c.reverse_steps), unconditional, g)


@dataclass(frozen=True)
class LEConfig(DiffusionConfig):
    rounds: int = setting(4, low=1, doc="diffuse-and-denoise rounds (official max_iter: 4)")
    t_star: int = setting(20, low=1, high=TIMESTEPS, doc="diffusion depth of each round (official: 20)")
    reverse_steps: int = setting(20, low=1, doc="reverse steps per round, respaced over [0, t*]")
    guidance: float = setting(0.1, low=0, high=1, doc="pixel guidance scale s toward the diffused published image")


@register
class LE(DiffusionPurifier):
    name = "le"
    label = "LE"
    Config = LEConfig

    def purify_batch(self, unet, x, labels, num_classes, g):
        c = self.config
        ue, cur = x, x
        for _ in range(c.rounds):
            noise = torch.randn(x.shape, generator=g).to(x.device)
            start = torch.full((len(x),), c.t_star - 1, dtype=torch.long)
            x_t = scheduler().add_noise(cur, noise, start)
            cur = denoise(unet, x_t, _respaced(c.t_star, c.reverse_steps), labels, g, guide=ue, noise=noise,
                          scale=c.guidance)
        return cur
