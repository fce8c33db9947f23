"""Projection on a tiny model: the schedules, the loss going down (mse and a stand-in LPIPS), the files written."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from ganforge.tools.generate import generate
from ganforge.tools.project import (
    ProjectConfig,
    learning_rate,
    load_target,
    noise_buffers,
    noise_regularization,
    project,
    project_file,
    video_steps,
    w_noise_scale,
)

STEPS = 40


class StandInVGG(torch.nn.Module):
    """The VGG16 detector's call signature with a small random conv net: img float [N, 3, H, W] in 0..255."""

    def __init__(self) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.conv1 = torch.nn.Parameter(torch.randn(8, 3, 3, 3, generator=gen) * 0.3)
        self.conv2 = torch.nn.Parameter(torch.randn(8, 8, 3, 3, generator=gen) * 0.2)

    def forward(self, img: torch.Tensor, resize_images: bool = True, return_lpips: bool = False) -> torch.Tensor:
        x = img / 127.5 - 1
        if resize_images:
            x = torch.nn.functional.interpolate(x, size=(16, 16), mode="area")
        f1 = torch.relu(torch.nn.functional.conv2d(x, self.conv1, padding=1))
        f2 = torch.relu(torch.nn.functional.conv2d(f1, self.conv2, stride=2, padding=1))
        feats = [f1.flatten(1), f2.flatten(1)]
        if return_lpips:
            feats = [f / (f.square().sum(dim=1, keepdim=True).sqrt() + 1e-8) for f in feats]
        return torch.cat(feats, dim=1)


@pytest.fixture(scope="module")
def vgg_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("detectors") / "vgg16.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit.script: deprecated, still the detector format.
        torch.jit.script(StandInVGG().eval()).save(str(path))
    return path


@pytest.fixture(scope="module")
def target(tiny):
    """A reachable target: the image of seed 5."""
    G, _ = tiny
    return generate(G, [5])[0]


def test_schedules_follow_the_official_recipe():
    cfg = ProjectConfig()
    assert learning_rate(0.0, cfg) == 0 and learning_rate(0.025, cfg) == pytest.approx(0.05)
    assert learning_rate(0.5, cfg) == pytest.approx(0.1) and learning_rate(0.875, cfg) == pytest.approx(0.05)
    assert w_noise_scale(0.0, 2.0, cfg) == pytest.approx(0.1) and w_noise_scale(0.375, 2.0, cfg) == pytest.approx(0.025)
    assert w_noise_scale(0.8, 2.0, cfg) == 0
    assert video_steps(10, 4) == [2, 5, 8, 9] and video_steps(3, 100) == [0, 1, 2]


def test_noise_regularization_is_small_for_white_noise_and_large_for_smooth(tiny):
    G, _ = tiny
    names = list(noise_buffers(G))
    assert len(names) == 5 and all("noise_const" in n for n in names)  # b4: conv1; b8, b16: conv0 + conv1.
    white = {"a": torch.randn(64, 64, generator=torch.Generator().manual_seed(0))}
    smooth = {"a": torch.ones(64, 64)}
    assert noise_regularization(white) < 1e-3 < noise_regularization(smooth)


def test_mse_projection_reduces_the_loss_and_leaves_g_alone(tiny, target):
    G, _ = tiny
    before = {k: v.clone() for k, v in G.state_dict().items()}
    result = project(G, target, ProjectConfig(num_steps=STEPS), loss="mse")
    assert result.final_dist < 0.5 * result.start_dist
    assert np.mean(result.losses[-5:]) < np.mean(result.losses[:5])
    assert result.w_steps.shape == (STEPS, G.num_ws, G.w_dim) and result.w.shape == (1, G.num_ws, G.w_dim)
    assert torch.equal(result.w_steps[-1, 0], result.w_steps[-1, -1])  # One w shared by every layer.
    assert all(torch.equal(v, G.state_dict()[k]) for k, v in before.items())


