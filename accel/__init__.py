"""accel: architecture configuration, the Program, the quantizer/compiler and the command line."""
from .errors import UserError
from .config import ArchConfig, load_arch, default_arch

__all__ = ["UserError", "ArchConfig", "load_arch", "default_arch"]
