"""Tools around the networks: importing official StyleGAN2-ADA snapshots safely."""

from ganforge.tools.import_official import OfficialSnapshot, load_official_pkl, read_official_pkl
from ganforge.tools.unpickler import OfficialPickleError, OfficialRecord, UnsafePickleError

__all__ = [
    "OfficialPickleError",
    "OfficialRecord",
    "OfficialSnapshot",
    "UnsafePickleError",
    "load_official_pkl",
    "read_official_pkl",
]
