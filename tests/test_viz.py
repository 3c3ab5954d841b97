"""Figures shared by the experiments."""

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest

from jaxnets.viz import image_grid


def test_image_grid_lays_out_panels_with_symmetric_colours():
    images = np.stack([np.full((5, 5), -2.0), np.arange(25.0).reshape(5, 5) - 4, np.ones((5, 5))])
    fig = image_grid(images, titles=["a", "b", "c"], cols=2, suptitle="filters")
    axes = fig.axes
    assert len(axes) == 4  # 2 rows x 2 columns, the last panel blank
    shown = [ax.images[0] for ax in axes if ax.images]
    assert len(shown) == 3 and [ax.get_title() for ax in axes[:3]] == ["a", "b", "c"]
    assert shown[1].get_clim() == (-20.0, 20.0)  # symmetric about zero, per panel
    assert fig._suptitle.get_text() == "filters"


def test_image_grid_rejects_bad_shapes():
    with pytest.raises(ValueError, match=r"shape \(n, height, width\); got \(5, 5\)"):
        image_grid(np.zeros((5, 5)))
    with pytest.raises(ValueError, match="got 1 titles for 2 images"):
        image_grid(np.zeros((2, 3, 3)), titles=["x"])
