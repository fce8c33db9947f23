"""ganforge: StyleGAN2-family GANs at any resolution, with the checks that explain shape mismatches.

The public API, importable without loading torch (the functions import what they need when called):

- `make_plan` and `Plan`: the resolved architecture that every network is built from;
- `build_generator` and `build_discriminator`: fresh networks for a Plan;
- `load_generator`: a trained generator from a ganforge checkpoint or an official StyleGAN2-ADA / StyleGAN3 `.pkl`;
- `load_checkpoint`: a ganforge checkpoint's Plan, metadata and network weights, checked;
- `TrainConfig`: the typed training configuration (`ganforge train` reads the same fields);
- `train`: a training run from a `TrainConfig`, a dict of its keys or a TOML/JSON file, as `ganforge train`.

Every failure a user can cause raises a `GanforgeError` whose message is one sentence naming the problem
and the fix.

Example:
    ```python
    import ganforge

    G = ganforge.load_generator("runs/demo/run/checkpoint-000000012000.safetensors")
    plan = ganforge.make_plan("paper256", 256)
    ```
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from ganforge.config import PRESETS
from ganforge.errors import GanforgeError
from ganforge.plan import Plan, PlanError, make_plan

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (which costs ~5 ms); checkers read it alike.
if TYPE_CHECKING:
    from pathlib import Path

    import torch

    from ganforge.models.dcgan import DCGANGenerator
    from ganforge.models.generator import Generator
    from ganforge.models.stylegan3 import StyleGAN3Generator
    from ganforge.training.config import TrainConfig
    from ganforge.training.state import TrainState

__version__ = "0.1.0"

__all__ = [
    "PRESETS",
    "Checkpoint",
    "GanforgeError",
    "Plan",
    "PlanError",
    "TrainConfig",
    "__version__",
    "build_discriminator",
    "build_generator",
    "load_checkpoint",
    "load_generator",
    "make_plan",
    "train",
]

# Names imported on first use, so that `import ganforge` stays cheap: name -> defining module.
_LAZY = {"TrainConfig": "ganforge.training.config"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'ganforge' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


# ----------------------------------------------------------------------------
# Networks.


def build_generator(
    plan: Plan, *, cpu_reduced_precision: bool = False, ops: str = "fast"
) -> Generator | StyleGAN3Generator | DCGANGenerator:
    """A freshly initialized generator for the Plan: StyleGAN2 (`Generator`), StyleGAN3 (`StyleGAN3Generator`, for
    the families stylegan3-t and stylegan3-r) or DCGAN (`DCGANGenerator`).

    A StyleGAN2 generator is called as `G(z, c, truncation_psi=1.0, truncation_cutoff=None, noise_mode='random')`
    and returns images `[N, C, H, W]` in [-1, 1]; `G.mapping(z, c)` gives `ws` `[N, num_ws, w_dim]` and
    `G.synthesis(ws)` the images, as in the official code. `c` is None for an unconditional model. A StyleGAN3
    generator is called the same way, with `update_emas=True` in training passes (it tracks w_avg and each
    layer's input magnitude then) and `noise_mode` accepted without effect; its state-dict keys are the official
    `networks_stylegan3` ones.

    How this network computes is fixed here, for it alone (copies keep it; `ganforge.nn.numerics.set_numerics`
    changes it later): the top `plan.num_fp16_res` resolutions run in reduced precision (`plan.fp16_dtype`) on
    GPUs, and on CPUs only with `cpu_reduced_precision=True`; `ops="fast"` (the default) runs the fast paths,
    `ops="reference"` the plain official formulations (the same results up to rounding). DCGAN networks have
    neither reduced-precision blocks nor fast paths.

    Example:
        ```python
        import torch
        from ganforge import build_generator, make_plan

        G = build_generator(make_plan("tiny", 32))
        img = G(torch.randn(4, G.z_dim), None, noise_mode="const")  # [4, 3, 32, 32]
        ```
    """
    from ganforge.nn.numerics import Numerics

    Numerics(ops, cpu_reduced_precision)  # A bad choice raises NumericsError (a GanforgeError) naming the choices.
    if plan.family == "dcgan":
        from ganforge.models.dcgan import DCGANGenerator

        return DCGANGenerator(plan)
    if plan.is_sg3:
        from ganforge.models.stylegan3 import StyleGAN3Generator

        return StyleGAN3Generator(plan, cpu_reduced_precision=cpu_reduced_precision, ops=ops)
    from ganforge.models.generator import Generator

    return Generator(plan, cpu_reduced_precision=cpu_reduced_precision, ops=ops)


def build_discriminator(
    plan: Plan, patch: bool = False, *, cpu_reduced_precision: bool = False, ops: str = "fast"
) -> torch.nn.Module:
    """A freshly initialized discriminator for the Plan; `patch=True` gives the fully convolutional PatchGAN
    (DCGAN family only).

    Called as `D(img, c)` with images `[N, C, H, W]` in [-1, 1]; returns logits `[N, 1]` (PatchGAN: one logit
    per patch). `cpu_reduced_precision` and `ops` choose how this network computes, as for `build_generator`.

    Example:
        ```python
        import torch
        from ganforge import build_discriminator, make_plan

        D = build_discriminator(make_plan("tiny", 32))
        logits = D(torch.zeros(4, 3, 32, 32), None)  # [4, 1]
        ```
    """
    from ganforge.nn.numerics import Numerics

    Numerics(ops, cpu_reduced_precision)  # A bad choice raises NumericsError (a GanforgeError) naming the choices.
    if plan.family == "dcgan":
        from ganforge.models.dcgan import DCGANDiscriminator, PatchDiscriminator

        return PatchDiscriminator(plan) if patch else DCGANDiscriminator(plan)
    from ganforge.models.discriminator import Discriminator

    if plan.is_sg3:  # StyleGAN3 trains against the StyleGAN2 discriminator, built from the same Plan.
        plan = plan.discriminator_plan()
    return Discriminator(plan, cpu_reduced_precision=cpu_reduced_precision, ops=ops)


# ----------------------------------------------------------------------------
# Trained models.


def load_generator(path: str | Path, which: str = "G_ema") -> torch.nn.Module:
    """The trained generator of a checkpoint, in eval mode on the CPU with gradients off.

    Reads a ganforge checkpoint (`.safetensors`: its metadata, Plan and every tensor shape are checked
    before the network is built) or an official StyleGAN2-ADA or StyleGAN3 `network-snapshot-*.pkl` (read by a
    restricted unpickler that runs no code from the file). `which` picks the network: `G_ema` (the
    default, the one to sample from) or `G`.

    The result is called as `G(z, c, truncation_psi=1.0, truncation_cutoff=None, noise_mode='const')` and
    returns `[N, C, H, W]` in [-1, 1]. Raises a `GanforgeError` subclass with one sentence when the file is
    missing, damaged, hostile or holds no such network.

    Example:
        ```python
        import torch
        import ganforge

        G = ganforge.load_generator("ffhq.pkl")  # or a ganforge .safetensors checkpoint
        img = G(torch.randn(1, G.z_dim), None, truncation_psi=0.7)
        ```
    """
    from ganforge.modelio.load import load_generator as load

    return load(path, which)


@dataclass(frozen=True)
class Checkpoint:
    """A ganforge checkpoint as `load_checkpoint` returns it: every part checked, the weights as tensors.

    Build a network from it with `build(name)`, or yourself with `build_generator(ckpt.plan)` and
    `load_state_dict(ckpt.networks["G_ema"])`. Optimizer states are left out: training resumes with
    `ganforge train --resume`.

    Example:
        ```python
        ckpt = ganforge.load_checkpoint("checkpoint-000025000000.safetensors")
        print(ckpt.kind, ckpt.plan.resolution_text, ckpt.meta.get("cur_nimg"))
        D = ckpt.build("D")
        ```
    """

    path: Path  # The file.
    kind: str  # "training" (G, D, G_ema, optimizers and loop state) or "export" (networks only).
    plan: Plan  # The generators' Plan.
    d_plan: Plan  # The discriminator's Plan: the same as `plan` unless D was built with other channel settings.
    patch_d: bool  # The discriminator is a DCGAN PatchGAN.
    meta: dict  # The checked ganforge metadata: plan, config, cur_nimg, kimg … (JSON values).
    networks: dict[str, dict[str, torch.Tensor]]  # "G", "D", "G_ema" (those present) -> state dict.

    def build(self, name: str = "G_ema") -> torch.nn.Module:
        """The network `name` ("G", "D" or "G_ema") with its weights, in eval mode on the CPU with gradients off.

        Example:
            ```python
            G = ckpt.build("G_ema")
            ```
        """
        from ganforge.modelio import checkpoint as ck
        from ganforge.modelio.check import load_into

        if name not in self.networks:
            have = ", ".join(self.networks)
            raise ck.CheckpointError(f"{self.path} holds no {name} network (it has {have}): choose one of those")
        net = build_discriminator(self.d_plan, self.patch_d) if name == "D" else build_generator(self.plan)
        load_into(net, self.networks[name], f"{name} in {self.path}")
        return net.eval().requires_grad_(False)


def load_checkpoint(path: str | Path) -> Checkpoint:
    """A ganforge checkpoint's Plan, metadata and network weights, with every part checked.

    Safe for files from anywhere: the header is parsed by structure (no code runs), the metadata and Plan
    are type- and range-checked, every tensor's name and shape is compared with what the Plan builds, the
    SHA-256 over the whole file is verified, and NaN or infinite weights are refused. Each refusal is a
    `CheckpointError` with one sentence that names the file and what is wrong. Official `.pkl` snapshots
    are refused with the command that converts them (`ganforge convert`); `load_generator` reads them
    directly. For the raw tensors including optimizer states, see `ganforge.modelio.checkpoint.load_checkpoint`.

    Example:
        ```python
        import ganforge

        ckpt = ganforge.load_checkpoint("runs/demo/run/checkpoint-000000012000.safetensors")
        print(ckpt.kind, ckpt.plan.resolution_text, sorted(ckpt.networks))  # training 32x32 ['D', 'G', 'G_ema']
        G = ckpt.build("G_ema")
        ```
    """
    from ganforge.modelio import checkpoint as ck
    from ganforge.modelio.check import inspect_file

    contents = inspect_file(path)
    tensors = contents.file.read(parts=contents.nets)  # Verifies the checksum over the whole file.
    bad = ck.nonfinite_part(tensors, contents.nets)
    if bad:
        raise ck.CheckpointError(
            f"{contents.file.path} holds non-finite (NaN or infinite) {bad} weights: use an earlier checkpoint"
        )
    return Checkpoint(
        path=contents.file.path,
        kind=contents.kind,
        plan=contents.plan,
        d_plan=contents.d_plan,
        patch_d=contents.patch_d,
        meta=contents.file.meta,
        networks={name: ck.split(tensors, name) for name in contents.nets},
    )


# ----------------------------------------------------------------------------
# Training.


def train(config: TrainConfig | dict | str | Path, *, dataset=None, log=print, **options) -> TrainState:
    """Run training as `ganforge train` does, and return the final state (`state.run_dir` is the run folder).

    `config` is a `TrainConfig`, a dict of its keys (TOML names, dashes or underscores) or the path of a
    TOML or JSON file (a run's `config.json` works too); keyword `options` override it, as command-line
    options override `--config`. Every value is checked before anything is written: a wrong key, type or
    range raises `ConfigError` naming the key and the fix, and data that does not fit the model raises
    before the run folder exists. Presets fill what was left unset, from the data's size (`preset="auto"`,
    the official formula). `dataset` replaces `config.data` with an in-memory dataset (an object with
    `shape`, `c_dim`, `__len__` and `__getitem__` as `ganforge.data.ImageDataset`). `log` receives each
    progress line (`print` by default).

    Example:
        ```python
        import ganforge

        state = ganforge.train({"data": "faces.zip", "kimg": 500, "outdir": "runs"}, gamma=2)
        # or: ganforge.train("experiment.toml", resume="latest")
        print(state.run_dir, state.cur_nimg)
        ```
    """
    import dataclasses

    from ganforge.training.config import TrainConfig, load_config_file, merge
    from ganforge.training.loop import train as run

    if isinstance(config, TrainConfig):
        values = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
    elif isinstance(config, dict):
        values = dict(config)
    elif isinstance(config, (str, os.PathLike)):
        values = load_config_file(config)
    else:
        raise TypeError(
            "ganforge.train(config): give a TrainConfig, a dict of its keys or a TOML/JSON path, "
            f"not {type(config).__name__}"
        )
    cfg = merge(values, options)
    return run(cfg, dataset=dataset, log=log)
