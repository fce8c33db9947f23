"""Optional torch.compile with a clean eager fallback.

`compiled(module)` returns a callable that runs the module through torch.compile and, if compiling
fails (no C++ compiler for the CPU backend, an unsupported op, an old Triton), warns once and runs
the module eagerly from then on. The module itself is not wrapped: its state_dict, parameters and
attributes stay as they were, so checkpoints never see the compiled form.

What it cannot do: graphs compiled by AOTAutograd support one backward pass, not the double backward
of R1 and path-length regularization, so training compiles the main phases only (train/loss.py).
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import torch

# The backend for torch.compile; GANFORGE_COMPILE_BACKEND overrides it (tests use 'aot_eager': no C++ build).
DEFAULT_BACKEND = os.environ.get("GANFORGE_COMPILE_BACKEND", "inductor")


class CompiledOrEager:
    """Calls go to torch.compile(module); after a compile failure, to the module itself."""

    def __init__(self, module: torch.nn.Module, backend: str | None = None, dynamic: bool | None = False):
        self.module = module
        self.backend = backend or DEFAULT_BACKEND
        self._compiled = torch.compile(module, backend=self.backend, dynamic=dynamic)
        self.error: BaseException | None = None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.error is None:
            try:
                return self._compiled(*args, **kwargs)
            except Exception as e:  # noqa: BLE001 - any compile failure falls back to eager.
                if not is_compile_failure(e):
                    raise
                self.error = e
                warnings.warn(
                    f"torch.compile ({self.backend}) failed, running {type(self.module).__name__} eagerly: "
                    f"{type(e).__name__}: {str(e).splitlines()[0][:200]}",
                    stacklevel=2,
                )
        return self.module(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:  # z_dim, c_dim, mapping, ...: the module's own.
        return getattr(self.module, name)


def is_compile_failure(e: BaseException) -> bool:
    """Errors raised by the compiler stack (dynamo, AOTAutograd, inductor, a C++ toolchain), not by the model."""
    module = type(e).__module__ or ""
    return module.startswith(("torch._dynamo", "torch._inductor", "torch._functorch", "triton")) or any(
        word in type(e).__name__ for word in ("Compile", "Inductor", "Backend", "Unsupported")
    )


def compiled(module: torch.nn.Module, enabled: bool = True, backend: str | None = None):
    """The module through torch.compile with eager fallback, or the module itself when not enabled."""
    return CompiledOrEager(module, backend) if enabled else module
