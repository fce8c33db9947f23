"""DCGAN family built from a Plan: generator, discriminator and a fully convolutional PatchGAN.

Every size comes from the Plan (`block_sizes`, `channels`, `base_h`/`base_w`); no flatten size is
computed by hand. The generator grows a 1×1 latent into the base map with one transposed conv whose
kernel is the base size, then doubles it once per Plan block; the discriminator mirrors it and ends
with a conv whose kernel is the base size, so any base·2^k resolution (square or not) works.

Modules are named after their block (b4, b8, …, b32x64), so `print(G)` and state-dict keys show the
structure: `b8.conv.weight` is the transposed conv that makes the 8×8 map.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from ganforge.models.generator import assert_shape
from ganforge.plan import Plan, block_name, decompose, format_resolution

INIT_STD = 0.02  # DCGAN paper: every weight ~ N(0, 0.02), BatchNorm scale ~ N(1, 0.02).
LRELU_SLOPE = 0.2  # Discriminator LeakyReLU slope.


# ----------------------------------------------------------------------------
# Shared helpers.


def dcgan_init_(module: nn.Module) -> None:
    """DCGAN initialization, for `model.apply(dcgan_init_)`: N(0, 0.02) weights, N(1, 0.02) norms, zero biases."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.normal_(module.weight, 0.0, INIT_STD)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, INIT_STD)
        nn.init.zeros_(module.bias)


def conv_block(conv: nn.Conv2d | nn.ConvTranspose2d, norm: bool, act: nn.Module | None) -> nn.Sequential:
    """conv -> (BatchNorm) -> (activation), with the names conv / norm / act in the state dict."""
    layers: OrderedDict[str, nn.Module] = OrderedDict(conv=conv)
    if norm:
        layers["norm"] = nn.BatchNorm2d(conv.out_channels)
    if act is not None:
        layers["act"] = act
    return nn.Sequential(layers)


def require_dcgan(plan: Plan, who: str) -> None:
    if plan.family != "dcgan":
        raise ValueError(
            f"{who} needs a dcgan plan, got family={plan.family!r}: build it with make_plan(..., family='dcgan')"
        )


def check_labels(c: torch.Tensor | None, c_dim: int, n: int, who: str) -> torch.Tensor | None:
    """Labels [N, c_dim] for a conditional model; None (or [N, 0]) for an unconditional one."""
    if c_dim == 0:
        if c is not None and c.numel() > 0:
            raise ValueError(
                f"{who} is unconditional (c_dim=0) but got labels of shape {list(c.shape)}: "
                f"pass c=None, or build the model with c_dim={c.shape[-1]}"
            )
        return None
    if c is None:
        raise ValueError(f"{who} is conditional (c_dim={c_dim}): pass one-hot labels c of shape [N, {c_dim}]")
    assert_shape(c, [n, c_dim], f"{who} labels c")
    return c


