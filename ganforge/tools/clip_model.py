"""A Hugging Face CLIP model as a differentiable judge of images against text, for `ganforge clip-search`.

The model comes from `transformers` (an optional dependency: `pip install "ganforge[clip]"`), imported only here and
only when a command asks for CLIP. Weights are read from a local folder (config.json, the weights and the tokenizer
files, as `save_pretrained` writes them) or from the local Hugging Face cache; nothing is downloaded unless the caller
allows it (`--allow-download`).

Contract of the image side: float [N, C, H, W] in [-1, 1] (a generator's output, any size, 1 or 3 channels) =>
[N, D] unit-length embeddings, differentiable. Images are resized to the vision tower's input size and normalised
with the mean/std of the model's preprocessor_config.json (OpenAI CLIP's values when the file is absent).
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ganforge.tools.generate import ToolError

INSTALL = 'pip install "ganforge[clip]"'
# CLIPImageProcessor's defaults, used when a model folder has no preprocessor_config.json.
OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?")  # org/name as the Hugging Face Hub spells it.
WHERE = (
    "pass a folder holding the model's config.json, weights (model.safetensors) and tokenizer files (as "
    "save_pretrained writes them), or the name of a model already in the Hugging Face cache{cache}, or add "
    "--allow-download to fetch a named model"
)


@dataclass
class Clip:
    """A loaded CLIP model, its tokenizer and its image preprocessing."""

    model: Any  # transformers.CLIPModel, eval mode, no gradients for its weights.
    tokenizer: Any  # The tokenizer the model folder declares.
    mean: torch.Tensor  # [1, 3, 1, 1] on the model's device.
    std: torch.Tensor  # [1, 3, 1, 1]
    size: int  # Side of the vision tower's square input.
    name: str  # What --clip-model said.

    @property
    def device(self) -> torch.device:
        return self.mean.device

    def embed_text(self, texts: list[str]) -> torch.Tensor:
        """[len(texts), D] unit-length text embeddings (no gradients)."""
        max_len = int(self.model.config.text_config.max_position_embeddings)
        tokens = self.tokenizer(texts, padding="max_length", max_length=max_len, truncation=True, return_tensors="pt")
        with torch.no_grad():
            out = self.model.text_model(
                input_ids=tokens["input_ids"].to(self.device), attention_mask=tokens["attention_mask"].to(self.device)
            )
            return F.normalize(self.model.text_projection(out.pooler_output).float(), dim=-1)

    def embed_images(self, images: torch.Tensor) -> torch.Tensor:
        """float [N, C, H, W] in [-1, 1] => [N, D] unit-length image embeddings, differentiable in the images."""
        x = clip_pixels(images, self.size, self.mean, self.std)
        out = self.model.vision_model(pixel_values=x)
        return F.normalize(self.model.visual_projection(out.pooler_output).float(), dim=-1)


def clip_pixels(images: torch.Tensor, size: int, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """[-1, 1] [N, C, H, W] -> CLIP's input: RGB, size x size (bilinear, antialiased), (x01 - mean) / std."""
    x = ((images + 1) / 2).clamp(0, 1)
    x = x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x
    if tuple(x.shape[2:]) != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return (x - mean) / std


# ----------------------------------------------------------------------------
# Loading.


def import_transformers() -> Any:
    """The transformers module, or one sentence saying how to install it."""
    try:
        import transformers
    except ImportError:
        raise ToolError(f"clip-search needs Hugging Face transformers, which is not installed: {INSTALL}") from None
    return transformers


@contextlib.contextmanager
def quiet(transformers: Any) -> Iterator[None]:
    """transformers' warnings and progress bars off while loading (our errors say what went wrong)."""
    logging = transformers.utils.logging
    verbosity, bars = logging.get_verbosity(), logging.is_progress_bar_enabled()
    logging.set_verbosity_error()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        logging.set_verbosity(verbosity)
        if bars:
            logging.enable_progress_bar()


def hub_cache() -> str:
    try:
        from huggingface_hub import constants

        return f" ({constants.HF_HUB_CACHE})"
    except (ImportError, AttributeError):
        return ""


