"""The StyleGAN3-T and StyleGAN3-R rows of benchmarks/vs_official.py: ganforge against the official StyleGAN3 code.

The official side imports `training.networks_stylegan3.Generator`, `training.networks_stylegan2.Discriminator` and
`training.loss.StyleGAN2Loss` from --official-sg3 (never copied), with its custom ops on their plain-PyTorch
reference paths, as on any CPU. Both sides build one architecture from one set of official Generator arguments
(ganforge through `plan_from_sg3_kwargs`, whose networks load the official state dicts by name) and train with
the official train.py recipe for --cfg stylegan3-t / stylegan3-r: no path length and no style mixing (so no lazy
G regularization: G main every iteration, the official loop's 'Gboth'), R1 every 16 iterations with the lazy
Adam correction on D only, G lr 0.0025, D lr 0.002, the StyleGAN2 resnet discriminator (minibatch-std group 4,
conv clamp 256 on both networks), magnitude averages with a 20k-image half-life, G EMA. R's blur of D's input
is left out: the recipe fades it out over the first 200·batch/32 kimg, and it costs both sides one depthwise
filter per D pass. Everything runs in fp32 (the official code runs its float16 layers on GPUs only).

Training speed is img/s of one 16-iteration cycle (16 G main, 16 D main, 1 R1, 16 EMA updates), composed from
timed phases as for StyleGAN2; inference is G's forward pass (eval mode) at a few batch sizes, each timed over at
least 16 images. The layers sample at up to twice the image's rate on canvases with 10-pixel margins, so a
StyleGAN3 layer costs several times a StyleGAN2 one at the same resolution: the configuration is small (32 px,
the official 14 layers and mapping depth 2, z = w = 512; cbase 2048, cmax 64, so T has 64 feature maps per layer
and R 128 with 1×1 convolutions; D 64 channels at every resolution).
"""

from __future__ import annotations

import copy
import sys
import time
import types
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

FAMILIES = ("stylegan3-t", "stylegan3-r")


@dataclass(frozen=True)
class SG3Arch:
    family: str  # stylegan3-t | stylegan3-r.
    resolution: int
    cbase: int  # train.py --cbase: D's channel base, and G's (doubled for R).
    cmax: int  # train.py --cmax, likewise.
    layers: int = 14  # Synthesis layers [num_layers].
    critical: int = 2  # Critically sampled layers at the end [num_critical].
    z_dim: int = 512  # = w_dim.
    mapping_layers: int = 2
    mbstd_group: int = 4
    conv_clamp: float | None = 256
    gamma: float = 0.5  # R1 weight (train.py's recommendation for 128 px at batch 32; it only scales the penalty).
    g_lr: float = 0.0025
    d_lr: float = 0.002


def sg3_archs(quick: bool) -> dict[str, SG3Arch]:
    """The measured configuration per family; --quick: 16 px, 4 layers, a few channels (seconds per worker)."""
    if quick:
        return {f: SG3Arch(f, 16, cbase=256, cmax=16, layers=4, critical=1, z_dim=32) for f in FAMILIES}
    return {f: SG3Arch(f, 32, cbase=2048, cmax=64) for f in FAMILIES}


def generator_kwargs(arch: SG3Arch, batch: int) -> dict:
    """networks_stylegan3.Generator arguments as the official train.py sets them for this family and batch."""
    r = arch.family == "stylegan3-r"
    kwargs = dict(
        z_dim=arch.z_dim,
        c_dim=0,
        w_dim=arch.z_dim,
        img_resolution=arch.resolution,
        img_channels=3,
        mapping_kwargs=dict(num_layers=arch.mapping_layers),
        channel_base=arch.cbase * (2 if r else 1),  # R: twice the feature maps in G.
        channel_max=arch.cmax * (2 if r else 1),
        num_layers=arch.layers,
        num_critical=arch.critical,
        num_fp16_res=0,
        conv_clamp=arch.conv_clamp,
        magnitude_ema_beta=0.5 ** (batch / 20_000),
    )
    if r:
        kwargs.update(conv_kernel=1, use_radial_filters=True)
    return kwargs


