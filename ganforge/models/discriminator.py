"""StyleGAN2 discriminator: orig / skip / resnet blocks, minibatch-stddev epilogue, projection labels."""

from __future__ import annotations

import math

import torch
from torch import nn

from ganforge.models.generator import MappingNetwork, assert_shape, param_dtype, reduced_dtype
from ganforge.nn import ops
from ganforge.nn.layers import Conv2dLayer, FullyConnectedLayer, MinibatchStd
from ganforge.nn.numerics import Numerics, set_numerics
from ganforge.plan import Plan, block_name, format_resolution


class DiscriminatorBlock(nn.Module):
    resample_filter: torch.Tensor  # Buffer.

    def __init__(
        self,
        in_channels: int,  # 0 = first block (reads the image).
        tmp_channels: int,  # Channels of the block's own resolution.
        out_channels: int,  # Channels after the 2× downsampling.
        img_channels: int,
        architecture: str = "resnet",  # orig | skip | resnet.
        use_fp16: bool = False,
        conv_clamp: float | None = None,
    ):
        super().__init__()
        self.in_channels, self.architecture, self.use_fp16 = in_channels, architecture, use_fp16
        self.register_buffer("resample_filter", ops.setup_filter())
        if in_channels == 0 or architecture == "skip":
            self.fromrgb = Conv2dLayer(
                img_channels, tmp_channels, kernel_size=1, activation="lrelu", conv_clamp=conv_clamp
            )
        self.conv0 = Conv2dLayer(tmp_channels, tmp_channels, kernel_size=3, activation="lrelu", conv_clamp=conv_clamp)
        self.conv1 = Conv2dLayer(
            tmp_channels, out_channels, kernel_size=3, activation="lrelu", down=2, conv_clamp=conv_clamp
        )
        if architecture == "resnet":
            self.skip = Conv2dLayer(tmp_channels, out_channels, kernel_size=1, bias=False, down=2)
        self.numerics = Numerics()  # The network sets its own (ganforge.nn.numerics.set_numerics).

    def forward(self, x, img, dtype=torch.float32):
        if x is not None:
            x = x.to(dtype)
        # FromRGB.
        if self.in_channels == 0 or self.architecture == "skip":
            y = self.fromrgb(img.to(dtype))
            x = x + y if x is not None else y
            fast = self.numerics.fast
            img = ops.downsample2d(img, self.resample_filter, fast=fast) if self.architecture == "skip" else None
        # Main layers.
        if self.architecture == "resnet":
            y = self.skip(x, gain=math.sqrt(0.5))
            x = self.conv0(x)
            x = self.conv1(x, gain=math.sqrt(0.5))
            x = y + x
        else:
            x = self.conv0(x)
            x = self.conv1(x)
        return x, img


class DiscriminatorEpilogue(nn.Module):
    """Base-size block: minibatch stddev, 3×3 conv, fc over the whole map, output (or projection)."""

    def __init__(
        self,
        in_channels: int,
        cmap_dim: int,
        size: tuple[int, int],
        img_channels: int,
        architecture: str = "resnet",
        mbstd_group: int = 4,
        mbstd_channels: int = 1,
        conv_clamp: float | None = None,
        reads_image: bool = False,
    ):
        super().__init__()
        self.in_channels, self.cmap_dim, self.size, self.architecture = in_channels, cmap_dim, tuple(size), architecture
        if architecture == "skip" or reads_image:  # reads_image: a base-size model has no other block.
            self.fromrgb = Conv2dLayer(img_channels, in_channels, kernel_size=1, activation="lrelu")
        self.mbstd = MinibatchStd(mbstd_group or None, mbstd_channels) if mbstd_channels > 0 else None
        self.conv = Conv2dLayer(
            in_channels + mbstd_channels, in_channels, kernel_size=3, activation="lrelu", conv_clamp=conv_clamp
        )
        self.fc = FullyConnectedLayer(in_channels * self.size[0] * self.size[1], in_channels, activation="lrelu")
        self.out = FullyConnectedLayer(in_channels, 1 if cmap_dim == 0 else cmap_dim)

    def forward(self, x, img, cmap):
        if x is not None:
            assert_shape(x, [None, self.in_channels, *self.size], "discriminator epilogue input")
            x = x.to(self.fc.weight.dtype)
        if hasattr(self, "fromrgb"):
            y = self.fromrgb(img.to(self.fc.weight.dtype))
            x = x + y if x is not None else y
        if self.mbstd is not None:
            x = self.mbstd(x)
        x = self.conv(x)
        x = self.fc(x.flatten(1))
        x = self.out(x)
        if self.cmap_dim > 0:
            x = (x * cmap).sum(dim=1, keepdim=True) * (1 / math.sqrt(self.cmap_dim))
        return x


