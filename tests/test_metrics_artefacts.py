"""The checkerboard index against patterns whose spectra are known exactly."""
import numpy as np
import pytest

from tfganaug.errors import InputError
from tfganaug.metrics.artefacts import checkerboard_index


def test_pure_checkerboard_is_all_nyquist_and_smooth_images_are_not():
    yy, xx = np.mgrid[:32, :32]
    board = ((yy + xx) % 2).astype(float)[None]
    assert checkerboard_index(board) == pytest.approx(1.0)
    smooth = np.exp(-((yy - 16.0) ** 2 + (xx - 16.0) ** 2) / 50.0)[None]
    assert checkerboard_index(smooth) < 1e-6
    # a faint checkerboard on a smooth image: the index grows with its amplitude
    weak, strong = (checkerboard_index(smooth + a * board) for a in (0.01, 0.2))
    assert 0 < weak < strong < 1


def test_white_noise_scores_the_area_share():
    noise = np.random.default_rng(0).normal(size=(200, 32, 32))
    from tfganaug.metrics.artefacts import _nyquist_mask
    share = _nyquist_mask(32, 32, 1).sum() / (32 * 32 - 1)
    assert checkerboard_index(noise) == pytest.approx(share, rel=0.05)


def test_bad_input():
    with pytest.raises(InputError):
        checkerboard_index(np.full((1, 8, 8), np.nan))
    with pytest.raises(InputError):
        checkerboard_index(np.zeros((8, 8)))
