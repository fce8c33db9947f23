"""Losses as phases: non-saturating logistic loss, lazy R1 and lazy path-length regularization.

Official StyleGAN2-ADA definitions, with StyleGAN3's additions (its `training/loss.py`): a StyleGAN3 generator
tracks its magnitude and w averages only in D main's pass on fakes (`update_emas`), and D may see every image
blurred (StyleGAN3-R: σ fading from 10 to 0). Each phase accumulates gradients for one network and reports
its own statistics through `report(name, tensor)`; the loss knows nothing of optimizers or files.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Protocol, cast

import torch
import torch.nn.functional as F
from torch import nn

from ganforge.nn.compile import compiled

Report = Callable[[str, torch.Tensor], None]


def _noop(name: str, value: torch.Tensor) -> None:
    pass


# ----------------------------------------------------------------------------
# The math, as small functions.


def r1_penalty(real_logits: torch.Tensor, real_img: torch.Tensor) -> torch.Tensor:
    """R1 = Σ_CHW (∂ΣD(x)/∂x)², per sample [N]. `real_img` must require grad."""
    (grads,) = torch.autograd.grad(real_logits.sum(), real_img, create_graph=True, only_inputs=True)
    return grads.square().sum(dim=[1, 2, 3])


def path_lengths(img: torch.Tensor, ws: torch.Tensor) -> torch.Tensor:
    """|J_w^T y|, y ~ N(0, I)/sqrt(HW), averaged over the ws: per sample [N]."""
    noise = torch.randn_like(img) / math.sqrt(img.shape[2] * img.shape[3])
    (grads,) = torch.autograd.grad((img * noise).sum(), ws, create_graph=True, only_inputs=True)
    return grads.square().sum(dim=2).mean(dim=1).sqrt()


def mix_styles(
    mapping: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],  # (z, c) -> ws, tracking no average.
    ws: torch.Tensor,
    z: torch.Tensor,
    c: torch.Tensor,
    prob: float,
) -> torch.Tensor:
    """With probability `prob` per batch, take the ws from a second latent from a random cutoff on."""
    if prob <= 0:
        return ws
    num_ws = ws.shape[1]
    cutoff = torch.empty([], dtype=torch.int64).random_(1, num_ws)
    cutoff = torch.where(torch.rand([]) < prob, cutoff, torch.full_like(cutoff, num_ws))
    ws2 = mapping(torch.randn_like(z), c)
    keep = torch.arange(num_ws)[None, :, None] < cutoff
    return torch.where(keep.to(ws.device), ws, ws2)


def blur_sigma(cur_nimg: int, init_sigma: float, fade_kimg: float) -> float:
    """σ of D's input blur: init_sigma · max(1 − cur_nimg / (fade_kimg · 1000), 0); 0 when fade_kimg is 0."""
    if fade_kimg <= 0:
        return 0.0
    return max(1 - cur_nimg / (fade_kimg * 1e3), 0.0) * init_sigma


def gaussian_blur(img: torch.Tensor, sigma: float) -> torch.Tensor:
    """img ∗ g along x and y, g_k ∝ 2^−(k/σ)² for |k| ≤ ⌊3σ⌋ (normalized), zero padding: [N, C, H, W] kept.

    StyleGAN3-R's blur of the images D sees (official `run_D`); no blur while ⌊3σ⌋ = 0."""
    half = math.floor(sigma * 3)
    if half <= 0:
        return img
    taps = torch.arange(-half, half + 1, dtype=torch.float64).div(sigma).square().neg().exp2()
    taps = (taps / taps.sum()).to(img.device, img.dtype)
    channels = img.shape[1]
    x = F.conv2d(img, taps.view(1, 1, 1, -1).repeat(channels, 1, 1, 1), padding=(0, half), groups=channels)
    return F.conv2d(x, taps.view(1, 1, -1, 1).repeat(channels, 1, 1, 1), padding=(half, 0), groups=channels)


# ----------------------------------------------------------------------------
# Phases.