class Discriminator(nn.Module):
    """D(img, c) -> [N, 1] logits. Blocks from the top resolution down to the base (epilogue).

    `ops` ("fast" or "reference") and `cpu_reduced_precision` choose how this network computes
    (`ganforge.nn.numerics`); the Plan's fp16 blocks run in reduced precision on GPUs either way.
    """

    def __init__(self, plan: Plan, *, cpu_reduced_precision: bool = False, ops: str = "fast"):
        super().__init__()
        if plan.family != "stylegan2":
            raise ValueError(f"Discriminator needs a stylegan2 plan, got family={plan.family!r}")
        Numerics(ops, cpu_reduced_precision)  # Checks the values before anything is allocated.
        self.numerics = Numerics()
        self.plan = plan
        self.c_dim, self.img_channels = plan.c_dim, plan.img_channels
        self.img_resolution = max(plan.height, plan.width)
        self.img_shape = (plan.img_channels, plan.height, plan.width)
        cmap_dim = (plan.cmap_dim if plan.cmap_dim is not None else plan.channels[0]) if plan.c_dim > 0 else 0
        self.block_names = []
        top = plan.num_blocks - 1
        for i in range(top, 0, -1):  # Top block first; the base block is the epilogue.
            h, w = plan.block_sizes[i]
            name = block_name(h, w)
            block = DiscriminatorBlock(
                in_channels=plan.channels[i] if i < top else 0,
                tmp_channels=plan.channels[i],
                out_channels=plan.channels[i - 1],
                img_channels=plan.img_channels,
                architecture=plan.d_architecture,
                use_fp16=plan.fp16_block(i),
                conv_clamp=plan.conv_clamp,
            )
            setattr(self, name, block)
            self.block_names.append(name)
        if plan.c_dim > 0:
            self.mapping = MappingNetwork(
                0, plan.c_dim, cmap_dim, num_ws=None, num_layers=plan.d_mapping_layers, w_avg_beta=None
            )
        self.epilogue_name = block_name(plan.base_h, plan.base_w)
        setattr(
            self,
            self.epilogue_name,
            DiscriminatorEpilogue(
                plan.channels[0],
                cmap_dim,
                (plan.base_h, plan.base_w),
                plan.img_channels,
                architecture=plan.d_architecture,
                mbstd_group=plan.mbstd_group,
                mbstd_channels=plan.mbstd_channels,
                conv_clamp=plan.conv_clamp,
                reads_image=(plan.num_blocks == 1),
            ),
        )
        set_numerics(self, ops=ops, cpu_reduced_precision=cpu_reduced_precision)

    def forward(self, img: torch.Tensor, c: torch.Tensor | None = None, force_fp32: bool = False) -> torch.Tensor:
        # [N, C, H, W], [N, c_dim] -> [N, 1]
        if img.ndim != 4 or tuple(img.shape[1:]) != self.img_shape:
            got = list(img.shape)
            hint = ""
            if img.ndim == 4:
                hint = (
                    f" (images are {format_resolution(img.shape[2], img.shape[3])} WxH with {img.shape[1]} "
                    f"channels; this model expects {self.plan.resolution_text} with {self.img_channels}: "
                    f"resize the data with `ganforge dataset prepare --resolution {self.plan.resolution_text}`)"
                )
            want = ", ".join(map(str, self.img_shape))
            raise ValueError(f"discriminator input has shape {got}, expected [N, {want}]{hint}")
        x = None
        img = ops.preferred_layout(img, fast=self.numerics.fast)
        probe = img  # Blocks may consume img (resnet/orig); the dtype decision needs its device.
        full = param_dtype(self)
        for name in self.block_names:
            block = getattr(self, name)
            dtype = reduced_dtype(self.plan, block.use_fp16, probe, force_fp32, self.numerics, full)
            x, img = block(x, img, dtype=dtype)
        cmap = None
        if self.c_dim > 0:
            if c is None:
                raise ValueError(f"this discriminator is conditional (c_dim={self.c_dim}): pass labels c")
            cmap = self.mapping(None, c)
        return getattr(self, self.epilogue_name)(x, img, cmap)
