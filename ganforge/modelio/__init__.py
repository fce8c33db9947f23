"""Model files in and out: ganforge checkpoints (`checkpoint`, `check`), official StyleGAN2-ADA pickles read
without running their code (`unpickler`, `untrusted`, `official`), `convert` (pickle -> checkpoint), `export`
(TorchScript / ONNX) and `load_generator` (`load`)."""

from ganforge.modelio.load import load_generator
from ganforge.modelio.official import OfficialSnapshot, load_official_pkl, read_official_pkl
from ganforge.modelio.unpickler import OfficialPickleError, OfficialRecord, UnsafePickleError

__all__ = [
    "OfficialPickleError",
    "OfficialRecord",
    "OfficialSnapshot",
    "UnsafePickleError",
    "load_generator",
    "load_official_pkl",
    "read_official_pkl",
]
