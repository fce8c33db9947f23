"""StyleGAN3 generator (Karras et al. 2021, "Alias-Free Generative Adversarial Networks"): T and R configs.

G(z, c) = synthesis(mapping(z, c)). The synthesis network starts from Fourier features (`synthesis.input`),
rotated and translated by w, runs `sg3_layers` alias-free layers (modulated conv, then the filtered leaky
ReLU of `ganforge.nn.filtered`), and ends with a linear 1×1 ToRGB layer scaled by `output_scale`. The layout
of every layer (cutoffs, sampling rates, sizes, channels, filters) comes from the Plan (`ganforge.plan_sg3`).

State-dict keys and shapes equal the official `networks_stylegan3.Generator`'s: mapping.fc0.weight,
mapping.w_avg, synthesis.input.{weight, affine.*, transform, freqs, phases},
synthesis.L0_36_512.{weight, bias, affine.*, magnitude_ema, up_filter, down_filter}, …, so official weights
load with strict=True. Networks compute in their weights' dtype (float64 after `.double()`); the Plan's
top `num_fp16_res` sampling rates run in reduced precision on GPUs.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ganforge.models.generator import MappingNetwork, assert_shape, param_dtype, reduced_dtype
from ganforge.nn.filtered import filter_buffer, filtered_lrelu, lowpass_filter
from ganforge.nn.layers import FullyConnectedLayer
from ganforge.nn.numerics import Numerics, set_numerics
from ganforge.plan import Plan, PlanError, make_plan
from ganforge.plan_compare import compare_num_ws
from ganforge.plan_sg3 import SG3Layer

# ----------------------------------------------------------------------------
# Math.


def modulated_conv2d(
    x: torch.Tensor,  # [N, I, H, W]
    weight: torch.Tensor,  # [O, I, k, k]
    styles: torch.Tensor,  # [N, I]
    input_gain: torch.Tensor,  # [] scale of the input (1 / RMS of the inputs seen in training).
    demodulate: bool = True,
    padding: int = 0,
) -> torch.Tensor:
    """y = conv(x · s · g, ŵ) · d,  with d_o = (Σ_i,k (ŵ_oik ŝ_i)² + 1e-8)^-½ when demodulating.

    Before demodulating, the weights are scaled to unit RMS per output channel (ŵ) and the styles to unit
    RMS over the whole batch (ŝ), which keeps float16 in range and only changes the result through the ε.
    The styles scale the input rather than the weights, so one convolution serves the whole batch.
    """
    if demodulate:
        weight = weight * weight.square().mean([1, 2, 3], keepdim=True).rsqrt()
        styles = styles * styles.square().mean().rsqrt()
    scale = (styles * input_gain).to(x.dtype)
    y = nn.functional.conv2d(x * scale[:, :, None, None], weight.to(x.dtype), padding=padding)  # [NOHW]
    if demodulate:
        dcoefs = (weight.square().sum([2, 3]) @ styles.square().t() + 1e-8).rsqrt()  # [ON]
        y = y * dcoefs.t().to(y.dtype)[:, :, None, None]
    return y


# ----------------------------------------------------------------------------
# Mapping network.


class StyleGAN3Mapping(MappingNetwork):
    """The StyleGAN2 mapping (same parameters), with w_avg tracked when asked (`update_emas`), as in StyleGAN3."""

    def forward(
        self,
        z: torch.Tensor | None,  # [N, z_dim]
        c: torch.Tensor | None = None,  # [N, c_dim]; None when c_dim = 0.
        truncation_psi: float = 1.0,  # 1 = off; 0 = every w is w_avg.
        truncation_cutoff: int | None = None,  # Truncate only the first N ws; None = all.
        update_emas: bool = False,  # Track w_avg (training passes).
    ) -> torch.Tensor:
        ws = super().forward(z, c, skip_w_avg_update=True)  # [N, num_ws, w_dim], all rows equal.
        if update_emas:
            assert self.w_avg_beta is not None  # Always set: the Plan's w_avg_beta.
            self.w_avg.copy_(ws[:, 0].detach().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))
        return self.truncate(ws, truncation_psi, truncation_cutoff)


# ----------------------------------------------------------------------------
# Synthesis input and layers.


class SynthesisInput(nn.Module):
    """Fourier features: sin(2π(f·x + φ)) for `channels` frequencies f drawn uniformly from the disc of radius
    `bandwidth`, on a `size`² grid sampled at `sampling_rate`, rotated and translated by w, then mixed by a
    learned [C, C] matrix.

    `transform` is a 3×3 inverse transform of the output image (identity by default; set it to rotate or
    translate the image, as the official gen_images.py does); out-of-band frequencies it makes are faded out.
    """

    transform: torch.Tensor  # Buffer [3, 3].
    freqs: torch.Tensor  # Buffer [C, 2] (x, y) in cycles per unit.
    phases: torch.Tensor  # Buffer [C] in cycles.

    def __init__(self, w_dim: int, channels: int, size: int, sampling_rate: float, bandwidth: float):
        super().__init__()
        self.w_dim, self.channels, self.size = w_dim, channels, size
        self.sampling_rate, self.bandwidth = sampling_rate, bandwidth
        angle = 2 * math.pi * torch.rand([channels])
        radius = bandwidth * torch.rand([channels]).sqrt()  # sqrt(U): uniform density over the disc.
        self.register_buffer("freqs", torch.stack([angle.cos(), angle.sin()], dim=1) * radius[:, None])
        self.register_buffer("phases", torch.rand([channels]) - 0.5)
        self.register_buffer("transform", torch.eye(3))
        self.weight = nn.Parameter(torch.randn([channels, channels]))
        self.affine = FullyConnectedLayer(w_dim, 4)  # w -> (cos, sin, tx, ty); starts at no rotation or shift.
        with torch.no_grad():
            self.affine.weight.zero_()
            assert self.affine.bias is not None
            self.affine.bias.copy_(torch.tensor([1.0, 0.0, 0.0, 0.0]))

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        # [N, w_dim] -> [N, C, size, size]
        # Rotation and translation from w (inverse, with respect to the image), then the user's transform.
        t = self.affine(w)
        t = t / t[:, :2].norm(dim=1, keepdim=True)
        cos, sin, tx, ty = t.unbind(dim=1)
        zero, one = torch.zeros_like(cos), torch.ones_like(cos)
        rotate = torch.stack([cos, -sin, zero, sin, cos, zero, zero, zero, one], dim=1).reshape(-1, 3, 3)
        shift = torch.stack([one, zero, -tx, zero, one, -ty, zero, zero, one], dim=1).reshape(-1, 3, 3)
        m = rotate @ shift @ self.transform.to(t.dtype)  # [N, 3, 3]

        # Frequencies and phases in image coordinates; fade what the transform pushed out of band.
        freqs = self.freqs.to(t.dtype)
        phases = self.phases.to(t.dtype)[None] + (freqs[None] @ m[:, :2, 2:]).squeeze(2)  # [N, C]
        freqs = freqs[None] @ m[:, :2, :2]  # [N, C, 2]
        fade = (freqs.norm(dim=2) - self.bandwidth) / (self.sampling_rate / 2 - self.bandwidth)
        amplitudes = (1 - fade).clamp(0, 1)  # [N, C]

        # Features on the pixel-centre grid, centred on the image: coordinates in units of 1 / sampling_rate.
        coords = (torch.arange(self.size, device=w.device, dtype=t.dtype) + 0.5 - self.size / 2) / self.sampling_rate
        gx, gy = coords[None, None, :, None], coords[None, :, None, None]
        fx, fy = freqs[:, None, None, :, 0], freqs[:, None, None, :, 1]
        x = gx * fx + gy * fy + phases[:, None, None, :]  # [N, H, W, C]
        x = torch.sin(x * (2 * math.pi)) * amplitudes[:, None, None, :]
        x = x @ (self.weight.to(x.dtype) / math.sqrt(self.channels)).t()
        x = x.permute(0, 3, 1, 2)
        assert_shape(x, [w.shape[0], self.channels, self.size, self.size], "Fourier features")
        return x

    def extra_repr(self) -> str:
        rate, band = self.sampling_rate, self.bandwidth
        return f"channels={self.channels}, size={self.size}, sampling_rate={rate:g}, bandwidth={band:g}"


class SynthesisLayer(nn.Module):
    """One alias-free layer: modulated conv, then bias, upsampling, leaky ReLU, clamp and downsampling
    (`filtered_lrelu`), with the input normalized by its running RMS (`magnitude_ema`). ToRGB: a 1×1 conv
    without demodulation and a linear activation."""

    magnitude_ema: torch.Tensor  # Buffer []: running mean of the input's square.
    up_filter: torch.Tensor | None  # Buffer [taps] or None.
    down_filter: torch.Tensor | None  # Buffer [taps], [taps, taps] (radial) or None.

    def __init__(
        self,
        spec: SG3Layer,  # Geometry from the Plan (ganforge.plan_sg3).
        w_dim: int,  # Intermediate latent size.
        conv_clamp: float | None = 256,  # Clamp the activations to ±X; None = off.
        magnitude_ema_beta: float = 0.999,  # Decay of magnitude_ema.
    ):
        super().__init__()
        self.spec, self.w_dim, self.conv_clamp, self.magnitude_ema_beta = spec, w_dim, conv_clamp, magnitude_ema_beta
        self.is_torgb, self.use_fp16 = spec.is_torgb, spec.use_fp16
        self.in_channels, self.out_channels, k = spec.in_channels, spec.out_channels, spec.conv_kernel
        self.affine = FullyConnectedLayer(w_dim, spec.in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([spec.out_channels, spec.in_channels, k, k]))
        self.bias = nn.Parameter(torch.zeros([spec.out_channels]))
        self.register_buffer("magnitude_ema", torch.ones([]))
        up = lowpass_filter(spec.up_taps, spec.in_cutoff, spec.in_half_width * 2, spec.tmp_rate)
        down = lowpass_filter(spec.down_taps, spec.out_cutoff, spec.out_half_width * 2, spec.tmp_rate, spec.down_radial)
        self.register_buffer("up_filter", filter_buffer(up))
        self.register_buffer("down_filter", filter_buffer(down))

    def forward(
        self,
        x: torch.Tensor,  # [N, in_channels, in_size, in_size]
        w: torch.Tensor,  # [N, w_dim]
        dtype: torch.dtype = torch.float32,  # Computation dtype (the weights' or reduced precision).
        update_emas: bool = False,  # Track the input magnitude (training passes).
    ) -> torch.Tensor:
        s = self.spec
        assert_shape(x, [None, self.in_channels, s.in_size, s.in_size], f"{s.name} input")
        if update_emas:
            magnitude = x.detach().to(self.magnitude_ema.dtype).square().mean()
            self.magnitude_ema.copy_(magnitude.lerp(self.magnitude_ema, self.magnitude_ema_beta))
        styles = self.affine(w)
        if self.is_torgb:
            styles = styles * (1 / math.sqrt(self.in_channels * s.conv_kernel**2))
        x = modulated_conv2d(
            x.to(dtype),
            self.weight,
            styles,
            self.magnitude_ema.rsqrt(),
            demodulate=not self.is_torgb,
            padding=s.conv_kernel - 1,
        )
        x = filtered_lrelu(
            x,
            self.up_filter,
            self.down_filter,
            self.bias,
            up=s.up,
            down=s.down,
            padding=s.padding,
            gain=1 if self.is_torgb else math.sqrt(2),
            slope=1 if self.is_torgb else 0.2,
            clamp=self.conv_clamp,
        )
        assert_shape(x, [None, self.out_channels, s.out_size, s.out_size], f"{s.name} output")
        return x

    def extra_repr(self) -> str:
        s = self.spec
        return (
            f"rates={s.in_rate}->{s.out_rate} (x{s.up}/{s.down}), cutoffs={s.in_cutoff:g}->{s.out_cutoff:g}, "
            f"sizes={s.in_size}->{s.out_size}, critical={s.is_critical}, radial={s.down_radial}, "
            f"torgb={s.is_torgb}, clamp={self.conv_clamp}"
        )


# ----------------------------------------------------------------------------
# Synthesis network and generator.


class StyleGAN3Synthesis(nn.Module):
    """ws [N, num_ws, w_dim] -> images [N, C, H, W]: Fourier input (ws[:, 0]), then one layer per w."""

    def __init__(self, plan: Plan):
        super().__init__()
        self.plan = plan
        self.numerics = Numerics()  # The generator sets its own (ganforge.nn.numerics.set_numerics).
        self.w_dim, self.img_channels = plan.w_dim, plan.img_channels
        self.img_resolution, self.num_ws = plan.height, plan.num_ws
        self.output_scale = plan.sg3_output_scale
        geometry = plan.sg3_geometry
        first = geometry[0]
        self.input = SynthesisInput(plan.w_dim, first.in_channels, first.in_size, first.in_rate, first.in_cutoff)
        self.layer_names = [spec.name for spec in geometry]
        for spec in geometry:
            setattr(self, spec.name, SynthesisLayer(spec, plan.w_dim, plan.conv_clamp, plan.magnitude_ema_beta))

    def forward(
        self,
        ws: torch.Tensor,  # [N, num_ws, w_dim]
        update_emas: bool = False,  # Track every layer's input magnitude (training passes).
        force_fp32: bool = False,  # No reduced precision, even where the Plan asks for it.
        noise_mode: str = "const",  # Accepted for the StyleGAN2 call signature; StyleGAN3 has no noise.
    ) -> torch.Tensor:
        if noise_mode not in ("random", "const", "none"):
            raise ValueError(f"noise_mode={noise_mode!r}: choose random, const or none")
        if ws.ndim == 3 and ws.shape[1] != self.num_ws:
            raise ValueError(str(compare_num_ws(self.plan, ws.shape[1], source=f"the ws tensor {list(ws.shape)}")))
        assert_shape(ws, [None, self.num_ws, self.w_dim], "ws")
        full = param_dtype(self)
        w_all = ws.to(full).unbind(dim=1)
        x = self.input(w_all[0])
        for name, w in zip(self.layer_names, w_all[1:]):
            layer = getattr(self, name)
            dtype = reduced_dtype(self.plan, layer.use_fp16, x, force_fp32, self.numerics, full)
            x = layer(x, w, dtype=dtype, update_emas=update_emas)
        if self.output_scale != 1:
            x = x * self.output_scale
        x = x.to(full)
        assert_shape(x, [None, self.img_channels, self.img_resolution, self.img_resolution], "images")
        return x

    def extra_repr(self) -> str:
        return f"layers={len(self.layer_names)}, num_ws={self.num_ws}, output_scale={self.output_scale:g}"


class StyleGAN3Generator(nn.Module):
    """G(z, c) = synthesis(mapping(z, c)) for a stylegan3-t or stylegan3-r Plan; official call signature and
    attributes. `ops` and `cpu_reduced_precision` are accepted as for the StyleGAN2 Generator; only the latter
    changes anything here (the alias-free layers have a single implementation)."""

    def __init__(self, plan: Plan, *, cpu_reduced_precision: bool = False, ops: str = "fast"):
        super().__init__()
        if not plan.is_sg3:
            raise ValueError(f"StyleGAN3Generator needs a stylegan3-t or stylegan3-r plan, got family={plan.family!r}")
        Numerics(ops, cpu_reduced_precision)  # Checks the values before anything is allocated.
        self.plan = plan
        self.z_dim, self.c_dim, self.w_dim = plan.z_dim, plan.c_dim, plan.w_dim
        self.img_channels = plan.img_channels
        self.img_resolution = plan.height
        self.img_shape = (plan.img_channels, plan.height, plan.width)
        self.synthesis = StyleGAN3Synthesis(plan)
        self.num_ws = self.synthesis.num_ws
        self.mapping = StyleGAN3Mapping(
            plan.z_dim,
            plan.c_dim,
            plan.w_dim,
            num_ws=self.num_ws,
            num_layers=plan.mapping_layers,
            lr_multiplier=plan.mapping_lr_mult,
            w_avg_beta=plan.w_avg_beta,
        )
        set_numerics(self, ops=ops, cpu_reduced_precision=cpu_reduced_precision)

    def forward(
        self,
        z: torch.Tensor,  # [N, z_dim]
        c: torch.Tensor | None = None,  # [N, c_dim] or None
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
        update_emas: bool = False,
        **synthesis_kwargs,  # force_fp32, noise_mode (no effect).
    ) -> torch.Tensor:
        ws = self.mapping(
            z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff, update_emas=update_emas
        )
        return self.synthesis(ws, update_emas=update_emas, **synthesis_kwargs)


# ----------------------------------------------------------------------------
# Plans from the official constructor arguments.

# networks_stylegan3.Generator's keyword arguments (the synthesis and layer ones are passed flat) and their
# defaults -> Plan fields.
_SYNTHESIS_DEFAULTS: dict[str, tuple[str, object]] = {
    "channel_base": ("sg3_cbase", 32768),
    "channel_max": ("sg3_cmax", 512),
    "num_layers": ("sg3_layers", 14),
    "num_critical": ("sg3_critical", 2),
    "first_cutoff": ("sg3_first_cutoff", 2),
    "first_stopband": ("sg3_first_stopband", 2**2.1),
    "last_stopband_rel": ("sg3_last_stopband_rel", 2**0.3),
    "margin_size": ("sg3_margin", 10),
    "output_scale": ("sg3_output_scale", 0.25),
    "num_fp16_res": ("num_fp16_res", 4),
    "conv_kernel": ("sg3_conv_kernel", 3),
    "filter_size": ("sg3_filter_size", 6),
    "lrelu_upsampling": ("sg3_lrelu_upsampling", 2),
    "use_radial_filters": ("sg3_radial_filters", False),
    "conv_clamp": ("conv_clamp", 256),
    "magnitude_ema_beta": ("magnitude_ema_beta", 0.999),
}
_MAPPING_DEFAULTS: dict[str, tuple[str, object]] = {
    "num_layers": ("mapping_layers", 2),
    "lr_multiplier": ("mapping_lr_mult", 0.01),
    "w_avg_beta": ("w_avg_beta", 0.998),
}
_TOP_LEVEL = ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels", "mapping_kwargs")


def sg3_plan_options(init_kwargs: dict) -> dict:
    """make_plan keyword options (family and resolution included) from the keyword arguments of an official
    `networks_stylegan3.Generator` (its pickle's `init_kwargs`); missing ones take the official defaults.

    The family is stylegan3-r when `use_radial_filters` is set, else stylegan3-t; the D settings `cbase` and
    `cmax` follow train.py (R doubles G's channels only: D gets half of G's). Values are passed on as given:
    make_plan checks their types and ranges. Raises PlanError for an argument StyleGAN3 does not have.
    """
    unknown = set(init_kwargs) - set(_TOP_LEVEL) - set(_SYNTHESIS_DEFAULTS)
    mapping = init_kwargs.get("mapping_kwargs") or {}
    unknown |= {f"mapping_kwargs.{k}" for k in set(mapping) - set(_MAPPING_DEFAULTS)}
    if unknown:
        raise PlanError(f"the StyleGAN3 generator arguments {sorted(map(str, unknown))[:5]} are not official ones")
    options: dict = {field: init_kwargs.get(key, default) for key, (field, default) in _SYNTHESIS_DEFAULTS.items()}
    options.update({field: mapping.get(key, default) for key, (field, default) in _MAPPING_DEFAULTS.items()})
    res = init_kwargs["img_resolution"]
    radial = options["sg3_radial_filters"] is True
    d_channels = {  # train.py gives D the channels before R's doubling.
        name: value // 2 if radial and isinstance(value, int) and value > 1 else value
        for name, value in (("cbase", options["sg3_cbase"]), ("cmax", options["sg3_cmax"]))
    }
    options.update(
        d_channels,
        family="stylegan3-r" if radial else "stylegan3-t",
        resolution=(res, res),
        z_dim=init_kwargs["z_dim"],
        c_dim=init_kwargs["c_dim"],
        w_dim=init_kwargs["w_dim"],
        img_channels=init_kwargs["img_channels"],
    )
    if options["num_fp16_res"]:
        options["fp16_dtype"] = "fp16"  # Official reduced precision is float16 (GPUs only).
    return options


def plan_from_sg3_kwargs(init_kwargs: dict, preset: str = "config-f", **d_options) -> Plan:
    """The Plan of an official `networks_stylegan3.Generator(**init_kwargs)`: its network loads the official
    state dict with strict=True. `d_options` (make_plan options such as cbase, cmax, mbstd_group, from the
    official discriminator) replace the train.py defaults of the StyleGAN2 discriminator that shares the Plan.

    Example:
        ```python
        plan = plan_from_sg3_kwargs(dict(z_dim=512, c_dim=0, w_dim=512, img_resolution=1024, img_channels=3,
                                         channel_base=65536, channel_max=1024, conv_kernel=1,
                                         use_radial_filters=True, magnitude_ema_beta=0.5 ** (32 / 20000)))
        G = StyleGAN3Generator(plan)  # plan.family == "stylegan3-r"
        ```
    """
    options = {**sg3_plan_options(init_kwargs), **d_options}
    family, resolution = options.pop("family"), options.pop("resolution")
    return make_plan(preset, resolution, family=family, **options)