def projection(embed: nn.Linear, c: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """Projection-discriminator term <embed(c), h> over channels: h [N, C, H, W] -> [N, H, W]."""
    e = embed(c.to(h.dtype))  # [N, C]
    return (e[:, :, None, None] * h).sum(dim=1)


# ----------------------------------------------------------------------------
# Generator.


class DCGANGenerator(nn.Module):
    """G(z, c) -> [N, img_channels, H, W] in [-1, 1]. One-hot labels are concatenated to z."""

    def __init__(self, plan: Plan):
        super().__init__()
        require_dcgan(plan, "DCGANGenerator")
        self.plan = plan
        self.z_dim, self.c_dim, self.img_channels = plan.z_dim, plan.c_dim, plan.img_channels
        self.img_resolution = max(plan.height, plan.width)
        self.img_shape = (plan.img_channels, plan.height, plan.width)
        self.block_names = plan.block_names

        # Base block: [N, z_dim + c_dim, 1, 1] -> [N, C0, base_h, base_w].
        base = nn.ConvTranspose2d(
            plan.z_dim + plan.c_dim,  # Latent (and label) features as a 1×1 map.
            plan.channels[0],  # Feature maps of the base block.
            kernel_size=(plan.base_h, plan.base_w),  # 1×1 -> base map in one step.
            bias=False,  # BatchNorm follows.
        )
        setattr(self, self.block_names[0], conv_block(base, norm=True, act=nn.ReLU()))

        # Upsampling blocks: [N, C(i-1), h, w] -> [N, C(i), 2h, 2w].
        for i in range(1, plan.num_blocks):
            up = nn.ConvTranspose2d(
                plan.channels[i - 1],  # Feature maps of the block below.
                plan.channels[i],  # Feature maps of this block.
                kernel_size=4,  # (h-1)·2 - 2·1 + 4 = 2h: exact doubling.
                stride=2,
                padding=1,
                bias=False,  # BatchNorm follows.
            )
            setattr(self, self.block_names[i], conv_block(up, norm=True, act=nn.ReLU()))

        # To image: [N, C(top), H, W] -> [N, img_channels, H, W].
        torgb = nn.Conv2d(plan.channels[-1], plan.img_channels, kernel_size=3, padding=1)
        self.torgb = conv_block(torgb, norm=False, act=nn.Tanh())
        self.apply(dcgan_init_)

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        # z [N, z_dim], c [N, c_dim] -> [N, C, H, W]
        assert_shape(z, [None, self.z_dim], "DCGANGenerator latent z")
        c = check_labels(c, self.c_dim, z.shape[0], "DCGANGenerator")
        x = z if c is None else torch.cat([z, c.to(z.dtype)], dim=1)
        x = x[:, :, None, None]  # [N, z_dim + c_dim, 1, 1]
        for name in self.block_names:
            x = getattr(self, name)(x)
        return self.torgb(x)

    def extra_repr(self) -> str:
        return f"z_dim={self.z_dim}, c_dim={self.c_dim}, img_shape={self.img_shape}"


# ----------------------------------------------------------------------------
# Discriminator.


def image_size_error(who: str, plan: Plan, img: torch.Tensor) -> ValueError:
    """A ValueError naming the received and expected image sizes (WxH) and how to make them agree."""
    if img.ndim != 4:
        return ValueError(
            f"{who} input has shape {list(img.shape)}: expected images [N, {plan.img_channels}, "
            f"{plan.height}, {plan.width}]"
        )
    c, h, w = (int(v) for v in img.shape[1:])
    got, want = format_resolution(h, w), plan.resolution_text
    if c != plan.img_channels:
        return ValueError(
            f"{who} got images with {c} channel(s), expected {plan.img_channels}: build the model with "
            f"img_channels={c}, or prepare the data with --channels {plan.img_channels}"
        )
    fix = f"resize the data with `ganforge dataset prepare SRC DEST --resolution {want}`"
    if decompose(h, w) is not None:
        fix += f", or build the model at --resolution {got}"
    return ValueError(f"{who} got images of {got} (WxH), expected {want}: {fix}")


class DCGANDiscriminator(nn.Module):
    """D(img, c) -> [N, 1] logits. Strided conv blocks from the top block down to the base map.

    Conditional plans use a projection discriminator: <embed(c), mean_HW(features)> is added to the logit.
    """

    def __init__(self, plan: Plan):
        super().__init__()
        require_dcgan(plan, "DCGANDiscriminator")
        self.plan = plan
        self.c_dim, self.img_channels = plan.c_dim, plan.img_channels
        self.img_resolution = max(plan.height, plan.width)
        self.img_shape = (plan.img_channels, plan.height, plan.width)

        # Downsampling blocks, named after the size they read: [N, C(i) or img, h, w] -> [N, C(i-1), h/2, w/2].
        self.block_names: list[str] = []
        top = plan.num_blocks - 1
        for i in range(top, 0, -1):
            first = i == top
            down = nn.Conv2d(
                plan.img_channels if first else plan.channels[i],  # The image, or this block's features.
                plan.channels[i - 1],  # Feature maps of the block below.
                kernel_size=4,  # (h + 2·1 - 4) / 2 + 1 = h/2: exact halving.
                stride=2,
                padding=1,
                bias=first,  # BatchNorm follows everywhere but on the image.
            )
            name = block_name(*plan.block_sizes[i])
            setattr(self, name, conv_block(down, norm=not first, act=nn.LeakyReLU(LRELU_SLOPE)))
            self.block_names.append(name)

        # Output: [N, C0, base_h, base_w] -> [N, 1, 1, 1]. With a single block, it reads the image itself.
        self.feature_channels = plan.channels[0] if plan.num_blocks > 1 else plan.img_channels
        out = nn.Conv2d(self.feature_channels, 1, kernel_size=(plan.base_h, plan.base_w))
        self.out_name = block_name(plan.base_h, plan.base_w)
        setattr(self, self.out_name, conv_block(out, norm=False, act=None))
        if plan.c_dim > 0:
            self.embed = nn.Linear(plan.c_dim, self.feature_channels, bias=False)  # One-hot c -> class vector.
        self.apply(dcgan_init_)

    def forward(self, img: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        # img [N, C, H, W], c [N, c_dim] -> [N, 1]
        if img.ndim != 4 or tuple(img.shape[1:]) != self.img_shape:
            raise image_size_error("DCGANDiscriminator", self.plan, img)
        c = check_labels(c, self.c_dim, img.shape[0], "DCGANDiscriminator")
        x = img
        for name in self.block_names:
            x = getattr(self, name)(x)
        logits = getattr(self, self.out_name)(x).flatten(1)  # [N, 1]
        if c is not None:
            pooled = x.mean(dim=[2, 3], keepdim=True)  # [N, C0, 1, 1]
            logits = logits + projection(self.embed, c, pooled).flatten(1)
        return logits

    def extra_repr(self) -> str:
        return f"c_dim={self.c_dim}, img_shape={self.img_shape}"


# ----------------------------------------------------------------------------
# PatchGAN discriminator.


class PatchDiscriminator(nn.Module):
    """Fully convolutional PatchGAN (pix2pix): D(img, c) -> [N, 1, h, w] logits, one per receptive field.

    `n_layers` stride-2 convs (BatchNorm from the second), channel count doubling from the Plan's top-block
    channels up to the Plan's widest block, then two stride-1 convs. Any input of at least `min_size` on
    each side works; each output pixel judges a 70×70 patch with n_layers=3. Conditional plans add a
    projection term per patch.
    """

    KERNEL, PADDING = 4, 1  # Every conv: k=4, p=1.
    out: nn.Sequential  # The logits conv (set by name in __init__).
    embed: nn.Linear  # Conditional plans.

    def __init__(
        self,
        plan: Plan,  # Reads img_channels, c_dim and channels (width of the first and widest layers).
        n_layers: int = 3,  # Stride-2 convs; each doubles the receptive field (3 -> 70×70 patches).
    ):
        super().__init__()
        if n_layers < 1:
            raise ValueError(f"PatchDiscriminator needs n_layers >= 1, got {n_layers}")
        self.plan, self.n_layers = plan, n_layers
        self.c_dim, self.img_channels = plan.c_dim, plan.img_channels
        width, cap = plan.channels[-1], max(plan.channels)  # First-layer width, channel cap.

        strides = [2] * n_layers + [1, 1]  # The last stride-1 conv gives the logits.
        self.layer_names: list[str] = []
        in_ch = plan.img_channels
        for i, stride in enumerate(strides):
            is_out = i == len(strides) - 1
            out_ch = 1 if is_out else min(width * 2**i, cap)
            conv = nn.Conv2d(
                in_ch, out_ch, self.KERNEL, stride=stride, padding=self.PADDING, bias=i == 0 or is_out
            )  # BatchNorm follows all other convs.
            act = None if is_out else nn.LeakyReLU(LRELU_SLOPE)
            name = "out" if is_out else f"layer{i}"
            setattr(self, name, conv_block(conv, norm=0 < i and not is_out, act=act))
            self.layer_names.append(name)
            if is_out:
                self.feature_channels = in_ch  # Features under the logits (projection width).
            in_ch = out_ch
        self.strides = strides
        self.min_size = self.smallest_input()
        if plan.c_dim > 0:
            self.embed = nn.Linear(plan.c_dim, self.feature_channels, bias=False)
        self.apply(dcgan_init_)

    def smallest_input(self) -> int:
        """Smallest side that leaves at least one logit: walk the conv arithmetic back from a 1×1 output."""
        size = 1
        for stride in reversed(self.strides):
            # out = (in + 2p - k) // s + 1 >= size  <=>  in >= (size - 1)·s + k - 2p
            size = (size - 1) * stride + self.KERNEL - 2 * self.PADDING
        return size

    def forward(self, img: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        # img [N, C, H, W], c [N, c_dim] -> [N, 1, h, w]
        assert_shape(img, [None, self.img_channels, None, None], "PatchDiscriminator input")
        h, w = img.shape[2], img.shape[3]
        if min(h, w) < self.min_size:
            m = self.min_size
            raise ValueError(
                f"PatchDiscriminator with n_layers={self.n_layers} needs images of at least {m}x{m} (WxH), "
                f"got {format_resolution(h, w)}: use larger images or fewer layers (n_layers)"
            )
        c = check_labels(c, self.c_dim, img.shape[0], "PatchDiscriminator")
        x = img
        for name in self.layer_names[:-1]:
            x = getattr(self, name)(x)
        logits = self.out(x)  # [N, 1, h', w']
        if c is not None:
            # Per-patch projection: each logit's 4×4 window of features, averaged, dotted with embed(c).
            pooled = nn.functional.avg_pool2d(x, self.KERNEL, stride=1, padding=self.PADDING, count_include_pad=False)
            logits = logits + projection(self.embed, c, pooled).unsqueeze(1)
        return logits

    def extra_repr(self) -> str:
        return f"n_layers={self.n_layers}, c_dim={self.c_dim}, min_size={self.min_size}"
