"""Figures of the randomness experiment: repeated draws, the variance decomposition, and
the estimators' variances."""

from __future__ import annotations

import functools
from pathlib import Path

import jax
import matplotlib.pyplot as plt
import numpy as np

from vae_jax.evaluation.figures import _save, _show, tile, to_display


@functools.partial(jax.jit, static_argnums=(0, 4))
def _draws(vae, params, key, x, num_draws):
    """For each image: decoder means and samples for ``num_draws`` draws z ~ q(z|x)."""
    q = vae.encode(params, x)

    def one(k):
        latent_key, observation_key = jax.random.split(k)
        p = vae.decode(params, q.sample(latent_key))
        return p.mean(), p.sample(observation_key)

    means, samples = jax.vmap(one)(jax.random.split(key, num_draws))  # (draws, images, ...)
    return means.swapaxes(0, 1), samples.swapaxes(0, 1)


def draws_grid(vae, params, key, x, path: Path, *, num_draws: int = 8, num_bins: int = 256):
    """Rows: test images. Left: x, then E[x|z] for repeated z ~ q(z|x); right: x, then a
    sample x ~ p(x|z) for the same z."""
    means, samples = _draws(vae, params, key, x, num_draws)
    fig, axes = plt.subplots(1, 2, figsize=(2 * (num_draws + 1) * 0.75 + 1, x.shape[0] * 0.8 + 1.2))
    for ax, draws, title in (
        (axes[0], means, "decoder mean E[x|z], z ~ q(z|x) drawn again per column"),
        (axes[1], samples, "sample x ~ p(x|z) for the same z"),
    ):
        rows = [
            np.concatenate([np.asarray(x[i])[None], np.asarray(draws[i])])
            for i in range(x.shape[0])
        ]
        grid = tile(
            to_display(np.concatenate(rows), vae.likelihood, num_bins), columns=num_draws + 1
        )
        _show(ax, grid, title)
    axes[0].set_xlabel("first column: the test image x")
    fig.tight_layout()
    return _save(fig, path)


def variance_bars(posterior: dict, prior: dict, path: Path) -> Path:
    """Stacked bars: observation noise E[Var(x|z)] and latent draw Var(E[x|z]), against the
    directly measured Var(x) (summed over pixels)."""
    fig, ax = plt.subplots(figsize=(7, 4.2))
    labels = ["x-hat from z ~ q(z|x)\n(fixed test image)", "generation\nfrom z ~ p(z)"]
    within = [
        posterior["observation_noise_E_var_x_given_z"],
        prior["observation_noise_E_var_x_given_z"],
    ]
    between = [posterior["latent_draw_var_E_x_given_z"], prior["latent_draw_var_E_x_given_z"]]
    total = [posterior["total_variance"], prior["total_variance"]]
    positions = np.arange(2)
    ax.bar(positions, within, 0.5, label="observation noise E_z[Var(x|z)]", color="#4c72b0")
    ax.bar(
        positions, between, 0.5, bottom=within, label="latent draw Var_z(E[x|z])", color="#dd8452"
    )
    ax.scatter(positions, total, color="black", zorder=3, marker="D", label="measured Var(x)")
    for p, w, t in zip(positions, within, total, strict=True):
        ax.text(p + 0.28, t, f"{w / t:.0%} from p(x|z)", va="center", fontsize=9)
    ax.set_xticks(positions, labels)
    ax.set_xlim(-0.5, 2.0)
    ax.set_ylabel("variance summed over pixels")
    ax.set_title("Law of total variance per pixel: Var(x) = E[Var(x|z)] + Var(E[x|z])")
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    return _save(fig, path)


def estimator_bars(elbo_rows: list[dict], encoder: dict, reconstruction: dict, path: Path):
    """Variances (log scale) of the ELBO estimate and its gradient by latent draws and KL
    estimator; reparameterization vs score function; closed form vs sampled x-hat."""
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.6), width_ratios=(1, 1, 1.2))
    counts = sorted({r["num_samples"] for r in elbo_rows})
    width = 0.38
    for offset, kl in ((-width / 2, "analytic"), (width / 2, "mc")):
        rows = [
            next(r for r in elbo_rows if r["num_samples"] == s and r["kl"] == kl) for s in counts
        ]
        x = np.arange(len(counts)) + offset
        axes[0].bar(x, [r["elbo_variance"] for r in rows], width, label=f"{kl} KL")
        axes[1].bar(x, [r["gradient"]["mean_variance_per_parameter"] for r in rows], width,
                    label=f"{kl} KL")  # fmt: skip
    for ax, title in (
        (axes[0], "Var of the ELBO estimate"),
        (axes[1], "Var of its gradient (mean per parameter)"),
    ):
        ax.set_xticks(np.arange(len(counts)), [f"{s} draw{'s' if s > 1 else ''}" for s in counts])
        ax.set_yscale("log")
        ax.set_title(title)
        ax.legend(fontsize=8)
    grads = reconstruction["gradients"]
    bars = {
        "encoder:\nreparameterization": encoder["reparameterization"][
            "mean_variance_per_parameter"
        ],
        "encoder:\nscore function": encoder["score_function"]["mean_variance_per_parameter"],
        "decoder:\nclosed form\nlog p(x|z)": grads["closed_form_log_likelihood"][
            "mean_variance_per_parameter"
        ],
        "decoder:\nsampled x-hat\n(score function)": grads["score_function_sampled_score"][
            "mean_variance_per_parameter"
        ],
    }
    colours = ["#4c72b0", "#c44e52", "#4c72b0", "#c44e52"]
    axes[2].bar(range(4), list(bars.values()), color=colours)
    axes[2].set_xticks(range(4), list(bars.keys()), fontsize=8)
    axes[2].set_yscale("log")
    axes[2].set_title("Gradient variance per parameter, one draw")
    fig.suptitle("Where the training noise comes from (variance across keys)", fontsize=11)
    fig.tight_layout()
    return _save(fig, path)