def discriminator_kwargs(arch: SG3Arch) -> dict:
    return dict(
        c_dim=0,
        img_resolution=arch.resolution,
        img_channels=3,
        channel_base=arch.cbase,
        channel_max=arch.cmax,
        num_fp16_res=0,
        conv_clamp=arch.conv_clamp,
        epilogue_kwargs=dict(mbstd_group_size=arch.mbstd_group),
    )


# ----------------------------------------------------------------------------
# The official code, imported from --official-sg3.


def put_official_on_path(root: str, marker: str, flag: str, folder: str) -> None:
    """Make an official repository importable: root must hold `marker`; `requests` stands in when absent."""
    if not (Path(root) / marker).is_file():
        raise SystemExit(f"{flag} {root}: no {marker} there (give the {folder} folder)")
    try:
        import requests  # noqa: F401
    except ImportError:  # dnnlib.util imports it for downloads only.
        sys.modules["requests"] = types.ModuleType("requests")
    sys.path.insert(0, str(Path(root).resolve()))


def import_official(root: str) -> types.SimpleNamespace:
    """networks_stylegan3, networks_stylegan2 and loss of the official StyleGAN3 repository, plugins kept off."""
    put_official_on_path(root, "training/networks_stylegan3.py", "--official-sg3", "stylegan3")
    from torch_utils.ops import bias_act, conv2d_gradfix, filtered_lrelu, upfirdn2d
    from training import loss, networks_stylegan2, networks_stylegan3

    # Each op builds its plugin on first use with a CUDA tensor; "unavailable" keeps every call on the reference path.
    for ops in (bias_act, upfirdn2d, filtered_lrelu):
        ops._init = lambda: False
    conv2d_gradfix.enabled = False
    return types.SimpleNamespace(networks3=networks_stylegan3, networks2=networks_stylegan2, loss=loss)


def official_networks(off: types.SimpleNamespace, arch: SG3Arch, batch: int):
    G = off.networks3.Generator(**generator_kwargs(arch, batch))
    D = off.networks2.Discriminator(**discriminator_kwargs(arch))
    return G, D


class OfficialTrainer:
    """The official StyleGAN3 training iteration (its training_loop.py phase loop) around its own modules."""

    def __init__(self, off: types.SimpleNamespace, arch: SG3Arch, batch: int, device: torch.device):
        self.batch, self.device, self.arch = batch, device, arch
        G, D = official_networks(off, arch, batch)
        self.G = G.train().requires_grad_(False).to(device)
        self.D = D.train().requires_grad_(False).to(device)
        self.G_ema = copy.deepcopy(self.G).eval()
        # train.py's stylegan3 configs: style mixing 0, path length 0, blur off (see the module docstring).
        self.loss = off.loss.StyleGAN2Loss(device=device, G=self.G, D=self.D, r1_gamma=arch.gamma)
        opt_G = torch.optim.Adam(self.G.parameters(), lr=arch.g_lr, betas=(0.0, 0.99), eps=1e-8)  # G_reg_interval None.
        ratio = 16 / 17
        opt_D = torch.optim.Adam(self.D.parameters(), lr=arch.d_lr * ratio, betas=(0.0**ratio, 0.99**ratio), eps=1e-8)
        # (name timed as, official phase, module, optimizer, interval); 'Gboth' runs as 'Gmain' without path length.
        self.phases = [
            ("Gmain", "Gboth", self.G, opt_G, 1),
            ("Dmain", "Dmain", self.D, opt_D, 1),
            ("Dreg", "Dreg", self.D, opt_D, 16),
        ]
        self.real = torch.rand([batch, 3, arch.resolution, arch.resolution], device=device) * 2 - 1
        self.c = torch.zeros([batch, 0], device=device)
        self.ema_beta = 0.5 ** (batch / (batch * 10 / 32 * 1000))  # train.py: ema_kimg = batch·10/32.
        self.phase_seconds: dict[str, float] = defaultdict(float)
        self.phase_runs: dict[str, int] = defaultdict(int)
        self.intervals = {name: interval for name, _, _, _, interval in self.phases} | {"ema": 1}

    def step(self, i: int) -> None:
        from torch_utils import misc

        all_z = torch.randn([len(self.phases), self.batch, self.arch.z_dim], device=self.device)
        for (name, official_name, module, opt, interval), z in zip(self.phases, all_z):
            if i % interval:
                continue
            t0 = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            module.requires_grad_(True)
            self.loss.accumulate_gradients(
                phase=official_name, real_img=self.real, real_c=self.c, gen_z=z, gen_c=self.c, gain=interval, cur_nimg=0
            )
            module.requires_grad_(False)
            params = [param for param in module.parameters() if param.grad is not None]
            if params:  # As the StyleGAN3 loop does it: one flat gradient, scrubbed, split back.
                flat = torch.cat([param.grad.flatten() for param in params])
                misc.nan_to_num(flat, nan=0, posinf=1e5, neginf=-1e5, out=flat)
                for param, grad in zip(params, flat.split([param.numel() for param in params])):
                    param.grad = grad.reshape(param.shape)
            opt.step()
            sync(self.device)
            self.phase_seconds[name] += time.perf_counter() - t0
            self.phase_runs[name] += 1
        t0 = time.perf_counter()
        with torch.no_grad():
            for p_ema, p in zip(self.G_ema.parameters(), self.G.parameters()):
                p_ema.copy_(p.lerp(p_ema, self.ema_beta))
            for b_ema, b in zip(self.G_ema.buffers(), self.G.buffers()):
                b_ema.copy_(b)
        sync(self.device)
        self.phase_seconds["ema"] += time.perf_counter() - t0
        self.phase_runs["ema"] += 1


