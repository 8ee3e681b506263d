"""The networks are deterministic: the same x gives the same q(z|x), the same z the same
p(x|z); only sampling from a distribution varies with its key."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def _max_difference(results) -> float:
    """Largest |difference| between repeated results (pytrees of arrays)."""
    first = jax.tree.leaves(results[0])
    worst = 0.0
    for other in results[1:]:
        for a, b in zip(first, jax.tree.leaves(other), strict=True):
            worst = max(worst, float(np.max(np.abs(np.asarray(a) - np.asarray(b)))))
    return worst


def measure(vae, params, x, key, repeats: int = 5) -> dict:
    """Repeated ``encode``/``decode`` calls (compiled and op by op) on the same inputs, and,
    for contrast, repeated draws from p(x|z) with different keys."""
    encode = jax.jit(lambda p, x: vae.encode(p, x))
    q = encode(params, x)
    z = q.loc
    decode = jax.jit(lambda p, z: vae.decode(p, z).mean())
    encodes = [encode(params, x) for _ in range(repeats)] + [vae.encode(params, x)]
    decodes = [decode(params, z) for _ in range(repeats)] + [vae.decode(params, z).mean()]
    samples = [vae.decode(params, z).sample(k) for k in jax.random.split(key, repeats)]
    return {
        "repeats": repeats,
        "encode_max_abs_difference": _max_difference([(r.loc, r.log_scale) for r in encodes]),
        "decode_max_abs_difference": _max_difference(decodes),
        "decoder_samples_fraction_of_pixels_differing": float(
            np.mean([np.mean(np.asarray(samples[0]) != np.asarray(s)) for s in samples[1:]])
        ),
        "inputs": {"images": int(x.shape[0]), "z": "posterior means of those images"},
        "note": "0.0 means bit-identical; the last number shows p(x|z) draws do vary",
        "dtype": str(jnp.result_type(z)),
    }
