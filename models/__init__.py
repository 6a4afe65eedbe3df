"""Networks and their registry: ``models.build(name, num_classes, in_channels, seed)``.

Importing the package and listing :func:`available` names does not import torch; the network
modules are imported by the first :func:`build` of one of their networks.
"""

from __future__ import annotations

from models.registry import available, build, register, scalable

__all__ = ["available", "build", "register", "scalable"]
