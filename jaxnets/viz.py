"""Matplotlib figures shared by the experiments: grids of small images (weights, filters,
feature maps, digits).

Lecture: seed 000 (feature learning: first-layer weights and filters shown as images);
seed 004, Lecture 9 §2.3 (line 2254: feature maps).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["image_grid"]


def image_grid(
    images: np.ndarray,
    *,
    titles: Sequence[str] | None = None,
    cols: int = 8,
    signed: bool = True,
    suptitle: str | None = None,
    size: float = 1.3,
):
    """A figure with one panel per image, in rows of ``cols``.

    Args:
      images: (n, height, width) array (weights, filters, feature maps or inputs).
      titles: n panel titles, or None.
      cols: panels per row (fewer when n is smaller).
      signed: True for weights and pre-activations: a diverging colour map symmetric about
        zero per panel (red positive, blue negative); False for intensities (grey, black ink).
      suptitle: the figure title.
      size: inches per panel.

    Returns:
      the matplotlib Figure (save it with :meth:`jaxnets.experiment.Run.savefig`).
    """
    import matplotlib.pyplot as plt

    images = np.asarray(images)
    if images.ndim != 3 or len(images) == 0:
        raise ValueError(f"image_grid needs images of shape (n, height, width); got {images.shape}")
    if titles is not None and len(titles) != len(images):
        raise ValueError(f"got {len(titles)} titles for {len(images)} images; give one per image")
    cols = min(cols, len(images))
    rows = -(-len(images) // cols)
    fig, axes = plt.subplots(
        rows, cols, figsize=(size * cols, size * rows), squeeze=False, layout="constrained"
    )
    for j, ax in enumerate(axes.flat):
        ax.axis("off")
        if j >= len(images):
            continue
        if signed:
            bound = float(np.abs(images[j]).max()) or 1.0
            ax.imshow(images[j], cmap="RdBu_r", vmin=-bound, vmax=bound)
        else:
            ax.imshow(images[j], cmap="gray_r")
        if titles is not None:
            ax.set_title(titles[j], fontsize=8)
    if suptitle:
        fig.suptitle(suptitle)
    return fig
