"""Figures a person looks at: reconstructions, generations, interpolations, latent maps,
training curves. Each function computes what it shows (with explicit keys) and writes one
labelled PNG.
"""

from __future__ import annotations

import functools
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from scipy import stats

DPI = 100


def to_display(images, likelihood: str, num_bins: int = 256) -> np.ndarray:
    """Images in [0, 1] for display (integer data are rescaled, Gaussian means clipped)."""
    images = np.asarray(images, np.float64)
    if likelihood == "discretized_logistic":
        images = images / (num_bins - 1)
    return np.clip(images, 0.0, 1.0)


def tile(images: np.ndarray, columns: int, pad: int = 2, fill: float = 1.0) -> np.ndarray:
    """A grid of images (N, H, W, C) -> one image, ``columns`` per row, ``pad`` apart."""
    images = np.asarray(images)
    num, height, width, channels = images.shape
    rows = -(-num // columns)
    canvas = np.full(
        (rows * (height + pad) + pad, columns * (width + pad) + pad, channels), fill, images.dtype
    )
    for i in range(num):
        top = pad + (i // columns) * (height + pad)
        left = pad + (i % columns) * (width + pad)
        canvas[top : top + height, left : left + width] = images[i]
    return canvas


def _show(ax, image, title=None):
    image = np.asarray(image)
    if image.shape[-1] == 1:
        ax.imshow(image[..., 0], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    else:
        ax.imshow(image, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=10)


def save(fig, path: Path) -> Path:
    """Writes ``fig`` to ``path`` (its folder made) at the project's resolution, closes it
    and returns the path: every figure of the project goes through here."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


_save = save  # the name its older callers use


# Compiled once per model (``vae`` is static), then reused across runs of a sweep.
@functools.partial(jax.jit, static_argnums=0)
def _reconstruct(vae, params, key, x):
    latent_key, observation_key = jax.random.split(key)
    z = vae.reparameterize(latent_key, vae.encode(params, x), 1)[0]
    p = vae.decode(params, z)
    return p.mean(), p.sample(observation_key)


@functools.partial(jax.jit, static_argnums=(0, 3))
def _generate_both(vae, params, key, num):
    return vae.generate(params, key, num, "mean"), vae.generate(params, key, num, "sample")


@functools.partial(jax.jit, static_argnums=(0, 3))
def _interpolate(vae, params, x_pair, steps):
    q = vae.encode(params, x_pair)
    t = jnp.linspace(0.0, 1.0, steps)[:, None]
    return vae.decode(params, (1 - t) * q.loc[0] + t * q.loc[1]).mean()


@functools.partial(jax.jit, static_argnums=0)
def _decode_mean(vae, params, z):
    return vae.decode(params, z).mean()


def reconstructions(vae, params, key, x, path: Path, *, num_bins: int = 256) -> Path:
    """Rows of: input | decoder mean E[x|z] | decoder sample x ~ p(x|z), with z ~ q(z|x)."""
    mean, sample = _reconstruct(vae, params, key, x)
    columns = (
        ("input x", x),
        ("decoder mean\nE[x|z]", mean),
        ("decoder sample\nx ~ p(x|z)", sample),
    )
    rows = x.shape[0]
    fig, axes = plt.subplots(1, 3, figsize=(5.4, 1.2 * rows + 1.0))
    for ax, (title, images) in zip(axes, columns, strict=True):
        _show(ax, tile(to_display(images, vae.likelihood, num_bins), columns=1), title)
    fig.suptitle("Reconstructions (one z ~ q(z|x) per row)", fontsize=11)
    fig.tight_layout()
    return _save(fig, path)


def generations(vae, params, key, path: Path, *, num: int = 32, num_bins: int = 256) -> Path:
    """The same z ~ p(z) shown as the decoder's mean and as a sample from p(x|z)."""
    as_mean, as_sample = _generate_both(vae, params, key, num)
    assert np.array_equal(as_mean.z, as_sample.z)  # same key, same z
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    for ax, (result, title) in zip(
        axes,
        ((as_mean, "decoder mean E[x|z]"), (as_sample, "sample x ~ p(x|z) from the same z")),
        strict=True,
    ):
        _show(ax, tile(to_display(result.x, vae.likelihood, num_bins), columns=8), title)
    fig.suptitle(f"{num} generations from the prior z ~ N(0, I)", fontsize=11)
    fig.tight_layout()
    return _save(fig, path)


def interpolation(vae, params, x_pair, path: Path, *, steps: int = 10, num_bins: int = 256):
    """Decoder means along the straight line between two test images' posterior means."""

    strip = np.concatenate(
        [
            to_display(x_pair[:1], vae.likelihood, num_bins),
            to_display(_interpolate(vae, params, x_pair, steps), vae.likelihood, num_bins),
            to_display(x_pair[1:], vae.likelihood, num_bins),
        ]
    )
    width = strip.shape[2]
    fig, ax = plt.subplots(figsize=(1.0 * (steps + 2) + 0.5, 2.0))
    _show(ax, tile(strip, columns=steps + 2))
    labels = ["x_a"] + [f"t={i / (steps - 1):.2g}" for i in range(steps)] + ["x_b"]
    ax.set_xticks([2 + i * (width + 2) + width / 2 for i in range(steps + 2)], labels, fontsize=8)
    ax.set_title("Interpolation between posterior means E[z|x_a] and E[z|x_b] (decoder means)")
    fig.tight_layout()
    return _save(fig, path)


def latent_manifold(vae, params, path: Path, *, grid: int = 15, num_bins: int = 256) -> Path:
    """For a 2-d latent: decoder means on a grid of z at Gaussian quantiles."""
    quantiles = stats.norm.ppf(np.linspace(0.05, 0.95, grid))
    zz = np.stack(np.meshgrid(quantiles, quantiles[::-1]), -1).reshape(-1, 2)
    means = to_display(_decode_mean(vae, params, zz), vae.likelihood, num_bins)
    height, width, channels = means.shape[1:]
    canvas = means.reshape(grid, grid, height, width, channels).transpose(0, 2, 1, 3, 4)
    canvas = canvas.reshape(grid * height, grid * width, channels)
    fig, ax = plt.subplots(figsize=(7, 7))
    extent = (quantiles[0], quantiles[-1], quantiles[0], quantiles[-1])
    if channels == 1:
        ax.imshow(canvas[..., 0], cmap="gray", vmin=0, vmax=1, extent=extent)
    else:
        ax.imshow(canvas, extent=extent)
    ax.set_xlabel("z_1")
    ax.set_ylabel("z_2")
    ax.set_title("Decoded latent manifold (decoder means at N(0,1) quantiles)")
    fig.tight_layout()
    return _save(fig, path)


def latent_scatter(posterior_means, labels, path: Path) -> Path:
    """For a 2-d latent: the test set's posterior means, coloured by label."""
    fig, ax = plt.subplots(figsize=(7, 6))
    labels = np.asarray(labels)
    points = ax.scatter(
        posterior_means[:, 0], posterior_means[:, 1], c=labels, cmap="tab10", s=3, alpha=0.7
    )
    if labels.min() >= 0:
        fig.colorbar(points, ax=ax, label="label")
    ax.set_xlabel("E[z_1 | x]")
    ax.set_ylabel("E[z_2 | x]")
    ax.set_title("Posterior means of the test set")
    fig.tight_layout()
    return _save(fig, path)


def training_curves(records: list[dict], path: Path) -> Path:
    """ELBO, log-likelihood and KL per epoch, train and validation, from metrics.jsonl."""
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    epochs = [r["epoch"] for r in records]
    for ax, name in zip(axes, ("elbo", "log_likelihood", "kl"), strict=True):
        for split, style in (("train", "-"), ("validation", "--")):
            key = f"{split}/{name}"
            points = [(e, r[key]) for e, r in zip(epochs, records, strict=True) if key in r]
            if points:
                ax.plot(*zip(*points, strict=True), style, marker="o", markersize=3, label=split)
        ax.set_xlabel("epoch")
        ax.set_ylabel(f"{name} (nats)")
        ax.set_title(
            name.replace("_", "-").upper() if name != "log_likelihood" else "E_q log p(x|z)"
        )
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle("Training curves (per example)", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)
