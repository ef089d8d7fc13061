"""Builds modules on torch's meta device (shapes only, no memory) to count parameters of the full
size stand-in on machines that must not allocate it (our CPU CI). torch 1.13 has no default-device
context manager, so the layer classes get device='meta' for the duration."""
import contextlib
import functools

from torch import nn

LAYERS = ("Linear", "Conv2d", "GroupNorm", "LayerNorm", "Embedding")


@contextlib.contextmanager
def meta_layers():
    originals = {name: getattr(nn, name) for name in LAYERS}
    try:
        for name, cls in originals.items():
            setattr(nn, name, functools.partial(cls, device="meta"))
        yield
    finally:
        for name, cls in originals.items():
            setattr(nn, name, cls)
