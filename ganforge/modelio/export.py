"""Export G_ema (mapping + synthesis) as TorchScript or ONNX, checked against the eager network.

The exported graph takes z [N, z_dim], truncation_psi (a 0-d float tensor) and, for conditional models,
one-hot labels c [N, c_dim], and returns images [N, C, H, W] in [-1, 1] with noise_mode='const'.
It runs the non-fused modulated conv (activations scaled around one shared conv; same math as the fused
grouped conv with groups=N), so the batch size stays free in the exported graph.

ONNX goes through torch's torch.export-based exporter (needs the `onnxscript` package): the legacy
TorchScript-based exporter cannot convert the FIR filters, whose depthwise kernels are sized from traced
shapes. The file is checked numerically with onnxruntime when it is installed, else with onnx.checker and
onnx's reference evaluator.
"""

from __future__ import annotations

import importlib.util
import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, cast

import numpy as np
import torch
from torch import nn

from ganforge.errors import GanforgeError
from ganforge.tools.mix import require_stylegan

if TYPE_CHECKING:
    from ganforge.models.generator import Generator

FORMATS = ("torchscript", "onnx")
ONNX_OPSET = 18
CHECK_BATCHES = (1, 3)  # Two batch sizes, neither the traced one (2): the batch dim must really be free.
CHECK_PSI = 0.7
MAX_SINGLE_FILE = 1.8e9  # Bytes; protobuf caps one .onnx file at 2 GB, larger weights go to FILE.data.


class ExportError(GanforgeError, RuntimeError):
    """An export that failed or did not reproduce the eager network; the message says what to do."""


