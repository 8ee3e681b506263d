"""Where a VAE's randomness lives, measured on a trained model.

    python -m experiments.randomness --workdir=runs/quickstart [--docs=docs/randomness.md]

Two questions researchers keep asking, answered with numbers:
1. Once trained, the encoder and decoder are deterministic networks; the randomness is in
   sampling z ~ q(z|x) (or p(z)) and, only when asked, x ~ p(x|z).
2. The reconstruction term needs log p(x|z) in closed form; sampling x-hat ~ p(x|z)
   before the loss estimates a different quantity and blocks the gradient.
"""

from vae_jax.core import rng

# Fixed sub-streams of the run's `eval`/`randomness` key (recorded in the report).
PURPOSE_IDS = {
    "determinism": 0,
    "posterior_draws": 1,
    "prior_draws": 2,
    "reconstruction": 3,
    "gradient_noise": 4,
    "figures": 5,
}


def purpose_key(streams: rng.Streams, purpose: str):
    """``fold_in(fold_in(eval_stream, randomness_id), purpose_id)``."""
    import jax

    return jax.random.fold_in(rng.eval_key(streams.eval, "randomness"), PURPOSE_IDS[purpose])