def test_lpips_projection_with_a_stand_in_detector_reduces_the_loss(tiny, target, vgg_file):
    from ganforge.tools.project import load_vgg

    G, _ = tiny
    result = project(
        G, target, ProjectConfig(num_steps=STEPS, w_plus=True), loss="lpips", features=load_vgg(vgg_file, "cpu")
    )
    assert result.final_dist < 0.7 * result.start_dist
    assert not torch.equal(result.w_steps[-1, 0], result.w_steps[-1, -1])  # w+: one w per layer.


def test_lpips_without_a_detector_says_what_to_do(tiny, target):
    G, _ = tiny
    with pytest.raises(ValueError, match="pass --vgg PATH/vgg16.pt, or use --loss mse"):
        project(G, target, ProjectConfig(num_steps=2), loss="lpips")
    with pytest.raises(ValueError, match="--loss 'l1'"):
        project(G, target, ProjectConfig(num_steps=2), loss="l1")
    with pytest.raises(ValueError, match="resize it first"):
        project(G, target[:, :8], ProjectConfig(num_steps=2), loss="mse")


def test_project_without_the_vgg_weights_names_the_options_project_has(tiny, target, tmp_path, monkeypatch):
    from ganforge.tools.generate import ToolError

    _, path = tiny
    src = tmp_path / "target.png"
    Image.fromarray(target.permute(1, 2, 0).numpy()).save(src)
    monkeypatch.setenv("GANFORGE_CACHE", str(tmp_path / "cache"))  # No vgg16.pt there.
    with pytest.raises(ToolError) as info:
        project_file(path, src, tmp_path / "proj", steps=2)
    message = str(info.value)
    needs = "--loss lpips (the default) needs the VGG16 weights vgg16.pt, which are not in"
    assert message.startswith(f"{needs} {tmp_path / 'cache'}:")
    assert "pass it with --vgg PATH" in message and message.endswith("or use --loss mse, which needs no weights")
    assert "--allow-download" not in message  # `metrics` has it; `project` does not.
    with pytest.raises(ToolError, match=r"--vgg .*missing.pt does not exist: .* or use --loss mse"):
        project_file(path, src, tmp_path / "proj", steps=2, vgg=tmp_path / "missing.pt")
    assert not (tmp_path / "proj").exists()
    _, paths = project_file(path, src, tmp_path / "proj", steps=2, loss="mse", save_video=False)  # No weights needed.
    assert paths["image"].exists()


def test_project_file_writes_image_w_and_video(tiny, target, tmp_path, vgg_file):
    _, path = tiny
    src = tmp_path / "target.jpg"
    Image.fromarray(np.kron(target.permute(1, 2, 0).numpy(), np.ones((3, 4, 1), np.uint8))).save(src, quality=95)
    result, paths = project_file(path, src, tmp_path / "proj", steps=12, vgg=vgg_file, loss="lpips", seed=3)
    assert set(paths) == {"target", "image", "npz", "safetensors", "video"}
    assert np.asarray(Image.open(paths["image"])).shape == (16, 16, 3)
    w = np.load(paths["npz"])["w"]
    assert w.shape == (1, 6, 64) and np.array_equal(w, result.w.numpy())
    saved = load_file(paths["safetensors"])
    assert torch.equal(saved["w"], result.w) and len([k for k in saved if k.startswith("noise.")]) == 5
    assert paths["video"].suffix in (".mp4", ".gif")
    if paths["video"].suffix == ".gif":
        assert Image.open(paths["video"]).size == (32, 16)
    assert math.isfinite(result.final_dist)


def test_load_target_crops_to_the_model_aspect(tmp_path):
    arr = np.zeros([40, 80, 3], np.uint8)
    arr[:, 20:60] = 255  # The centre square is white; the sides are cropped away.
    Image.fromarray(arr).save(tmp_path / "wide.png")
    img = load_target(tmp_path / "wide.png", (3, 16, 16))
    assert img.shape == (3, 16, 16) and img.dtype == torch.uint8 and img[:, :, 2:-2].min() >= 250
    assert load_target(tmp_path / "wide.png", (1, 8, 16)).shape == (1, 8, 16)
    with pytest.raises(ValueError, match="missing.png does not exist"):
        load_target(tmp_path / "missing.png", (3, 16, 16))
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(ValueError, match="cannot read it as an image"):
        load_target(tmp_path / "notes.png", (3, 16, 16))
