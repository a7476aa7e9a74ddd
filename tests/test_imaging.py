"""imaging.py: the one uint8 <-> [-1, 1] conversion every real and generated image takes."""

from __future__ import annotations

import numpy as np
import torch

from progan_lightning.imaging import to_float, to_uint8


def test_uint8_and_float_convert_both_ways_exactly():
    pixels = torch.arange(256, dtype=torch.uint8).view(1, 1, 16, 16)  # [NCHW]
    x = to_float(pixels)
    assert x.dtype == torch.float32
    assert x.min() == -1.0 and x.max() == 1.0 and x[0, 0, 0, 0] == -1.0
    assert torch.equal(to_uint8(x), pixels)
    assert torch.equal(to_float(pixels.numpy()), x)  # arrays too (the cache's memmaps)


def test_each_conversion_passes_its_own_type_unchanged():
    pixels = torch.zeros(1, 3, 4, 4, dtype=torch.uint8)
    assert to_uint8(pixels) is pixels
    x = torch.zeros(1, 3, 4, 4)
    assert to_float(x) is x


def test_floats_outside_the_range_clamp():
    x = torch.tensor([-3.0, -1.0, 0.0, 1.0, 3.0]).view(1, 1, 1, 5)
    assert to_uint8(x).flatten().tolist() == [0, 0, 128, 255, 255]
    assert np.array_equal(to_uint8(-x).flatten().numpy(), [255, 255, 128, 0, 0])
