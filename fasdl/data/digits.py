"""scikit-learn's handwritten digits: 1,797 real 8x8 grey images (0–16) of ten classes.

The data ships inside scikit-learn, so it loads offline. Images stay at their native 1x8x8 (no
upsampling): the ``cnn`` and ``mlp`` models are built for it, and the CIFAR networks accept it
too (their adaptive pooling; VGG skips the pools that would shrink it below one pixel).
"""

from __future__ import annotations

import numpy as np

from fasdl.data.arrays import ArrayDataset, PixelNorm, stratified_split
from fasdl.errors import InvalidInput
from fasdl.validate import whole_number

# Mean and standard deviation of all 1,797 images, in 0..1 units (pixels / 16).
DIGITS_NORM = PixelNorm(16.0, (0.3053,), (0.3760,))


def digits_dataset(seed: int, test_fraction: float = 0.2) -> tuple[ArrayDataset, ArrayDataset]:
    """(train, test), N x 1 x 8 x 8, split per class (stratified) by ``seed``."""
    whole_number(seed, "seed", minimum=0)
    if not 0.0 < test_fraction < 1.0:
        raise InvalidInput(
            "test_fraction", f"{test_fraction!r} is not strictly between 0 and 1", "e.g. 0.2"
        )
    from sklearn.datasets import load_digits  # imported here: only this dataset needs scikit-learn

    bunch = load_digits()
    pixels = bunch.images.astype(np.uint8)[:, None, :, :]  # integers 0..16 stored as float64
    labels = bunch.target.astype(np.int64)
    x = DIGITS_NORM.apply(pixels)
    train_idx, test_idx = stratified_split(labels, test_fraction, np.random.default_rng([seed, 2]))
    train = ArrayDataset(x[train_idx], labels[train_idx], 10, "digits-train", DIGITS_NORM)
    test = ArrayDataset(x[test_idx], labels[test_idx], 10, "digits-test", DIGITS_NORM)
    return train, test
