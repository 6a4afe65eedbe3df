"""The one exception the dataset layer raises for bad input."""

from __future__ import annotations

__all__ = ["DatasetError"]


class DatasetError(RuntimeError):
    """Dataset files missing or unreadable, or sizes beyond the data; the message says the fix."""