# ----------------------------------------------------------------------------
# ganforge with the same settings.


def ganforge_plan(arch: SG3Arch, batch: int, precision: str = "fp32"):
    """The Plan of the official arguments; with bf16, the top 4 sampling rates in bf16 (on CPUs too)."""
    from ganforge.models.stylegan3 import plan_from_sg3_kwargs

    kwargs = generator_kwargs(arch, batch)
    reduced: dict[str, Any] = {"num_fp16_res": 4, "fp16_dtype": "bf16"} if precision == "bf16" else {}
    return plan_from_sg3_kwargs(kwargs, mbstd_group=arch.mbstd_group, **reduced)


def ganforge_trainer(arch: SG3Arch, batch: int, device: torch.device, precision: str):
    from benchmarks.train_speed import Trainer
    from ganforge.training.config import TrainConfig, with_preset

    cfg = TrainConfig(
        family=arch.family,
        batch=batch,
        precision=precision,
        gamma=arch.gamma,
        g_lr=arch.g_lr,
        d_lr=arch.d_lr,
    ).resolved()  # The family's recipe fills in the rest: no path length, no style mixing, EMA batch·10/32 kimg.
    # A StyleGAN3 Plan makes the trainer step G as `ganforge train` does: its w and magnitude averages move in D
    # main's pass on fakes only.
    return Trainer(ganforge_plan(arch, batch, precision), with_preset(cfg, arch.resolution, arch.resolution), device)


# ----------------------------------------------------------------------------
# Measurements (each in its own worker process; see vs_official.worker).


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_training(spec: dict) -> dict:
    """One StyleGAN3 training configuration, timed as the StyleGAN2 rows are (vs_official.time_trainer)."""
    from benchmarks.vs_official import time_trainer

    arch, device = SG3Arch(**spec["arch"]), torch.device(spec["device"])
    official = spec["official_sg3"]
    if spec["tool"] == "official":
        return time_trainer(spec, lambda: OfficialTrainer(import_official(official), arch, spec["batch"], device))
    return time_trainer(spec, lambda: ganforge_trainer(arch, spec["batch"], device, spec["precision"]))


