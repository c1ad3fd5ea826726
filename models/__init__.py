"""Pure model layer: architecture, losses and metrics (no I/O, no tracking)."""

from models.unet import UNet, required_multiple

__all__ = ["UNet", "required_multiple"]