def check_source(name: str) -> Path | None:
    """The model folder for a path, or None for a Hub name to look up in the cache; a sentence when neither."""
    if not name.strip():
        raise ToolError(f"--clip-model is empty: {WHERE.format(cache='')}")
    folder = Path(name).expanduser()
    if folder.is_file():
        raise ToolError(f"--clip-model {name} is a file: {WHERE.format(cache='')}")
    if folder.is_dir():
        config = folder / "config.json"
        if not config.is_file():
            raise ToolError(f"--clip-model {name} has no config.json: {WHERE.format(cache='')}")
        try:
            model_type = json.loads(config.read_text()).get("model_type")
        except (ValueError, AttributeError, UnicodeDecodeError):
            raise ToolError(
                f"--clip-model {name}: its config.json is not a JSON object; {WHERE.format(cache='')}"
            ) from None
        if model_type != "clip":
            raise ToolError(
                f"--clip-model {name} holds a {model_type!r} model, not a CLIP model (model_type 'clip'): "
                f"pass a CLIP model's folder or name, e.g. openai/clip-vit-base-patch32"
            )
        return folder
    if name.startswith((".", "/", "~")) or "\\" in name or not REPO_ID.fullmatch(name):
        raise ToolError(f"--clip-model {name} does not exist: {WHERE.format(cache=hub_cache())}")
    return None


def preprocessing(transformers: Any, source: str, allow_download: bool) -> tuple[tuple, tuple]:
    """(mean, std) from the model's preprocessor_config.json, or OpenAI CLIP's values without one."""
    try:
        path = transformers.utils.cached_file(
            source,
            "preprocessor_config.json",
            local_files_only=not allow_download,
            _raise_exceptions_for_missing_entries=False,
            _raise_exceptions_for_connection_errors=False,
        )
    except OSError:
        path = None
    if path is None:
        return OPENAI_CLIP_MEAN, OPENAI_CLIP_STD
    try:
        config = json.loads(Path(path).read_text())
        mean, std = tuple(float(v) for v in config["image_mean"]), tuple(float(v) for v in config["image_std"])
    except (ValueError, KeyError, TypeError, AttributeError):
        raise ToolError(
            f"--clip-model {source}: its preprocessor_config.json has no usable image_mean and image_std "
            f"(three numbers each): fix or remove the file"
        ) from None
    if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
        raise ToolError(
            f"--clip-model {source}: preprocessor_config.json needs three image_mean values and three positive "
            f"image_std values: fix or remove the file"
        )
    return mean, std


def load_clip(name: str, allow_download: bool = False, device: str | torch.device = "cpu") -> Clip:
    """CLIP from a folder or the Hugging Face cache (download only with allow_download), on `device`."""
    transformers = import_transformers()
    folder = check_source(str(name))
    source = str(folder) if folder is not None else str(name)
    local = not allow_download
    with quiet(transformers):
        try:
            model = transformers.CLIPModel.from_pretrained(source, local_files_only=local)
        except (OSError, ValueError) as e:
            raise ToolError(_not_loaded(str(name), folder, allow_download, e)) from None
        try:
            tokenizer = transformers.AutoTokenizer.from_pretrained(source, local_files_only=local)
        except (OSError, ValueError, TypeError) as e:
            raise ToolError(
                f"--clip-model {name} has no tokenizer it can load ({_short(e)}): add the tokenizer files "
                f"(tokenizer.json, or vocab.json and merges.txt, with tokenizer_config.json) beside config.json"
            ) from None
        mean, std = preprocessing(transformers, source, allow_download)
    model = model.eval().requires_grad_(False).to(device=device, dtype=torch.float32)
    as_tensor = lambda v: torch.tensor(v, dtype=torch.float32, device=device).reshape(1, 3, 1, 1)
    size = int(model.config.vision_config.image_size)
    return Clip(model, tokenizer, as_tensor(mean), as_tensor(std), size, str(name))


def _not_loaded(name: str, folder: Path | None, allow_download: bool, e: Exception) -> str:
    if folder is not None:
        return (
            f"--clip-model {name}: cannot load a CLIP model from this folder ({_short(e)}): it needs config.json "
            f"and the weights (model.safetensors or pytorch_model.bin)"
        )
    if allow_download:
        return (
            f"--clip-model {name} could not be downloaded ({_short(e)}): check the name and the network, or pass "
            f"a local folder holding the model"
        )
    return f"--clip-model {name} is not in the Hugging Face cache{hub_cache()}: {WHERE.format(cache='')}"


def _short(e: Exception) -> str:
    """The first line of a library's message, cut short (they often run to a paragraph)."""
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return text[:160] + ("..." if len(text) > 160 else "")
