"""StyleGAN3 layer geometry: what every alias-free layer of a Plan samples, keeps and outputs.

Karras et al. 2021 ("Alias-Free Generative Adversarial Networks", section 3.2 and appendix F) lay the
synthesis layers out as a schedule: from the first layer to the last critically sampled one the cutoff f_c
and the minimum stopband f_t grow geometrically, from (f_c,0, f_t,0) to (f_c,N, f_t,N) = (size/2,
size/2 · last_stopband_rel), and stay there for the critically sampled layers. Each layer then takes the
smallest power-of-two sampling rate s ≥ 2·f_t (at most the image size), a transition band of half-width
f_h = max(f_t, s/2) - f_c, a canvas of s + 2·margin pixels (the image size for the last two layers) and
C = min(cbase/2 / f_c, cmax) feature maps (rounded half to even; image channels for ToRGB).

The numbers are computed in float64 with the same operations, in the same order, as the official
`SynthesisNetwork`, so layer names, channel counts and filters come out identical. Everything here is plain
numbers (numpy, imported on first use); the networks read it through `Plan.sg3_layers`.
"""

from __future__ import annotations

from dataclasses import dataclass

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ganforge.plan import Plan

FAMILIES = ("stylegan3-t", "stylegan3-r")
MIN_SIZE = 16  # The first layers sample at 16 (2·f_t,0 = 2^3.1 rounded up): smaller images clip them.


def is_sg3(family: str) -> bool:
    return family in FAMILIES


@dataclass(frozen=True)
class SG3Layer:
    """One synthesis layer (index `idx`; the last one is ToRGB). Sizes are square sides in pixels."""

    idx: int
    name: str  # Official state-dict name: L{idx}_{out_size}_{out_channels}.
    is_torgb: bool
    is_critical: bool  # Critically sampled (s = 2·f_c): the downsampling filter is never radial.
    use_fp16: bool  # The Plan's num_fp16_res covers this layer's sampling rate.
    in_channels: int
    out_channels: int
    in_size: int
    out_size: int
    in_rate: int  # Input sampling rate s.
    out_rate: int  # Output sampling rate s.
    in_cutoff: float  # f_c of the input (the upsampling filter's cutoff).
    out_cutoff: float  # f_c of the output (the downsampling filter's cutoff).
    in_half_width: float  # f_h of the input.
    out_half_width: float  # f_h of the output.
    conv_kernel: int  # 1 for ToRGB.
    tmp_rate: int  # Rate at which the leaky ReLU runs: max(in, out) · lrelu_upsampling (ToRGB: · 1).
    up: int  # tmp_rate / in_rate.
    down: int  # tmp_rate / out_rate.
    up_taps: int  # Taps of the upsampling filter; 1 = none.
    down_taps: int  # Taps of the downsampling filter; 1 = none.
    down_radial: bool  # Radially symmetric (jinc) downsampling filter.
    padding: tuple[int, int, int, int]  # (x0, x1, y0, y1) after upsampling; negative = crop.


def resolution_problem(h: int, w: int) -> str | None:
    """None when (h, w) is a size a StyleGAN3 generator makes; else why not, in words."""
    side = h
    if h != w or side < MIN_SIZE or side & (side - 1):
        return (
            f"a StyleGAN3 generator makes square power-of-two images from {MIN_SIZE} px up (its alias-free layers "
            f"sample at powers of two up to the image size), not {w}x{h} (WxH): use 256, 512 or 1024, or the "
            f"stylegan2 family for other sizes"
        )
    return None


def settings_problem(plan: Plan) -> str | None:
    """None when the Plan's sg3_* settings make a network; else one sentence naming the field and its value."""
    if not plan.sg3_critical < plan.sg3_layers:
        return (
            f"sg3_critical={plan.sg3_critical} must be smaller than sg3_layers={plan.sg3_layers}: "
            f"at least one layer must lie before the critically sampled ones"
        )
    if not plan.sg3_first_cutoff <= plan.height / 2:
        return (
            f"sg3_first_cutoff={plan.sg3_first_cutoff:g} is above the image's Nyquist frequency {plan.height / 2:g}: "
            f"give at most {plan.height / 2:g} (the official 2)"
        )
    if not plan.sg3_first_stopband > plan.sg3_first_cutoff:
        return (
            f"sg3_first_stopband={plan.sg3_first_stopband:g} must be above sg3_first_cutoff="
            f"{plan.sg3_first_cutoff:g}: the filters need a transition band (the official is 2^2.1 = 4.29)"
        )
    if not plan.sg3_last_stopband_rel > 1:
        return (
            f"sg3_last_stopband_rel={plan.sg3_last_stopband_rel:g} must be above 1: the last stopband lies above "
            f"the last cutoff (the official is 2^0.3 = 1.23)"
        )
    if plan.sg3_cbase < 1 or plan.sg3_cmax < 1:
        return f"sg3_cbase={plan.sg3_cbase} and sg3_cmax={plan.sg3_cmax} must both be at least 1 for a StyleGAN3 plan"
    thin = [layer for layer in layers(plan)[:-1] if layer.out_channels < 1]
    if thin:
        return (
            f"layer {thin[0].name} would get {thin[0].out_channels} channels: raise sg3_cbase ({plan.sg3_cbase}); "
            f"channels are min(sg3_cbase/2 / cutoff, sg3_cmax)"
        )
    return None