class ExportedGenerator(nn.Module):
    """z [N, z_dim], psi [] (, c [N, c_dim]) -> img [N, C, H, W]: truncation as w_avg.lerp(w, psi)."""

    def __init__(self, G: nn.Module):
        super().__init__()
        self.G = require_stylegan(G, "export").eval().requires_grad_(False)
        sg3 = getattr(getattr(G, "plan", None), "is_sg3", False)  # StyleGAN3 synthesis has no fused_modconv.
        self.synthesis_kwargs = {} if sg3 else {"fused_modconv": False}

    def forward(self, z: torch.Tensor, psi: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        ws = self.G.mapping(z, c)  # [N, num_ws, w_dim]
        ws = self.G.mapping.w_avg.lerp(ws, psi.to(ws.dtype))
        return self.G.synthesis(ws, noise_mode="const", force_fp32=True, **self.synthesis_kwargs)


@dataclass
class ExportReport:
    path: Path
    format: str
    max_abs_diff: float  # max |exported - eager G(z, c, psi, noise_mode='const')| over the checked batches.
    batch_sizes: tuple[int, ...]
    checked_with: str  # torch.jit.load, onnxruntime or onnx.reference.
    files: list[Path] = field(default_factory=list)  # Everything written (an .onnx may have a .data beside it).


def example_inputs(G: Generator, n: int, psi: float = CHECK_PSI, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """(z, psi) or (z, psi, c) for a batch of n, from a fixed seed."""
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn([n, G.z_dim], generator=gen)
    psi_t = torch.tensor(psi, dtype=torch.float32)
    if G.c_dim == 0:
        return z, psi_t
    c = nn.functional.one_hot(torch.arange(n) % G.c_dim, G.c_dim).float()
    return z, psi_t, c


def input_names(G: Generator) -> list[str]:
    return ["z", "psi"] if G.c_dim == 0 else ["z", "psi", "c"]


@torch.no_grad()
def eager_reference(G: Generator, inputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """The network as generate() runs it (fused modconv where eval mode picks it)."""
    z, psi = inputs[0], float(inputs[1])
    c = inputs[2] if len(inputs) > 2 else None
    return G(z, c, truncation_psi=psi, noise_mode="const", force_fp32=True)


def max_diff(G: Generator, run, batches: tuple[int, ...] = CHECK_BATCHES) -> float:
    """max |run(inputs) - eager| over the batch sizes; run takes the inputs tuple and returns a numpy array."""
    worst = 0.0
    for n in batches:
        inputs = example_inputs(G, n, seed=n)
        got = np.asarray(run(inputs))
        ref = eager_reference(G, inputs).numpy()
        if got.shape != ref.shape:
            raise ExportError(
                f"the exported model returned shape {list(got.shape)} for a batch of {n}, expected "
                f"{list(ref.shape)}: the batch size was frozen into the graph"
            )
        worst = max(worst, float(np.abs(got - ref).max()))
    return worst


# ----------------------------------------------------------------------------
# TorchScript.


def export_torchscript(G: nn.Module, path: str | Path) -> ExportReport:
    """torch.jit.trace of ExportedGenerator, saved, re-loaded and compared with eager at two batch sizes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    wrapper = ExportedGenerator(G)
    G = wrapper.G  # The same network, typed as the StyleGAN2 generator that ExportedGenerator checked it is.
    with warnings.catch_warnings(), torch.no_grad():
        # Tracing warns about deprecation and about Python-side shape checks (assert_shape); neither changes the graph.
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(wrapper, example_inputs(G, 2), check_trace=False)
    traced.save(str(path))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit is deprecated in torch 2.x but still works.
        loaded = torch.jit.load(str(path), map_location="cpu")
    diff = max_diff(G, lambda inputs: loaded(*inputs).numpy())
    return ExportReport(path, "torchscript", diff, CHECK_BATCHES, "torch.jit.load", [path])


# ----------------------------------------------------------------------------
# ONNX.


def _need(module: str, why: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise ExportError(f"{why} needs the {module!r} package: pip install 'ganforge[onnx]'")


def export_onnx(G: nn.Module, path: str | Path, opset: int = ONNX_OPSET) -> ExportReport:
    """torch.onnx.export (torch.export-based, dynamic batch), then a numerical check at two batch sizes."""
    _need("onnx", "ONNX export")
    _need("onnxscript", "ONNX export (torch's exporter)")
    if opset < 17:
        raise ExportError(f"--opset {opset}: pass 17 or newer")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    wrapper = ExportedGenerator(G)
    G = wrapper.G  # The same network, typed as the StyleGAN2 generator that ExportedGenerator checked it is.
    names = input_names(G)
    batch = torch.export.Dim("batch", min=1, max=4096)
    shapes = {"z": {0: batch}, "psi": None, "c": {0: batch}}
    external = sum(t.numel() * t.element_size() for t in G.state_dict().values()) > MAX_SINGLE_FILE
    quiet = logging.getLogger("torch.onnx")  # It logs one line per torchvision op it cannot register.
    level = quiet.level
    try:
        quiet.setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                wrapper,
                example_inputs(G, 2),
                str(path),
                input_names=names,
                output_names=["img"],
                opset_version=opset,
                dynamo=True,
                external_data=external,
                verbose=False,
                dynamic_shapes={k: shapes[k] for k in names},
            )
    except Exception as e:  # The exporter raises many types; the cause is kept in the chain.
        raise ExportError(
            f"torch.onnx.export failed ({type(e).__name__}: {str(e)[:300]}): try --format "
            f"torchscript, or another --opset"
        ) from e
    finally:
        quiet.setLevel(level)
    files = [path] + ([Path(f"{path}.data")] if Path(f"{path}.data").exists() else [])
    diff, how = check_onnx(G, path)
    return ExportReport(path, "onnx", diff, CHECK_BATCHES, how, files)


def check_onnx(G: Generator, path: Path) -> tuple[float, str]:
    """(max abs diff to eager, checker used): onnxruntime if installed, else onnx.reference (slow, small models)."""
    import onnx

    onnx.checker.check_model(str(path), full_check=True)
    if importlib.util.find_spec("onnxruntime") is not None:
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        run = lambda inputs: session.run(None, _feed(G, inputs))[0]
        return max_diff(G, run), "onnxruntime"
    from onnx.reference import ReferenceEvaluator

    evaluator = ReferenceEvaluator(onnx.load(str(path)))
    run_reference = lambda inputs: cast(list, evaluator.run(None, _feed(G, inputs)))[0]  # A list of the outputs.
    return max_diff(G, run_reference), "onnx.reference"


def _feed(G: Generator, inputs: tuple[torch.Tensor, ...]) -> dict[str, np.ndarray]:
    return {name: t.numpy() for name, t in zip(input_names(G), inputs, strict=True)}


# ----------------------------------------------------------------------------
# Entry point.


def export_generator(G: nn.Module, fmt: str, out: str | Path, tolerance: float = 1e-4) -> ExportReport:
    """Export G as `fmt` to `out` and check it; raises ExportError when the outputs differ by more than tolerance."""
    if fmt not in FORMATS:
        raise ExportError(f"--format {fmt!r}: choose {' or '.join(FORMATS)}")
    report = export_torchscript(G, out) if fmt == "torchscript" else export_onnx(G, out)
    if not report.max_abs_diff <= tolerance:
        raise ExportError(
            f"the {fmt} export differs from the eager network by {report.max_abs_diff:.3g} (more than "
            f"{tolerance:g}): the file {report.path} is not trustworthy; report this as a bug"
        )
    return report


def export_checkpoint(checkpoint: str | Path, fmt: str, out: str | Path) -> ExportReport:
    """Load a checkpoint's G_ema and export it (see export_generator); the format and the output path are checked
    before the checkpoint is read."""
    from ganforge.images import check_output_file
    from ganforge.modelio.load import load_generator

    if fmt not in FORMATS:
        raise ExportError(f"--format {fmt!r}: choose {' or '.join(FORMATS)}")
    out = check_output_file(out, "--out")
    if Path(out).resolve() == Path(checkpoint).resolve():
        raise ExportError(f"--out {out} is the checkpoint itself: choose another output file")
    return export_generator(load_generator(checkpoint), fmt, out)
