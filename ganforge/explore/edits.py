"""The explorer's direction sliders (`--directions FILE`) and StyleGAN3 input moves: what a model page is offered,
the checks of a request against the model, and the two edits render applies.

Both take the command-line code paths, so a saved image remakes bit for bit with `ganforge generate`: a slider
adds `Directions.offset` to the file's ws (as `generate --direction FILE:K --strength S`), and tx, ty, rotate
set the Fourier input's transform through `move_input` (as `generate --translate TX,TY --rotate DEG`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

import torch

from ganforge.errors import GanforgeError
from ganforge.explore.params import ParamError, RenderSettings
from ganforge.tools.directions import Directions, add_offset, check_model, layers_text
from ganforge.tools.generate import move_input

if TYPE_CHECKING:
    from ganforge.explore.render import LoadedModel
    from ganforge.models.stylegan3 import StyleGAN3Generator

MAX_SLIDERS = 8  # Direction sliders on the page: the strongest directions of the file.
SLIDER_RANGE = 5.0  # Each slider spans -5..5 (GANSpace: standard deviations; SeFa: units of w).


def directions_info(d: Directions | None, model: LoadedModel) -> dict[str, Any] | None:
    """What /api/model says about the directions file: the sliders to draw, or why this model has none."""
    if d is None:
        return None
    info: dict[str, Any] = dict(
        method=d.method,
        source=d.checkpoint,  # The checkpoint the directions were computed from.
        count=min(d.count, MAX_SLIDERS),
        layers=list(d.layers),
        layers_text=layers_text(d.layers),  # '0-3,5', as --layers takes them.
        unit="standard deviations" if d.method == "ganspace" else "units of w",
        values=[round(float(v), 6) for v in d.values[:MAX_SLIDERS]],
        range=SLIDER_RANGE,
    )
    try:
        check_model(d, model.G, flag="--directions")
    except GanforgeError as e:
        return dict(info, count=0, problem=str(e))
    return info


def check_edits(s: RenderSettings, model: LoadedModel, d: Directions | None) -> None:
    """Direction strengths and input moves checked against the model and the directions file (ParamError)."""
    if s.moving and not model.sg3:
        kind = "a StyleGAN2" if model.stylegan else "a DCGAN"
        raise ParamError(
            "tx, ty and rotate move the Fourier input of a StyleGAN3 generator, and this model is "
            f"{kind} generator: leave them out"
        )
    if not any(s.dirs):
        return
    if d is None:
        raise ParamError("dirs was given but no directions file is loaded: restart with --directions FILE")
    try:
        check_model(d, model.G, flag="--directions")
    except GanforgeError as e:
        raise ParamError(str(e), status=422) from None
    if len(s.dirs) > min(d.count, MAX_SLIDERS):
        raise ParamError(f"dirs has {len(s.dirs)} values but the page has {min(d.count, MAX_SLIDERS)} sliders")


def apply_directions(ws: torch.Tensor, s: RenderSettings, d: Directions | None) -> torch.Tensor:
    """ws with the sliders' offset added to the file's ws (checked by check_edits first)."""
    if d is None or not any(s.dirs):
        return ws
    return add_offset(ws, d.offset(s.dirs), d.layers)


def move(model: LoadedModel, s: RenderSettings) -> None:
    """Set a StyleGAN3 model's input transform for this render: the moves, or the one it was loaded with."""
    if not model.sg3:
        return
    if s.moving:
        move_input(model.G, (s.tx, s.ty), s.rotate)
    elif model.home_transform is not None:  # Set by load_model for every StyleGAN3 model.
        G = cast("StyleGAN3Generator", model.G)
        G.synthesis.input.transform.copy_(model.home_transform)
