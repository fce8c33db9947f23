"""TorchScript and ONNX exports of G reproduce the eager network, at batch sizes other than the traced one."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from ganforge.modelio import export
from ganforge.modelio.export import (
    ExportedGenerator,
    ExportError,
    eager_reference,
    example_inputs,
    export_checkpoint,
    export_generator,
)

TOL = 1e-4
needs_onnx = pytest.mark.skipif(
    importlib.util.find_spec("onnx") is None or importlib.util.find_spec("onnxscript") is None,
    reason="onnx and onnxscript are not installed (pip install 'ganforge[onnx]')",
)


def test_wrapper_is_the_same_math_as_eager(tiny):
    G, _ = tiny
    wrapper = ExportedGenerator(G)
    for n in (1, 4):
        inputs = example_inputs(G, n, psi=0.5)
        with torch.no_grad():
            assert (wrapper(*inputs) - eager_reference(G, inputs)).abs().max() < 1e-5


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated")
@pytest.mark.parametrize("which", ["tiny", "tiny_cond"])
def test_torchscript_reloads_and_matches_eager(which, request, tmp_path):
    G, path = request.getfixturevalue(which)
    report = export_checkpoint(path, "torchscript", tmp_path / "G.pt")
    assert report.max_abs_diff < TOL and report.checked_with == "torch.jit.load"
    loaded = torch.jit.load(str(tmp_path / "G.pt"))
    inputs = example_inputs(G, 5, psi=1.0)
    assert loaded(*inputs).shape == (5, 3, 16, 16)
    assert (loaded(*inputs) - eager_reference(G, inputs)).abs().max() < TOL


@needs_onnx
def test_onnx_matches_eager_with_a_dynamic_batch(tiny_cond, tmp_path):
    G, _ = tiny_cond
    report = export_generator(G, "onnx", tmp_path / "G.onnx")
    assert report.max_abs_diff < TOL and report.batch_sizes == (1, 3) and report.files == [tmp_path / "G.onnx"]
    # Numerically again through the other checker (onnx's reference evaluator, used when onnxruntime is absent).
    real = importlib.util.find_spec
    hide = lambda name, *args: None if name == "onnxruntime" else real(name, *args)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(importlib.util, "find_spec", hide)
        diff, how = export.check_onnx(G, tmp_path / "G.onnx")
    assert how == "onnx.reference" and diff < TOL
    if importlib.util.find_spec("onnxruntime") is not None:
        import onnxruntime

        session = onnxruntime.InferenceSession(str(tmp_path / "G.onnx"), providers=["CPUExecutionProvider"])
        inputs = example_inputs(G, 7, psi=0.6)
        out = session.run(None, {"z": inputs[0].numpy(), "psi": inputs[1].numpy(), "c": inputs[2].numpy()})[0]
        assert out.shape == (7, 3, 16, 16) and np.abs(out - eager_reference(G, inputs).numpy()).max() < TOL


def test_bad_format_and_missing_package_are_named(tiny, tmp_path, monkeypatch):
    G, _ = tiny
    with pytest.raises(ExportError, match="--format 'tflite': choose torchscript or onnx"):
        export_generator(G, "tflite", tmp_path / "G.x")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxscript" else real(name, *a))
    with pytest.raises(ExportError, match=r"needs the 'onnxscript' package: pip install 'ganforge\[onnx\]'"):
        export_generator(G, "onnx", tmp_path / "G.onnx")


def test_a_wrong_export_is_refused(tiny, tmp_path, monkeypatch):
    G, _ = tiny
    monkeypatch.setattr(export, "max_diff", lambda *a, **k: 0.5)
    with pytest.raises(ExportError, match="differs from the eager network by 0.5"):
        export_generator(G, "torchscript", tmp_path / "G.pt")