@torch.no_grad()
def measure_inference(spec: dict) -> dict:
    arch, device, batch = SG3Arch(**spec["arch"]), torch.device(spec["device"]), spec["batch"]
    torch.manual_seed(0)
    if spec["tool"] == "official":
        G, _ = official_networks(import_official(spec["official_sg3"]), arch, batch)
    else:
        from ganforge import build_generator

        plan = ganforge_plan(arch, batch, spec["precision"])
        G = build_generator(plan, cpu_reduced_precision=spec["precision"] == "bf16")
    G = G.eval().requires_grad_(False).to(device)
    z = torch.randn([batch, arch.z_dim], device=device)
    c = torch.zeros([batch, 0], device=device)
    for _ in range(spec["warmup"]):
        G(z, c)
    sync(device)
    t0 = time.perf_counter()
    for _ in range(spec["iters"]):
        G(z, c)
    sync(device)
    dt = time.perf_counter() - t0
    return {"seconds": dt, "img_per_s": spec["iters"] * batch / dt}


@torch.no_grad()
def perturbed(net: torch.nn.Module, gen: torch.Generator) -> torch.nn.Module:
    """Every tensor that starts at a constant (biases, magnitude and w averages, the input affine) moved off it."""
    for name, t in net.state_dict().items():
        if name.endswith("bias"):
            t.add_(0.2 * torch.randn(t.shape, generator=gen))
        elif name.endswith("magnitude_ema"):
            t.copy_(torch.rand(t.shape, generator=gen) + 0.5)
        elif name.endswith("w_avg") or name.endswith("input.affine.weight"):
            t.copy_(0.3 * torch.randn(t.shape, generator=gen))
    return net


def measure_parity(spec: dict) -> dict:
    """Official weights copied into ganforge by name; max|ours - official| / max|official| for G, D and R1."""
    from benchmarks.vs_official import r1_penalties, rel_diff
    from ganforge import build_discriminator, build_generator

    arch, batch = SG3Arch(**spec["arch"]), spec["batch"]
    torch.manual_seed(0)
    G_ref, D_ref = official_networks(import_official(spec["official_sg3"]), arch, batch)
    gen = torch.Generator().manual_seed(1)
    G_ref, D_ref = perturbed(G_ref, gen).eval(), perturbed(D_ref, gen)
    plan = ganforge_plan(arch, batch)
    G, D = build_generator(plan).eval(), build_discriminator(plan)
    G.load_state_dict(G_ref.state_dict(), strict=True)
    D.load_state_dict(D_ref.state_dict(), strict=True)
    z = torch.randn([batch, arch.z_dim], generator=gen)
    c = torch.zeros([batch, 0])
    img = torch.rand([batch, 3, arch.resolution, arch.resolution], generator=gen) * 2 - 1
    with torch.no_grad():
        out = {"G_eval": rel_diff(G(z, c), G_ref(z, c)), "D": rel_diff(D(img, c), D_ref(img, c))}
    out["R1"] = rel_diff(r1_penalties(D, img, c), r1_penalties(D_ref, img, c))
    return out


MEASURE = {"train": measure_training, "infer": measure_inference, "parity": measure_parity}
MIN_INFER_IMAGES = 16  # Each inference measurement times at least this many images: small batches run more often.


# ----------------------------------------------------------------------------
# Jobs.


def make_jobs(args, families: list[str], tools_in_order, variants) -> list[dict]:
    """Training, inference (one job per batch size) and parity jobs of each family; tools alternate per job group."""
    archs = sg3_archs(args.quick)
    base = dict(device=args.device, official_sg3=str(Path(args.official_sg3).resolve()), threads=args.threads)
    jobs, k = [], 0
    for family in families:
        arch = archs[family]
        common = dict(base, family=family, config=family, arch=asdict(arch), resolution=arch.resolution)
        train = dict(common, task="train", batch=args.sg3_batch, full_cycle=args.full_cycle, reps=args.reps)
        groups = [(dict(train, warmup=1, iters=16), variants("train"))]
        for batch in (int(b) for b in args.sg3_infer_batch.split(",")):
            iters = max(args.infer_iters, -(-MIN_INFER_IMAGES // batch))
            infer = dict(common, task="infer", batch=batch, warmup=1, iters=iters)
            groups.append((infer, variants("infer")))
        for job, tool_variants in groups:
            for tool, precision, default in tools_in_order(k, tool_variants):
                jobs.append(dict(job, tool=tool, precision=precision, default=default))
            k += 1
        if not args.skip_parity:
            jobs.append(dict(common, task="parity", tool="both", precision="fp32", batch=4))
    return jobs