def layers(plan: Plan) -> list[SG3Layer]:
    """The synthesis layers of a StyleGAN3 Plan, L0 first, ToRGB last (sg3_layers + 1 of them)."""
    import numpy as np

    n, res = plan.sg3_layers, plan.height

    # The schedule of cutoffs and minimum stopbands: geometric up to the critically sampled layers.
    last_cutoff = res / 2
    last_stopband = last_cutoff * plan.sg3_last_stopband_rel
    exponents = np.minimum(np.arange(n + 1) / (n - plan.sg3_critical), 1)
    cutoffs = plan.sg3_first_cutoff * (last_cutoff / plan.sg3_first_cutoff) ** exponents
    stopbands = plan.sg3_first_stopband * (last_stopband / plan.sg3_first_stopband) ** exponents

    # What follows from them: sampling rates, transition bands, canvas sizes, feature maps.
    rates = np.exp2(np.ceil(np.log2(np.minimum(stopbands * 2, res))))
    half_widths = np.maximum(stopbands, rates / 2) - cutoffs
    sizes = rates + plan.sg3_margin * 2
    sizes[-2:] = res
    channels = np.rint(np.minimum((plan.sg3_cbase / 2) / cutoffs, plan.sg3_cmax))
    channels[-1] = plan.img_channels

    out = []
    for idx in range(n + 1):
        prev = max(idx - 1, 0)
        is_torgb = idx == n
        is_critical = idx >= n - plan.sg3_critical
        in_rate, out_rate = int(rates[prev]), int(rates[idx])
        tmp_rate = max(in_rate, out_rate) * (1 if is_torgb else plan.sg3_lrelu_upsampling)
        up, down = tmp_rate // in_rate, tmp_rate // out_rate  # Exact: rates are powers of two.
        up_taps = plan.sg3_filter_size * up if up > 1 and not is_torgb else 1
        down_taps = plan.sg3_filter_size * down if down > 1 and not is_torgb else 1
        kernel = 1 if is_torgb else plan.sg3_conv_kernel
        in_size, out_size = int(sizes[prev]), int(sizes[idx])
        out_channels = int(channels[idx])
        out.append(
            SG3Layer(
                idx=idx,
                name=f"L{idx}_{out_size}_{out_channels}",
                is_torgb=is_torgb,
                is_critical=is_critical,
                use_fp16=out_rate * 2**plan.num_fp16_res > res,
                in_channels=int(channels[prev]),
                out_channels=out_channels,
                in_size=in_size,
                out_size=out_size,
                in_rate=in_rate,
                out_rate=out_rate,
                in_cutoff=float(cutoffs[prev]),
                out_cutoff=float(cutoffs[idx]),
                in_half_width=float(half_widths[prev]),
                out_half_width=float(half_widths[idx]),
                conv_kernel=kernel,
                tmp_rate=tmp_rate,
                up=up,
                down=down,
                up_taps=up_taps,
                down_taps=down_taps,
                down_radial=plan.sg3_radial_filters and not is_critical,
                padding=symmetric_padding(in_size, out_size, kernel, up, down, up_taps, down_taps),
            )
        )
    return out


def symmetric_padding(
    in_size: int, out_size: int, kernel: int, up: int, down: int, up_taps: int, down_taps: int
) -> tuple[int, int, int, int]:
    """Padding (x0, x1, y0, y1) of the upsampled map so that the layer maps in_size to out_size pixels.

    The "full" convolution grows the input to in_size + kernel - 1; after upsampling and both filters, the
    down-sampled output needs (out_size - 1)·down + 1 samples. The padding is split with the extra `up` on the
    low side, so sample centres line up under the symmetric interpretation of pixels (paper, appendix C.3).
    """
    total = (out_size - 1) * down + 1 - (in_size + kernel - 1) * up + up_taps + down_taps - 2
    lo = (total + up) // 2
    hi = total - lo
    return (lo, hi, lo, hi)


def parameter_count(plan: Plan) -> int:
    """Parameters of the StyleGAN3 generator a Plan builds, from the geometry alone (nothing allocated): what
    the official networks_stylegan3.Generator holds with the same settings."""
    w = plan.w_dim
    embed = plan.c_dim * w + w if plan.c_dim else 0
    widths = [plan.z_dim + (w if plan.c_dim else 0)] + [w] * plan.mapping_layers
    mapping = embed + sum(a * b + b for a, b in zip(widths[:-1], widths[1:]))
    geometry = layers(plan)
    fourier = geometry[0].in_channels ** 2 + w * 4 + 4  # Mixing matrix and the rotation/translation affine.
    synthesis = sum(
        (w + 1) * s.in_channels + s.out_channels * s.in_channels * s.conv_kernel**2 + s.out_channels for s in geometry
    )
    return mapping + fourier + synthesis
