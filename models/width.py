"""The width multiplier of the built-in networks (``model.width``)."""

from __future__ import annotations

__all__ = ["scaled"]


def scaled(channels: int, width: float) -> int:
    """``channels`` times the width multiplier, rounded, and at least one.

    Args:
        channels: the layer's width in the paper's network.
        width: the multiplier (``model.width``).

    Returns:
        The scaled width.
    """
    return max(1, round(channels * width))
