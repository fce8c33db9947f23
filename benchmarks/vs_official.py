"""ganforge vs the official StyleGAN2-ADA and StyleGAN3 code: the same work, one run, one machine.

    python -m benchmarks.vs_official --official ../shared/anchors/stylegan2-ada-pytorch --device cpu
    python -m benchmarks.vs_official --official ../shared/anchors/stylegan2-ada-pytorch --quick --json
    python -m benchmarks.vs_official --official-sg3 ../shared/anchors/stylegan3 --families stylegan3-t,stylegan3-r

Both tools build the same architecture (skip G, resnet D, channels min(cbase // res, cmax), mapping
depth, z = w, minibatch-std group, conv clamp 256) and train with the same recipe on the same kind of
data (uniform random "real" images in memory, no loader): batch 16, lazy regularization (G main and
D main every iteration, path length every 4, R1 every 16), style mixing 0.9, Adam (0, 0.99) with the
lazy-interval correction, gradient scrubbing and G EMA, as the official training_loop does. The
official side runs its own networks, `training.loss.StyleGAN2Loss` and optimizers, imported from
--official (never copied), with its CUDA plugins kept off: its reference ops in fp32, as on any CPU.
ganforge runs its defaults ('default': what `ganforge train` / `ganforge generate` do on this
machine; on CPUs with bf16 instructions training runs the top 4 resolutions in bf16 with fp32
weights, inference stays fp32) and, for the fp32-vs-fp32 ratio, in fp32.

Training speed is img/s over one whole 16-iteration cycle (16 G main, 4 path length, 16 D main,
1 R1, 16 EMA updates). By default the cycle is composed from each phase timed --reps times after an
untimed first iteration (the same work, weighted by how often each phase runs); --full-cycle times 16
consecutive iterations instead, which takes about three times longer.

Configurations: wide = paper256 channels (cbase 16384, cmax 512) at 32×32; narrow = cbase 4096,
cmax 256 at 64×64 (training), and the narrow G_ema at 64, 128 and 256 for inference (const noise).
Every measurement runs in its own subprocess, so each peak RSS is that tool's own high-water mark;
measurements of the two tools alternate so that load drift on a shared machine hits both.
A parity check copies the official weights into ganforge by name and compares outputs in fp32.

StyleGAN3-T and -R rows (--official-sg3, the official StyleGAN3 folder): its StyleGAN3 generator, StyleGAN2
discriminator and loss against ganforge's, with train.py's StyleGAN3 recipe, at 32 px with reduced channels;
training as above, inference at a few batch sizes (benchmarks/vs_official_sg3.py says what exactly).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
import time
import types
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from benchmarks import vs_official_sg3
from ganforge.resources import peak_rss_gb

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Arch:
    name: str
    cbase: int  # Channels at resolution r: min(cbase // r, cmax).
    cmax: int
    resolution: int  # Training resolution.
    mapping_layers: int = 8
    z_dim: int = 512  # = w_dim.
    mbstd_group: int = 8  # paper256.
    conv_clamp: float | None = 256
    gamma: float = 1.0  # paper256 R1 weight.
    lr: float = 0.0025
    ema_kimg: float = 20.0


ARCHS = {
    "wide": Arch("wide", cbase=16384, cmax=512, resolution=32),
    "narrow": Arch("narrow", cbase=4096, cmax=256, resolution=64),
}
QUICK_ARCHS = {  # Smoke-test sizes: the whole --quick run takes about a minute.
    "wide": Arch("wide-quick", cbase=2048, cmax=128, resolution=16, mapping_layers=2, z_dim=128),
    "narrow": Arch("narrow-quick", cbase=512, cmax=64, resolution=32, mapping_layers=2, z_dim=128),
}


# ----------------------------------------------------------------------------
# The official code, imported from --official.


def import_official(root: str) -> types.SimpleNamespace:
    """training.networks and training.loss of the official repository, with its CUDA plugins kept off."""
    vs_official_sg3.put_official_on_path(root, "training/networks.py", "--official", "stylegan2-ada-pytorch")
    from torch_utils import misc
    from torch_utils.ops import bias_act, conv2d_gradfix, upfirdn2d
    from training import loss, networks

    # Reference ops: mark the plugins as already tried (and absent) so that no build is attempted.
    for module in (bias_act, upfirdn2d):
        if module._plugin is None:
            module._inited = True
    conv2d_gradfix.enabled = False
    return types.SimpleNamespace(networks=networks, loss=loss, misc=misc)


def official_networks(off: types.SimpleNamespace, arch: Arch, resolution: int | None = None):
    res = resolution or arch.resolution
    common = dict(channel_base=arch.cbase, channel_max=arch.cmax, num_fp16_res=0, conv_clamp=arch.conv_clamp)
    G = off.networks.Generator(
        z_dim=arch.z_dim,
        c_dim=0,
        w_dim=arch.z_dim,
        img_resolution=res,
        img_channels=3,
        mapping_kwargs=dict(num_layers=arch.mapping_layers),
        synthesis_kwargs=dict(architecture="skip", **common),
    )
    D = off.networks.Discriminator(
        c_dim=0,
        img_resolution=res,
        img_channels=3,
        architecture="resnet",
        epilogue_kwargs=dict(mbstd_group_size=arch.mbstd_group),
        **common,
    )
    return G, D


class OfficialTrainer:
    """The official training iteration (training_loop.py's phase loop), written here around its own modules."""

    def __init__(self, off: types.SimpleNamespace, arch: Arch, batch: int, device: torch.device):
        self.off, self.batch, self.device, self.arch = off, batch, device, arch
        G, D = official_networks(off, arch)
        self.G = G.train().requires_grad_(False).to(device)
        self.D = D.train().requires_grad_(False).to(device)
        self.G_ema = copy.deepcopy(self.G).eval()
        self.loss = off.loss.StyleGAN2Loss(
            device=device,
            G_mapping=self.G.mapping,
            G_synthesis=self.G.synthesis,
            D=self.D,
            style_mixing_prob=0.9,
            r1_gamma=arch.gamma,
            pl_batch_shrink=2,
            pl_decay=0.01,
            pl_weight=2,
        )
        self.phases = []
        for name, module, reg_interval in (("G", self.G, 4), ("D", self.D, 16)):
            ratio = reg_interval / (reg_interval + 1)
            opt = torch.optim.Adam(module.parameters(), lr=arch.lr * ratio, betas=[0**ratio, 0.99**ratio], eps=1e-8)
            self.phases += [(name + "main", module, opt, 1), (name + "reg", module, opt, reg_interval)]
        self.real = torch.rand([batch, 3, arch.resolution, arch.resolution], device=device) * 2 - 1
        self.c = torch.zeros([batch, 0], device=device)
        self.phase_seconds: dict[str, float] = defaultdict(float)
        self.phase_runs: dict[str, int] = defaultdict(int)
        self.intervals = {name: interval for name, _, _, interval in self.phases} | {"ema": 1}

    def step(self, i: int) -> None:
        all_z = torch.randn([len(self.phases), self.batch, self.arch.z_dim], device=self.device)
        for (name, module, opt, interval), z in zip(self.phases, all_z):
            if i % interval:
                continue
            t0 = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            module.requires_grad_(True)
            self.loss.accumulate_gradients(
                phase=name, real_img=self.real, real_c=self.c, gen_z=z, gen_c=self.c, sync=True, gain=interval
            )
            module.requires_grad_(False)
            for param in module.parameters():
                if param.grad is not None:
                    self.off.misc.nan_to_num(param.grad, nan=0, posinf=1e5, neginf=-1e5, out=param.grad)
            opt.step()
            sync(self.device)
            self.phase_seconds[name] += time.perf_counter() - t0
            self.phase_runs[name] += 1
        t0 = time.perf_counter()
        beta = 0.5 ** (self.batch / (self.arch.ema_kimg * 1000))
        with torch.no_grad():
            for p_ema, p in zip(self.G_ema.parameters(), self.G.parameters()):
                p_ema.copy_(p.lerp(p_ema, beta))
            for b_ema, b in zip(self.G_ema.buffers(), self.G.buffers()):
                b_ema.copy_(b)
        sync(self.device)
        self.phase_seconds["ema"] += time.perf_counter() - t0
        self.phase_runs["ema"] += 1


# ----------------------------------------------------------------------------
# ganforge with the same settings.


def ganforge_plan(arch: Arch, resolution: int | None = None):
    from ganforge.plan import make_plan

    return make_plan(
        "paper256",
        resolution or arch.resolution,
        cbase=arch.cbase,
        cmax=arch.cmax,
        mapping_layers=arch.mapping_layers,
        z_dim=arch.z_dim,
        w_dim=arch.z_dim,
        mbstd_group=arch.mbstd_group,
        conv_clamp=arch.conv_clamp,
    )


def ganforge_trainer(arch: Arch, batch: int, device: torch.device, precision: str):
    """ganforge's training iteration; precision fp32 or bf16 (the Plan's top 4 resolutions, on CPUs too)."""
    from benchmarks.train_speed import Trainer
    from ganforge.training.config import TrainConfig, with_preset

    plan = ganforge_plan(arch)
    cfg = TrainConfig(
        preset="paper256",
        batch=batch,
        precision=precision,
        gamma=arch.gamma,
        g_lr=arch.lr,
        ema_kimg=arch.ema_kimg,
        pl_weight=2.0,
        style_mixing=0.9,
    ).resolved()
    return Trainer(plan, with_preset(cfg, plan.height, plan.width), device)


# ----------------------------------------------------------------------------
# Worker: one measurement in its own process.


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def default_precision(task: str, device: str) -> str:
    """ganforge's default: training --precision auto (bf16 on GPUs, bf16-capable CPUs); inference fp32 on CPUs."""
    from ganforge.models.generator import cpu_has_native_bf16

    if device.startswith("cuda"):
        return "bf16"
    return "bf16" if task == "train" and cpu_has_native_bf16() else "fp32"


def time_trainer(spec: dict, make_trainer: Callable[[], Any]) -> dict:
    """Time the trainer `make_trainer` builds (after seeding): a composed cycle from timed phases (default) or
    spec["iters"] consecutive iterations (spec["full_cycle"]). Shared by the StyleGAN2 and StyleGAN3 rows."""
    from benchmarks.train_speed import time_sampled_cycle, time_training

    torch.manual_seed(0)
    trainer = make_trainer()
    if spec["full_cycle"]:
        return time_training(trainer, spec["iters"], spec["warmup"])
    return time_sampled_cycle(trainer, spec["reps"])


def measure_training(spec: dict) -> dict:
    """One StyleGAN2 training configuration, timed by time_trainer."""
    arch, device = Arch(**spec["arch"]), torch.device(spec["device"])
    if spec["tool"] == "official":
        return time_trainer(
            spec, lambda: OfficialTrainer(import_official(spec["official"]), arch, spec["batch"], device)
        )
    return time_trainer(spec, lambda: ganforge_trainer(arch, spec["batch"], device, spec["precision"]))


@torch.no_grad()
def measure_inference(spec: dict) -> dict:
    arch, device, res, batch = Arch(**spec["arch"]), torch.device(spec["device"]), spec["resolution"], spec["batch"]
    torch.manual_seed(0)
    if spec["tool"] == "official":
        G, _ = official_networks(import_official(spec["official"]), arch, res)
    else:
        from ganforge import build_generator

        # bf16: the Plan's top 4 resolutions in bf16 on CPUs too (opt-in for inference).
        G = build_generator(ganforge_plan(arch, res), cpu_reduced_precision=spec["precision"] == "bf16")
    G = G.eval().requires_grad_(False).to(device)
    z = torch.randn([batch, arch.z_dim], device=device)
    c = torch.zeros([batch, 0], device=device)
    for _ in range(spec["warmup"]):
        G(z, c, noise_mode="const")
    sync(device)
    t0 = time.perf_counter()
    for _ in range(spec["iters"]):
        G(z, c, noise_mode="const")
    sync(device)
    dt = time.perf_counter() - t0
    return {"seconds": dt, "img_per_s": spec["iters"] * batch / dt}


def perturbed_official(off: types.SimpleNamespace, arch: Arch):
    """Official G and D with seeded weights; zero-initialised tensors moved off zero so that each one matters."""
    torch.manual_seed(0)
    G_ref, D_ref = official_networks(off, arch)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for net in (G_ref, D_ref):
            for name, p in net.named_parameters():
                if name.endswith("bias") or name.endswith("noise_strength"):
                    p.add_(torch.randn(p.shape, generator=gen) * 0.1 / (0.01 if "mapping" in name else 1))
        G_ref.mapping.w_avg.copy_(torch.randn(G_ref.mapping.w_avg.shape, generator=gen))
    return G_ref, D_ref


def rel_diff(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    return ((ours - theirs).abs().max() / theirs.abs().max().clamp_min(1e-12)).item()


def r1_penalties(D, img: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    x = img.detach().requires_grad_(True)
    (g,) = torch.autograd.grad(D(x, c).sum(), x, create_graph=True)  # The double-backward path.
    return g.square().sum(dim=[1, 2, 3]).detach()


def measure_parity(spec: dict) -> dict:
    """Official weights copied into ganforge by name; max|ours - official| / max|official| per output.

    With --ganforge-precision bf16 also ganforge bf16 against ganforge fp32 (same weights): its tolerance.
    """
    from ganforge import build_discriminator, build_generator
    from ganforge.nn.numerics import set_numerics

    arch, batch = Arch(**spec["arch"]), spec["batch"]
    G_ref, D_ref = perturbed_official(import_official(spec["official"]), arch)
    plan = ganforge_plan(arch)
    G, D = build_generator(plan), build_discriminator(plan)
    G.load_state_dict(G_ref.state_dict(), strict=True)
    D.load_state_dict(D_ref.state_dict(), strict=True)
    gen = torch.Generator().manual_seed(2)
    z = torch.randn([batch, arch.z_dim], generator=gen)
    c = torch.zeros([batch, 0])
    img = torch.rand([batch, 3, arch.resolution, arch.resolution], generator=gen) * 2 - 1
    out = {}
    with torch.no_grad():
        out["G_eval"] = rel_diff(G.eval()(z, c, noise_mode="const"), G_ref.eval()(z, c, noise_mode="const"))
        out["G_train"] = rel_diff(G.train()(z, c, noise_mode="const"), G_ref.train()(z, c, noise_mode="const"))
        out["D"] = rel_diff(D(img, c), D_ref(img, c))
    out["R1"] = rel_diff(r1_penalties(D, img, c), r1_penalties(D_ref, img, c))
    if "bf16" in spec.get("precisions", ()):
        with torch.no_grad():
            ref32 = G.eval()(z, c, noise_mode="const")
            d32 = D(img, c)
            set_numerics(G, cpu_reduced_precision=True)  # The same networks and weights, now bf16 on CPUs too.
            set_numerics(D, cpu_reduced_precision=True)
            out["bf16_G_vs_fp32"] = rel_diff(G(z, c, noise_mode="const"), ref32)
            out["bf16_D_vs_fp32"] = rel_diff(D(img, c), d32)
    return out


def worker(spec: dict) -> dict:
    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    if spec.get("family", "stylegan2") == "stylegan2":
        fn = {"train": measure_training, "infer": measure_inference, "parity": measure_parity}[spec["task"]]
    else:
        fn = vs_official_sg3.MEASURE[spec["task"]]
    cpu0 = time.process_time()
    result = fn(spec)
    return {**result, "cpu_seconds_total": time.process_time() - cpu0, "peak_rss_gb": peak_rss_gb()}


ENV_SETTINGS = {"thp": {"THP_MEM_ALLOC_ENABLE": "1"}, "passive": {"OMP_WAIT_POLICY": "PASSIVE"}}


def worker_env(name: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("THP_MEM_ALLOC_ENABLE", "OMP_WAIT_POLICY")}
    for part in name.split("+"):
        if part != "plain" and part not in ENV_SETTINGS:
            raise SystemExit(f"--env {name!r}: choose plain, thp, passive or thp+passive")
        env.update(ENV_SETTINGS.get(part, {}))
    return env


def spawn(spec: dict, env: dict) -> dict:
    """Run one measurement in a fresh interpreter; its last stdout line is the JSON result."""
    cmd = [sys.executable, "-m", "benchmarks.vs_official", "--worker", json.dumps(spec)]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"worker failed ({spec['tool']} {spec['task']}):\n{proc.stderr[-3000:]}")
    return {**spec, **json.loads(proc.stdout.strip().splitlines()[-1])}


# ----------------------------------------------------------------------------
# The run: jobs, table, summary.


def tools_in_order(k: int, variants: list[tuple[str, bool]]) -> list[tuple[str, str, bool]]:
    """(tool, precision, is ganforge's default) triples; the order alternates so that load drift hits both tools."""
    tools = [("official", "fp32", True)] + [("ganforge", p, d) for p, d in variants]
    return tools if k % 2 == 0 else tools[::-1]


def ganforge_variants(task: str, args) -> list[tuple[str, bool]]:
    """[(precision, is_default)]: ganforge's default for the task, then the other requested precisions."""
    default = default_precision(task, args.device)
    out = [(default, True)] if "default" in args.ganforge_precision.split(",") else []
    for p in args.ganforge_precision.split(","):
        if p not in ("default", "fp32", "bf16"):
            raise SystemExit(f"--ganforge-precision {p!r}: choose default, fp32 or bf16 (comma-separated)")
        if p != "default" and all(p != q for q, _ in out):
            out.append((p, False))
    return out


def make_jobs(args) -> list[dict]:
    """The StyleGAN2 jobs (with --official), then the StyleGAN3 ones (vs_official_sg3), of args.families."""
    families = args.families.split(",")
    jobs = make_sg2_jobs(args) if "stylegan2" in families else []
    sg3 = [f for f in families if f != "stylegan2"]
    if sg3:
        jobs += vs_official_sg3.make_jobs(args, sg3, tools_in_order, lambda task: ganforge_variants(task, args))
    return jobs


def make_sg2_jobs(args) -> list[dict]:
    archs = QUICK_ARCHS if args.quick else ARCHS
    base = dict(device=args.device, official=str(Path(args.official).resolve()), threads=args.threads)
    jobs = []
    for k, name in enumerate(args.configs.split(",")):
        for tool, precision, default in tools_in_order(k, ganforge_variants("train", args)):
            jobs.append(
                dict(
                    base,
                    task="train",
                    tool=tool,
                    precision=precision,
                    default=default,
                    config=name,
                    arch=asdict(archs[name]),
                    batch=args.batch,
                    full_cycle=args.full_cycle,
                    reps=args.reps,
                    warmup=1,
                    iters=16,
                    resolution=archs[name].resolution,
                )
            )
    for k, res in enumerate(int(r) for r in args.infer_res.split(",")):
        for tool, precision, default in tools_in_order(k, ganforge_variants("infer", args)):
            jobs.append(
                dict(
                    base,
                    task="infer",
                    tool=tool,
                    precision=precision,
                    default=default,
                    config=args.infer_config,
                    arch=asdict(archs[args.infer_config]),
                    batch=args.infer_batch,
                    warmup=1,
                    iters=args.infer_iters,
                    resolution=res,
                )
            )
    if not args.skip_parity:
        precisions = sorted({j["precision"] for j in jobs})
        for name in args.configs.split(","):
            jobs.append(
                dict(
                    base,
                    task="parity",
                    tool="both",
                    precision="fp32",
                    precisions=precisions,
                    config=name,
                    arch=asdict(archs[name]),
                    batch=4,
                    resolution=archs[name].resolution,
                )
            )
    return jobs


PARITY_TOL = {"G_eval": 1e-5, "G_train": 1e-5, "D": 1e-5, "R1": 1e-3}  # fp32, relative to max|official|.
FAMILY_ORDER = ("stylegan2", "stylegan3-t", "stylegan3-r")


def summarize(results: list[dict], env_name: str) -> dict:
    """Rows of ganforge against the official run of the same job; ratios over all rows (the lowest speed ratio,
    the highest memory ratio) and per family."""

    def key(r: dict) -> tuple:
        return r["task"], r["config"], r["resolution"], r["batch"]

    official = {key(r): r for r in results if r["tool"] == "official"}
    rows = []
    for r in results:
        if r["tool"] != "ganforge":
            continue
        off = official[key(r)]
        rows.append(
            dict(
                env=env_name,
                family=r.get("family", "stylegan2"),
                task=r["task"],
                config=r["config"],
                resolution=r["resolution"],
                batch=r["batch"],
                precision=r["precision"],
                default=r.get("default", r["precision"] == "fp32"),
                official_img_per_s=off["img_per_s"],
                ganforge_img_per_s=r["img_per_s"],
                ratio=r["img_per_s"] / off["img_per_s"],
                official_peak_rss_gb=off["peak_rss_gb"],
                ganforge_peak_rss_gb=r["peak_rss_gb"],
                rss_ratio=r["peak_rss_gb"] / off["peak_rss_gb"],
                official_cpu_seconds=off["cpu_seconds_total"],
                ganforge_cpu_seconds=r["cpu_seconds_total"],
                official_phase_seconds=off.get("phase_seconds"),
                ganforge_phase_seconds=r.get("phase_seconds"),
            )
        )
    rows.sort(
        key=lambda row: (
            FAMILY_ORDER.index(row["family"]),
            row["task"] != "train",
            row["config"],
            row["resolution"],
            row["batch"],
            not row["default"],
        )
    )
    parity = {
        r["config"]: {k: v for k, v in r.items() if k in PARITY_TOL or k.startswith("bf16_")}
        for r in results
        if r["task"] == "parity"
    }
    families = [f for f in FAMILY_ORDER if any(row["family"] == f for row in rows)]
    return {
        "rows": rows,
        **ratios(rows),
        "by_family": {f: ratios([row for row in rows if row["family"] == f]) for f in families},
        "default_precision": {
            task: next((row["precision"] for row in rows if row["task"] == task and row["default"]), None)
            for task in ("train", "infer")
        },
        "parity": parity,
        "parity_ok": all(d[k] <= tol for d in parity.values() for k, tol in PARITY_TOL.items() if k in d),
    }


def ratios(rows: list[dict]) -> dict[str, float | None]:
    """The lowest speed ratios and highest peak-RSS ratio (ganforge / official) of these rows."""

    def pick(task: str | None, default: bool | None = None, precision: str | None = None) -> list[dict]:
        return [
            row
            for row in rows
            if (task is None or row["task"] == task)
            and (default is None or row["default"] == default)
            and (precision is None or row["precision"] == precision)
        ]

    def lowest(selected: list[dict]) -> float | None:
        return min(row["ratio"] for row in selected) if selected else None

    def highest_rss(selected: list[dict]) -> float | None:
        return max(row["rss_ratio"] for row in selected) if selected else None

    return {
        "train_ratio": lowest(pick("train", default=True)),  # ganforge's defaults against the official ones.
        "infer_ratio": lowest(pick("infer", default=True)),
        "peak_rss_ratio": highest_rss(pick(None, default=True)),
        "fp32_train_ratio": lowest(pick("train", precision="fp32")),  # Both tools in fp32.
        "fp32_infer_ratio": lowest(pick("infer", precision="fp32")),
        "fp32_peak_rss_ratio": highest_rss(pick(None, precision="fp32")),
    }


def fmt_ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def print_table(summary: dict, header: str) -> None:
    print(header)
    print(
        f"{'task':<6} {'config':<13} {'res':>4} {'batch':>5} {'ganforge':>13} {'official img/s':>15} "
        f"{'ganforge img/s':>15} {'ratio':>7} {'official RSS':>13} {'ganforge RSS':>13} {'RSS ratio':>9}"
    )
    for r in summary["rows"]:
        label = r["precision"] + (" default" if r["default"] else "")
        print(
            f"{r['task']:<6} {r['config']:<13} {r['resolution']:>4} {r['batch']:>5} {label:>13} "
            f"{r['official_img_per_s']:>15.2f} {r['ganforge_img_per_s']:>15.2f} {r['ratio']:>6.2f}x "
            f"{r['official_peak_rss_gb']:>9.2f} GiB {r['ganforge_peak_rss_gb']:>9.2f} GiB {r['rss_ratio']:>9.2f}"
        )
    for r in summary["rows"]:
        if r["task"] == "train":
            fmt = lambda d: ", ".join(f"{k} {v:.2f}" for k, v in d.items())
            print(
                f"  {r['config']} ({r['precision']}) seconds per phase run: official "
                f"{fmt(r['official_phase_seconds'])}; ganforge {fmt(r['ganforge_phase_seconds'])}"
            )
    for name, d in summary["parity"].items():
        print(
            f"  parity {name}, official weights in ganforge (max|diff| / max|official|; tolerance): "
            + ", ".join(f"{k} {v:.1e}" + (f" ({PARITY_TOL[k]:.0e})" if k in PARITY_TOL else "") for k, v in d.items())
        )
    print(
        f"defaults (ganforge training {summary['default_precision']['train']}, inference "
        f"{summary['default_precision']['infer']}; official fp32): training {fmt_ratio(summary['train_ratio'])}, "
        f"inference {fmt_ratio(summary['infer_ratio'])} (lowest), peak RSS ratio "
        f"{fmt_ratio(summary['peak_rss_ratio'])} (highest)"
    )
    families = summary.get("by_family", {})
    for name, r in families.items() if len(families) > 1 else ():
        print(
            f"  {name}: training {fmt_ratio(r['train_ratio'])}, inference {fmt_ratio(r['infer_ratio'])}, "
            f"peak RSS ratio {fmt_ratio(r['peak_rss_ratio'])}"
        )
    print(
        f"both fp32: training {fmt_ratio(summary['fp32_train_ratio'])}, inference "
        f"{fmt_ratio(summary['fp32_infer_ratio'])}, peak RSS ratio {fmt_ratio(summary['fp32_peak_rss_ratio'])}; "
        f"parity {'ok' if summary['parity_ok'] else 'FAILED'}"
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--official", help="path of the official stylegan2-ada-pytorch folder (imported, never copied)")
    ap.add_argument(
        "--official-sg3", metavar="PATH", help="path of the official stylegan3 folder (imported, never copied)"
    )
    ap.add_argument(
        "--families",
        default=None,
        help="model families to compare, comma-separated: stylegan2 (needs --official), stylegan3-t, stylegan3-r "
        "(need --official-sg3); default: each one whose folder is given",
    )
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    ap.add_argument("--quick", action="store_true", help="small models: a smoke test of the whole run")
    ap.add_argument("--configs", default="wide,narrow", help="StyleGAN2 training configurations: wide, narrow")
    ap.add_argument("--batch", type=int, default=None, help="StyleGAN2 training batch (default 16; 8 with --quick)")
    ap.add_argument("--reps", type=int, default=2, help="timed runs of each phase for the composed cycle")
    ap.add_argument(
        "--full-cycle",
        action="store_true",
        help="time 16 consecutive iterations instead of composing the cycle from timed phases (the "
        "same work; about 3x longer: the official wide cycle alone takes ~4 min on 2 cores)",
    )
    ap.add_argument("--infer-config", default="narrow")
    ap.add_argument("--infer-res", default=None, help="StyleGAN2 inference resolutions (default 64,128,256)")
    ap.add_argument("--infer-batch", type=int, default=None, help="StyleGAN2 inference batch (default 16)")
    ap.add_argument("--sg3-batch", type=int, default=None, help="StyleGAN3 training batch (default 8; 2 with --quick)")
    ap.add_argument(
        "--sg3-infer-batch", default=None, help="StyleGAN3 inference batches, comma-separated (default 1,4,16; quick 2)"
    )
    ap.add_argument(
        "--infer-iters", type=int, default=None, help="timed inference batches (default 3; StyleGAN3: 16+ images)"
    )
    ap.add_argument("--threads", type=int, default=None, help="torch threads per worker (default: torch's)")
    ap.add_argument(
        "--env",
        default="plain",
        help="comma-separated environments, each applied to both tools' workers: plain (as started), "
        "thp (THP_MEM_ALLOC_ENABLE=1: PyTorch's huge-page allocator), passive (OMP_WAIT_POLICY="
        "PASSIVE: idle OpenMP threads sleep instead of spinning; matters when other processes share "
        "the cores), thp+passive",
    )
    ap.add_argument(
        "--ganforge-precision",
        default="default,fp32",
        help="ganforge variants to measure: default (its own settings: training bf16 on bf16-capable "
        "CPUs, else fp32; inference fp32 on CPUs), fp32, bf16; comma-separated",
    )
    ap.add_argument("--skip-parity", action="store_true")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    quick = args.quick
    args.batch = args.batch or (8 if quick else 16)
    args.infer_res = args.infer_res or ("32,64" if quick else "64,128,256")
    args.infer_batch = args.infer_batch or (8 if quick else 16)
    args.infer_iters = args.infer_iters or (1 if quick else 3)
    args.sg3_batch = args.sg3_batch or (2 if quick else 8)
    args.sg3_infer_batch = args.sg3_infer_batch or ("2" if quick else "1,4,16")
    return args


def check_families(args: argparse.Namespace) -> None:
    """args.families resolved (default: each family whose official folder was given); SystemExit naming the flag."""
    folders = {"stylegan2": ("--official", args.official)} | {
        f: ("--official-sg3", args.official_sg3) for f in ("stylegan3-t", "stylegan3-r")
    }
    if args.families is None:
        args.families = ",".join(f for f, (_, path) in folders.items() if path)
        if not args.families:
            raise SystemExit(
                "give --official (the stylegan2-ada-pytorch folder) and/or --official-sg3 (the stylegan3 folder)"
            )
    for family in args.families.split(","):
        if family not in folders:
            raise SystemExit(f"--families {args.families}: {family!r} is not one of {', '.join(folders)}")
        flag, path = folders[family]
        if not path:
            raise SystemExit(f"--families {args.families}: {family} needs {flag} (the official folder to compare with)")


def main(argv: list[str] | None = None) -> dict | None:
    args = parse_args(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return None
    check_families(args)
    t_start, load_start = time.perf_counter(), os.getloadavg()[0]
    envs = args.env.split(",")
    summaries = []
    for env_name in envs:
        env = worker_env(env_name)
        results = []
        for spec in make_jobs(args):
            t0 = time.perf_counter()
            results.append(spawn(spec, env))
            print(
                f"[{env_name}] {spec['tool']:<8} {spec['task']:<6} {spec['config']:<11} {spec['resolution']:>4} px, "
                f"batch {spec['batch']:>2}: {time.perf_counter() - t0:6.1f} s",
                file=sys.stderr,
                flush=True,
            )
        summaries.append(summarize(results, env_name))
    summary = {**summaries[0], "rows": [r for s in summaries for r in s["rows"]], "env": envs[0]}
    summary["by_env"] = {name: {k: v for k, v in s.items() if k.endswith("_ratio")} for name, s in zip(envs, summaries)}
    families = args.families.split(",")
    archs = {k: asdict(v) for k, v in (QUICK_ARCHS if args.quick else ARCHS).items() if "stylegan2" in families}
    archs |= {k: asdict(v) for k, v in vs_official_sg3.sg3_archs(args.quick).items() if k in families}
    out = {
        **summary,
        "device": args.device,
        "threads": args.threads or torch.get_num_threads(),
        "torch": torch.__version__,
        "official_ops": "reference (no plugins), fp32",
        "training_timing": "16 consecutive iterations"
        if args.full_cycle
        else f"one 16-iteration cycle composed from each phase timed {args.reps}x",
        "families": families,
        "archs": archs,
        "quick": args.quick,
        "wall_seconds": time.perf_counter() - t_start,
        "load_average_1min": {"start": load_start, "end": os.getloadavg()[0]},  # Other processes on the machine.
    }
    if args.json:
        print(json.dumps(out))
    else:
        batches = []
        if "stylegan2" in families:
            batches.append(f"StyleGAN2 training batch {args.batch}, inference batch {args.infer_batch}")
        if families != ["stylegan2"]:
            batches.append(f"StyleGAN3 training batch {args.sg3_batch}, inference batches {args.sg3_infer_batch}")
        print_table(
            out,
            f"ganforge vs the official code ({', '.join(families)}) on {args.device} ({out['threads']} threads, "
            f"torch {torch.__version__}); {'; '.join(batches)}; {out['wall_seconds']:.0f} s; 1-min load average "
            f"{load_start:.1f} at the start",
        )
    return out


if __name__ == "__main__":
    main()
