"""Networks and their registry: ``models.build(name, num_classes, in_channels, seed)``."""

from models.registry import available, build, register

__all__ = ["available", "build", "register"]
