"""Matplotlib figures shared by the experiments: grids of small images (weights, filters,
feature maps, digits) and labelled 2-D maps of embeddings.

Lecture: seed 000 (feature learning: first-layer weights and filters shown as images);
seed 004, Lecture 9 §2.3 (line 2254: feature maps); Lecture 5 §3 (line 1352: a t-SNE map of
learned word representations).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["image_grid", "tsne_map"]


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


def tsne_map(
    vectors: np.ndarray,
    labels: Sequence[str],
    *,
    seed: int = 0,
    perplexity: float = 30.0,
    title: str | None = None,
    size: float = 11.0,
):
    """t-SNE (scikit-learn) of ``vectors`` to 2-D, each point drawn as its label.

    Args:
      vectors: (n, d) points, e.g. the word representations of the n most frequent words.
      labels: n strings written at the points.
      seed: t-SNE's random state (the map is reproducible for a seed).
      perplexity: t-SNE's effective number of neighbours, < n.
      title: the axes title; size: the figure's width and height in inches.

    Returns:
      ``(figure, points)``: the matplotlib Figure and the (n, 2) map.
    """
    import matplotlib.pyplot as plt
    from sklearn.manifold import TSNE

    vectors = np.asarray(vectors, dtype=np.float64)
    if vectors.ndim != 2 or len(vectors) != len(labels):
        raise ValueError(
            f"tsne_map needs vectors (n, d) and n labels; got {vectors.shape} and {len(labels)}"
        )
    if not 0 < perplexity < len(vectors):
        raise ValueError(f"tsne_map: perplexity must be in (0, n={len(vectors)}); got {perplexity}")
    points = TSNE(2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(vectors)
    fig, ax = plt.subplots(figsize=(size, size), layout="constrained")
    ax.scatter(points[:, 0], points[:, 1], s=0)  # sets the limits; the labels are the marks
    for (x, y), label in zip(points, labels, strict=True):
        ax.annotate(label, (x, y), fontsize=7, ha="center", va="center")
    ax.set(xticks=[], yticks=[], title=title or "")
    return fig, points