class GeneratorStep(nn.Module):
    """G for training: (z, c) -> (img, ws) with style mixing. A module so DDP can wrap it. A DCGAN generator
    (no mapping network) gives (img, None): no style mixing, no path length.

    A StyleGAN3 generator (`sg3`) updates its w and magnitude averages only when asked (`update_emas`, D main's
    pass on fakes, as the official StyleGAN3 loss does); a StyleGAN2 one updates w_avg on every training pass.
    """

    def __init__(self, G: nn.Module, style_mixing: float = 0.9, stylegan: bool = True, sg3: bool = False):
        super().__init__()
        self.G, self.style_mixing = G, style_mixing
        self.stylegan = stylegan  # plan.family is stylegan2 or a StyleGAN3 family.
        self.sg3 = sg3  # plan.is_sg3

    def forward(
        self, z: torch.Tensor, c: torch.Tensor, update_emas: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        if not self.stylegan:
            return self.G(z, c if self.G.c_dim else None), None
        mapping, synthesis = cast(nn.Module, self.G.mapping), cast(nn.Module, self.G.synthesis)
        if self.sg3:
            ws = mapping(z, c, update_emas=update_emas)
            ws = mix_styles(lambda z2, c2: mapping(z2, c2, update_emas=False), ws, z, c, self.style_mixing)
        else:
            ws = mapping(z, c)
            ws = mix_styles(lambda z2, c2: mapping(z2, c2, skip_w_avg_update=True), ws, z, c, self.style_mixing)
        if torch.is_grad_enabled() and not ws.requires_grad:  # Frozen mapping: path length still needs d/dws.
            ws = ws.detach().requires_grad_(True)
        return (synthesis(ws, update_emas=update_emas) if self.sg3 else synthesis(ws)), ws


class RealLogitsListener(Protocol):
    """What listens to D's logits on reals (ADA's controller): every D pass on real images, every round."""

    def accumulate(self, real_logits: torch.Tensor) -> None: ...


class StyleGAN2Loss:
    """Phases: Gmain, Greg (path length), Dmain, Dreg (R1). Owns the path-length mean (`state_dict()`).

    `G_train`/`D_train` are the modules whose parameters a phase trains (DDP wrappers in multi-GPU
    runs); the other network is called unwrapped, so DDP only ever sees the network it reduces. `ada`
    (ADA's controller) is shown the sign of D's logits on reals in D main and R1 passes, as the official
    loss reports `Loss/signs/real` from both.
    """

    def __init__(
        self,
        G: GeneratorStep,  # Generator step module.
        D: nn.Module,  # Discriminator.
        G_train: nn.Module | None = None,  # G as trained (DDP wrapper); None = G.
        D_train: nn.Module | None = None,  # D as trained (DDP wrapper); None = D.
        augment: Callable[[torch.Tensor], torch.Tensor] | None = None,  # Applied to everything D sees.
        ada: RealLogitsListener | None = None,  # Shown D's logits on reals (ADA's controller).
        r1_gamma: float = 10.0,  # R1 weight; 0 = off.
        pl_weight: float = 2.0,  # Path-length weight; 0 = off.
        pl_batch_shrink: int = 2,  # Path-length batch = N // this.
        pl_decay: float = 0.01,  # EMA decay of the path-length mean.
        compile: bool = False,  # torch.compile the networks of the main phases (regularization stays eager).
    ):
        self.G, self.D = G, D
        self.G_train, self.D_train = G_train or G, D_train or D
        # Main phases (one backward) may run compiled; R1 and path length need double backward: always eager.
        self.main = {
            name: compiled(net, compile)
            for name, net in (("G_train", self.G_train), ("D_train", self.D_train), ("G", self.G), ("D", self.D))
        }
        self.augment, self.ada = augment, ada
        self.r1_gamma = r1_gamma
        self.blur_sigma = 0.0  # σ of the blur of everything D sees (StyleGAN3-R); set per step (`blur_sigma`).
        self.pl_weight, self.pl_batch_shrink, self.pl_decay = pl_weight, pl_batch_shrink, pl_decay
        device = next(D.parameters()).device
        self.pl_mean = torch.zeros([], device=device)  # EMA of the path lengths (official: starts at 0).

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The loss's own state, for checkpoints: the path-length mean."""
        return {"pl_mean": self.pl_mean.detach().clone()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        value = state.get("pl_mean")
        if not isinstance(value, torch.Tensor) or value.shape != () or not torch.isfinite(value):
            raise ValueError("the loss state needs pl_mean, one finite number")
        self.pl_mean.copy_(value)

    def _real_logits(self, logits: torch.Tensor, report: Report) -> None:
        report("Loss/scores/real", logits.detach())
        report("Loss/signs/real", logits.detach().sign())
        if self.ada is not None:
            self.ada.accumulate(logits.detach())

    def run_D(self, D: nn.Module, img: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        img = gaussian_blur(img, self.blur_sigma)
        if self.augment is not None:
            img = self.augment(img)
        logits = D(img, c if self.D.c_dim else None)
        return logits.flatten(1).mean(1, keepdim=True) if logits.ndim > 2 else logits  # PatchGAN: mean of patches

    def accumulate(
        self,
        phase: str,
        real: torch.Tensor,
        real_c: torch.Tensor,
        gen_z: torch.Tensor,
        gen_c: torch.Tensor,
        gain: float,
        report: Report | None = None,
    ) -> None:
        """Backpropagate one phase's loss × gain into the grads of the phase's network (report: statistics sink)."""
        report = report or _noop
        if phase == "Gmain":
            img, _ = self.main["G_train"](gen_z, gen_c)
            logits = self.run_D(self.main["D"], img, gen_c)
            loss = F.softplus(-logits)  # -log(sigmoid(D(G(z))))
            report("Loss/scores/fake", logits.detach())
            report("Loss/G/loss", loss.detach())
            loss.mean().mul(gain).backward()
        elif phase == "Greg":
            if self.pl_weight == 0 or not self.G.stylegan:
                return
            n = max(gen_z.shape[0] // self.pl_batch_shrink, 1)
            img, ws = self.G_train(gen_z[:n], gen_c[:n])
            lengths = path_lengths(img, ws)
            mean = self.pl_mean.lerp(lengths.mean(), self.pl_decay)
            self.pl_mean.copy_(mean.detach())
            penalty = (lengths - mean).square()
            report("Loss/pl_penalty", penalty.detach())
            (img[:, 0, 0, 0] * 0 + penalty * self.pl_weight).mean().mul(gain).backward()
        elif phase == "Dmain":
            with torch.no_grad():
                img, _ = self.main["G"](gen_z, gen_c, update_emas=True)
            logits = self.run_D(self.main["D_train"], img, gen_c)
            report("Loss/scores/fake", logits.detach())
            F.softplus(logits).mean().mul(gain).backward()  # -log(1 - sigmoid(D(G(z))))
            real_logits = self.run_D(self.main["D_train"], real.detach(), real_c)
            loss_real = F.softplus(-real_logits)  # -log(sigmoid(D(x)))
            self._real_logits(real_logits, report)
            report("Loss/D/loss", (F.softplus(logits) + loss_real).detach())
            loss_real.mean().mul(gain).backward()
        elif phase == "Dreg":
            if self.r1_gamma == 0:
                return
            x = real.detach().requires_grad_(True)
            real_logits = self.run_D(self.D_train, x, real_c)
            self._real_logits(real_logits, report)
            penalty = r1_penalty(real_logits, x)
            report("Loss/r1_penalty", penalty.detach())
            report("Loss/D/reg", (penalty * (self.r1_gamma / 2)).detach())
            (real_logits * 0 + penalty[:, None] * (self.r1_gamma / 2)).mean().mul(gain).backward()
        else:
            raise ValueError(f"unknown phase {phase!r}")
