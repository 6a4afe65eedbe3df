"""Compression as pure functions over ``torch.nn.Module``: ALDS, IMP and their metrics."""
