import os
import sys
from pathlib import Path

import pytest
import torch

from ganforge import build_generator, make_plan
from ganforge.modelio.checkpoint import save_checkpoint


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors: one thread does the work of two without the idle spinning of a second (restored after).

    A test file asks for it with `pytestmark = pytest.mark.usefixtures("one_thread")`."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# Top-level packages of the official repositories (and the stand-ins put in for their optional imports).
OFFICIAL_PACKAGES = ("training", "dnnlib", "torch_utils", "metrics", "legacy", "viz", "gui_utils")
STAND_INS = ("requests", "psutil")


@pytest.fixture(autouse=True, scope="module")
def _no_official_modules_leak():
    """Each test file leaves sys.path and sys.modules free of the official code it imported.

    Tests that guard the safe loaders assert that no official module is ever imported; a benchmark
    or parity test that imports the official code in-process must not make them fail (or pass) by order.
    """
    path, before = list(sys.path), set(sys.modules)
    yield
    sys.path[:] = path
    for name in set(sys.modules) - before:
        top = name.split(".")[0]
        stand_in = top in STAND_INS and getattr(sys.modules[name], "__file__", None) is None
        # The official persistence module registers each unpickled class's source as _imported_module_<hash>.
        if top in OFFICIAL_PACKAGES or stand_in or top.startswith("_imported_module_"):
            del sys.modules[name]


class MemDataset(torch.utils.data.Dataset):
    """The built-in demo shapes, in memory: (uint8 [C, H, W], one-hot label [3])."""

    def __init__(self, n: int = 96, res: int = 16, seed: int = 0):
        import numpy as np

        from ganforge.data.demo import demo_image

        rng = np.random.RandomState(seed)
        imgs = np.stack([demo_image(rng, res, res, i % 3) for i in range(n)])
        self.imgs = torch.from_numpy(imgs).permute(0, 3, 1, 2).contiguous()
        self.labels = torch.nn.functional.one_hot(torch.arange(n) % 3, 3).float()
        self.shape = list(self.imgs.shape[1:])
        self.c_dim = 3
        self.label_counts = [int(c) for c in self.labels.sum(0)]

    def __len__(self):
        return len(self.imgs)

    def __getitem__(self, i):
        return self.imgs[i], self.labels[i]


@pytest.fixture
def mem_dataset():
    return MemDataset()


def tiny_generator(c_dim: int = 0, resolution: int | str = 16, seed: int = 0) -> torch.nn.Module:
    """A tiny StyleGAN2 G (num_ws = 6 at 16 px) with weights from a seeded generator and a non-zero w_avg."""
    torch.manual_seed(seed)
    plan = make_plan("tiny", resolution, c_dim=c_dim)
    G = build_generator(plan).eval()
    with torch.no_grad():
        G.mapping.w_avg.copy_(
            G.mapping(torch.randn(256, G.z_dim), None if c_dim == 0 else torch.eye(c_dim)[torch.arange(256) % c_dim])[
                :, 0
            ].mean(0)
        )
        for name, p in G.named_parameters():  # Visible noise: noise_strength starts at 0 in a fresh network.
            if name.endswith("noise_strength"):
                p.fill_(0.3)
    return G.requires_grad_(False)


def save_tiny(G: torch.nn.Module, path: Path) -> Path:
    """An export checkpoint that load_generator reads."""
    save_checkpoint(
        path, {f"G_ema.{k}": v for k, v in G.state_dict().items()}, {"kind": "export", "plan": G.plan.to_dict()}
    )
    return path


def tiny_checkpoint(tmp_path_factory, c_dim: int = 0) -> tuple[torch.nn.Module, Path]:
    """(G, checkpoint path): the unconditional tiny 16 px model, or a conditional one (seeded differently)."""
    G = tiny_generator(c_dim=c_dim, seed=c_dim)
    return G, save_tiny(G, tmp_path_factory.mktemp("tiny") / f"tiny-c{c_dim}.safetensors")


# The tiny checkpoints of the tools tests: one per test module.


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[torch.nn.Module, Path]:
    return tiny_checkpoint(tmp_path_factory)


@pytest.fixture(scope="module")
def tiny_cond(tmp_path_factory) -> tuple[torch.nn.Module, Path]:
    return tiny_checkpoint(tmp_path_factory, c_dim=3)


@pytest.fixture
def cli(capsys):
    """Run `ganforge ARGS` in-process through the real entry point: (exit code, stdout, stderr)."""
    from ganforge.cli import main

    def run(*args) -> tuple[int, str, str]:
        capsys.readouterr()
        with pytest.raises(SystemExit) as exit_info:
            main([str(a) for a in args])
        out, err = capsys.readouterr()
        return exit_info.value.code, out, err

    return run


@pytest.fixture
def always_diverge(monkeypatch):
    """Every loss phase leaves an infinite D weight behind: training diverges at every tick."""
    from ganforge.training.loss import StyleGAN2Loss

    original = StyleGAN2Loss.accumulate

    def poisoned(self, phase, *args, **kwargs):
        original(self, phase, *args, **kwargs)
        with torch.no_grad():
            next(self.D.parameters()).fill_(float("inf"))

    monkeypatch.setattr(StyleGAN2Loss, "accumulate", poisoned)


SHARED = Path(__file__).resolve().parents[1].parent / "shared"
# The official code and pickles, beside the repository (never shipped): every reference test finds them here.
ANCHORS = SHARED / "anchors"
OFFICIAL_SG2 = ANCHORS / "stylegan2-ada-pytorch"
OFFICIAL_SG3 = ANCHORS / "stylegan3"
OFFICIAL_PKLS = ANCHORS / "official-pkls"
OFFICIAL_PKLS_SG3 = ANCHORS / "official-pkls-sg3"


def require_shared(relative: str | Path, marker: str, why: str) -> Path:
    """SHARED/relative (or a path such as OFFICIAL_SG2) when its `marker` file exists; else skip the test, or fail
    it under CI (the CI environment sets CI and always provides the shared folder, so a skip there would hide a
    broken test)."""
    path = SHARED / relative
    if (path / marker).exists():
        return path
    message = f"{path} not found: {why}"
    if os.environ.get("CI"):
        pytest.fail(message + " (CI is set, where it must be present)", pytrace=False)
    pytest.skip(message, allow_module_level=True)


class RandomImages(torch.utils.data.Dataset):
    """n seeded random uint8 images [C, H, W] without labels: a dataset of any size for the loop."""

    def __init__(self, n: int, channels: int, height: int, width: int, seed: int = 0):
        gen = torch.Generator().manual_seed(seed)
        self.imgs = torch.randint(0, 255, (n, channels, height, width), dtype=torch.uint8, generator=gen)
        self.shape, self.c_dim, self.label_counts = [channels, height, width], 0, []

    def __len__(self):
        return len(self.imgs)

    def __getitem__(self, i):
        return self.imgs[i], torch.zeros(0)


def tiny_run_config(tmp_path, **options):
    """A TrainConfig for a short tiny run in tmp_path/run (in-memory data, no workers or TensorBoard, resumable);
    `options` override."""
    from ganforge.training.config import TrainConfig

    base = dict(
        data="mem",
        outdir=str(tmp_path),
        run_name="run",
        preset="tiny",
        batch=8,
        workers=0,
        tensorboard=False,
        resume="latest",
        seed=1,
    )
    return TrainConfig(**{**base, **options})


def quiet(*args) -> None:
    """A training log that prints nothing."""
