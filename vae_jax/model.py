"""The VAE as pure functions: encode, reparameterize, decode, ELBO, IWAE bound, generate.

``make_vae(image_shape=..., latent_dim=..., ...)`` fixes the architecture (static) and
returns a ``VAE`` of pure functions of ``(params, key, x)``; it never sees a config
(``vae_jax.adapter.vae_from_config`` builds one from ``config.model``). The networks are
deterministic; the only random draws are the ones a distribution is sampled for, each with
an explicit key:

* ``reparameterize``: ``z ~ q(z|x)`` as ``loc + scale * eps`` (Kingma & Welling, 2014);
* ``generate``: ``z ~ p(z)`` and, only with ``observation="sample"``, ``x ~ p(x|z)``.

The prior ``p(z)`` is standard normal or learned (``vae_jax.priors``): ``prior(params)``
builds it from the parameters. The posterior is a diagonal Gaussian or an inverse
autoregressive flow on top of it (``vae_jax.flows``). With ``upper_latent_dims``, ``z`` is
the concatenation of several stochastic layers (``vae_jax.hierarchy``: Burda et al.'s
bottom-up model or the ladder VAE), whose prior and posterior are products of Gaussians
over the layers. Only the standard normal prior with the Gaussian posterior and one layer
has a closed-form KL; otherwise the ELBO's KL is the Monte Carlo estimate
``log q(z|x) - log p(z)`` at the posterior's draws.

The ELBO's reconstruction term is the closed-form ``log p(x|z)`` of the data under the
decoder's distribution: the data is never resampled from the decoder before the loss.
Functions accept a batch ``(..., H, W, C)`` or a single image ``(H, W, C)``, and are
``jit``-, ``vmap``- and ``grad``-compatible.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import struct

from vae_jax import distributions, flows, hierarchy, likelihoods, networks, precision, priors

Params = Any
KL_ESTIMATORS = ("analytic", "mc")
OBSERVATIONS = ("mean", "sample")


class ElboOutput(NamedTuple):
    """Per-example terms of ``ELBO = log_likelihood - beta * kl`` (Monte Carlo over z)."""

    elbo: jax.Array  # (...,)
    log_likelihood: jax.Array  # (...,) E_q[log p(x|z)]
    kl: jax.Array  # (...,) KL(q(z|x) || p(z)), analytic or Monte Carlo
    # (..., latent_dim): the KL of each dimension for the standard normal prior and the
    # Gaussian posterior; otherwise (not factorized over dimensions) an equal share
    # (log q(z|x) - log p(z)) / latent_dim, which sums to the KL but is no per-dimension KL
    # (free bits refuse such models); a hierarchy shares each layer's KL among its
    # dimensions (``hierarchy.layer_sums`` gives the KL per layer back).
    kl_per_dim: jax.Array


@struct.dataclass
class Generation:
    """Generated images and the latents they came from; ``observation`` says whether ``x``
    is the decoder's mean ``E[x|z]`` or a sample ``x ~ p(x|z)``."""

    x: jax.Array
    z: jax.Array
    observation: str = struct.field(pytree_node=False)


class VAE(NamedTuple):
    """A VAE's pure functions. Build with ``make_vae``; see the module docstring."""

    init: Callable[[jax.Array], Params]
    encode: Callable[[Params, jax.Array], Any]  # DiagGaussian or flows.IAFPosterior
    reparameterize: Callable[..., jax.Array]
    decode: Callable[[Params, jax.Array], Any]
    prior: Callable[[Params], Any]
    draw: Callable[..., tuple[jax.Array, jax.Array]]
    elbo: Callable[..., ElboOutput]
    log_importance_weights: Callable[..., jax.Array]
    iwae_bound: Callable[..., jax.Array]
    generate: Callable[..., Generation]
    latent_dim: int  # dimension of z (all layers of a hierarchy together)
    image_shape: tuple[int, int, int]
    likelihood: str
    prior_name: str = "standard_normal"
    posterior_name: str = "gaussian"
    # (d_1, ..., d_L): sizes of the stochastic layers, z_1 first; z is their concatenation.
    latent_layers: tuple[int, ...] = ()
    inference: str = ""  # hierarchies: "bottom_up" or "top_down" (vae_jax.hierarchy)


def has_closed_form_kl(prior: str, posterior: str, num_layers: int = 1) -> bool:
    """Whether ``KL(q(z|x) || p(z))`` has a closed form: one stochastic layer, a standard
    normal prior and a Gaussian posterior."""
    return priors.has_closed_form_kl(prior) and posterior == "gaussian" and num_layers <= 1


def evaluation_kl(vae: VAE) -> str:
    """The KL estimator evaluation uses: ``"analytic"`` where the KL has a closed form,
    else ``"mc"``."""
    closed_form = has_closed_form_kl(vae.prior_name, vae.posterior_name, len(vae.latent_layers))
    return "analytic" if closed_form else "mc"


def reparameterize(key: jax.Array, q, num_samples: int = 1) -> jax.Array:
    """``num_samples`` draws ``z = loc + scale * eps`` from ``q`` (an IAF posterior: that
    draw pushed through the flow), shape ``(S,) + q.shape``.

    Draw ``s`` uses the key ``fold_in(key, s)``, so the first ``n`` draws are the same
    whatever ``num_samples`` is and however the draws are chunked (see ``iwae_bound``).
    """
    return _reparameterize_with_keys(sample_keys(key, jnp.arange(num_samples)), q)


def sample_keys(key: jax.Array, sample_ids: jax.Array) -> jax.Array:
    """The keys of latent draws ``sample_ids``: ``fold_in(key, s)`` for each ``s``."""
    return jax.vmap(lambda s: jax.random.fold_in(key, s))(sample_ids.astype(jnp.uint32))


def _reparameterize_with_keys(keys: jax.Array, q) -> jax.Array:
    return jax.vmap(lambda k: q.sample(k))(keys)


def _draws_with_log_prob(keys: jax.Array, q) -> tuple[jax.Array, jax.Array]:
    """One reparameterized draw per key and its ``log q(z|x)``, shapes (S, ..., D), (S, ...)."""
    if isinstance(q, flows.IAFPosterior):
        return jax.vmap(q.sample_and_log_prob)(keys)
    z = _reparameterize_with_keys(keys, q)
    return z, q.log_prob(z)


def _build_networks(
    architecture,
    hidden_sizes,
    conv_channels,
    latent_dim,
    activation,
    head,
    compute_dtype,
    context_dim,
):
    hidden = tuple(hidden_sizes)
    if architecture == "mlp":
        encoder = networks.MLPEncoder(hidden, latent_dim, activation, compute_dtype, context_dim)
        decoder = networks.MLPDecoder(hidden[::-1], head, activation, compute_dtype)
    elif architecture == "conv":
        channels = tuple(conv_channels)
        encoder = networks.ConvEncoder(
            channels, hidden, latent_dim, activation, compute_dtype, context_dim
        )
        decoder = networks.ConvDecoder(channels, hidden[::-1], head, activation, compute_dtype)
    else:
        raise ValueError(
            f"model.architecture={architecture!r}; choose one of {networks.ARCHITECTURES}"
        )
    return encoder, decoder


def _context_dim(flow, flow_hidden_size: int, levels) -> int:
    """Width of the encoder's context output: the flow's, or a ladder's features ``d_1``."""
    if flow is not None:
        return int(flow_hidden_size)
    if levels is not None and levels.inference == "top_down":
        return levels.feature_size
    return 0


def make_vae(
    *,
    image_shape: tuple[int, int, int],
    latent_dim: int,
    likelihood: str = "bernoulli",
    architecture: str = "mlp",
    hidden_sizes: tuple[int, ...] = (512, 256),
    conv_channels: tuple[int, ...] = (32, 64),
    activation: str = "relu",
    gaussian_scale: str = "shared",
    observation_scale: float = 0.1,
    min_scale: float = 1e-3,
    num_bins: int = 256,
    compute_dtype: str = "float32",
    prior: str = "standard_normal",
    prior_components: int = 10,
    posterior: str = "gaussian",
    flow_steps: int = 2,
    flow_hidden_size: int = 64,
    upper_latent_dims: tuple[int, ...] = (),
    upper_hidden_sizes: tuple[int, ...] = (100, 100),
    inference: str = "bottom_up",
) -> VAE:
    """Builds the pure functions of a VAE with the posterior family ``posterior``, the
    prior ``prior`` and the observation model ``likelihood`` (Kingma & Welling, 2014).

    The arguments are the fields of ``config.model`` (documented in
    ``experiments/configs/base.py``) and the image shape, so ``make_vae(image_shape=s,
    **config.model)`` builds the model a config describes.

    Args:
      image_shape: ``(H, W, C)`` of one image.
      latent_dim: dimension of ``z`` (of ``z_1``, the layer the decoder reads, in a
        hierarchy).
      likelihood: ``p(x|z)``: one of ``likelihoods.LIKELIHOODS``.
      architecture: ``"mlp"`` or ``"conv"``.
      hidden_sizes: encoder dense widths; the decoder mirrors them.
      conv_channels: ``conv`` only: channels of the strided 3x3 convolutions.
      activation: one of ``networks.ACTIVATIONS``.
      gaussian_scale: ``gaussian`` only: fixed, shared, per_pixel or predicted scale.
      observation_scale: the fixed Gaussian scale, or the initial value of a learned one.
      min_scale: lower bound of learned Gaussian scales.
      num_bins: ``discretized_logistic`` only: number of pixel values.
      compute_dtype: ``"float32"`` or ``"bfloat16"``: operands of the networks' matrix
        products (float32 accumulation; parameters and every log-probability stay
        float32; see ``vae_jax.precision``).
      prior: ``p(z)``: one of ``priors.PRIORS``.
      prior_components: ``mixture``: Gaussians; ``vampprior``: pseudo-inputs.
      posterior: ``"gaussian"`` (diagonal) or ``"iaf"`` (Kingma et al., 2016; see
        ``vae_jax.flows``); ``iaf`` does not combine with ``vampprior``.
      flow_steps: ``iaf``: number of flow steps.
      flow_hidden_size: ``iaf``: width of each MADE and of the encoder's context.
      upper_latent_dims: sizes of the stochastic layers ``z_2, ..., z_L`` above ``z_1``
        (``latent_dim`` units); empty for one layer. See ``vae_jax.hierarchy``: ``z`` is
        then the concatenation of all layers, and the prior and the posterior must be
        ``standard_normal`` and ``gaussian`` (the top prior and every layer's family).
      upper_hidden_sizes: dense widths of each network between two stochastic layers.
      inference: hierarchies: ``"bottom_up"`` (Burda et al., 2015) or ``"top_down"``
        (the ladder VAE, Sønderby et al., 2016).

    Returns:
      A ``VAE`` whose functions close over the static architecture only.
    """
    image_shape = tuple(int(d) for d in image_shape)
    latent_dim = int(latent_dim)
    num_bins = int(num_bins)
    priors.check_prior(prior)
    flows.check_posterior(posterior)
    if posterior == "iaf" and prior == "vampprior":
        raise ValueError("prior='vampprior' needs q's density at any z; posterior='iaf' has none")
    flow = (
        flows.IAF(latent_dim, int(flow_steps), int(flow_hidden_size))
        if posterior == "iaf"
        else None
    )
    latent_layers = (latent_dim, *(int(d) for d in upper_latent_dims))
    levels = None
    if len(latent_layers) > 1:
        if prior != "standard_normal" or posterior != "gaussian":
            raise ValueError(
                "a hierarchy (upper_latent_dims) needs prior='standard_normal' and "
                f"posterior='gaussian', got {prior!r} and {posterior!r}"
            )
        levels = hierarchy.Hierarchy(
            latent_dims=latent_layers,
            inference=inference,
            hidden_sizes=upper_hidden_sizes,
            feature_size=tuple(upper_hidden_sizes)[-1],
            activation=activation,
            compute_dtype=compute_dtype,
        )
    head = likelihoods.ObservationHead(
        likelihood=likelihood,
        image_shape=image_shape,
        gaussian_scale=gaussian_scale,
        observation_scale=observation_scale,
        min_scale=min_scale,
        num_bins=num_bins,
    )
    encoder, decoder = _build_networks(
        architecture,
        hidden_sizes,
        conv_channels,
        latent_dim,
        activation,
        head,
        precision.check_compute_dtype(compute_dtype),
        _context_dim(flow, flow_hidden_size, levels),
    )

    learned_prior = not priors.has_closed_form_kl(prior)
    parts = (
        ("encoder", "decoder")
        + ("prior",) * learned_prior
        + ("flow",) * (flow is not None)
        + ("hierarchy",) * (levels is not None)
    )

    def init(key: jax.Array) -> Params:
        """``split(key, n)`` into one key per part, in the order encoder, decoder, then the
        prior's when it is learned, the flow's, the hierarchy's: ``split(key)`` for the
        default model."""
        keys = dict(zip(parts, jax.random.split(key, len(parts)), strict=True))
        x = jnp.zeros((1, *image_shape), jnp.float32)
        z = jnp.zeros((1, latent_dim), jnp.float32)
        params = {
            "encoder": encoder.init(keys["encoder"], x)["params"],
            "decoder": decoder.init(keys["decoder"], z)["params"],
        }
        if levels is not None:
            params["hierarchy"] = levels.init(keys["hierarchy"])
        if flow is not None:
            context = jnp.zeros((1, int(flow_hidden_size)), jnp.float32)
            params["flow"] = flow.init(keys["flow"], z, context)["params"]
        if learned_prior:
            params["prior"] = priors.init_prior(
                keys["prior"],
                prior=prior,
                num_components=prior_components,
                latent_dim=latent_dim,
                input_shape=image_shape,
            )
        return params

    def apply_flow(flow_params: Params, z: jax.Array, context: jax.Array):
        return flow.apply({"params": flow_params}, z, context)

    def encode(params: Params, x: jax.Array):
        """q(z|x): deterministic in (params, x); a ``DiagGaussian``, or with ``iaf`` a
        ``flows.IAFPosterior`` (the Gaussian, the encoder's context and the flow)."""
        x = likelihoods.encoder_input(x, likelihood, num_bins)
        if levels is not None:
            return levels.posterior(
                params["hierarchy"], encoder.apply({"params": params["encoder"]}, x)
            )
        if flow is None:
            return encoder.apply({"params": params["encoder"]}, x)
        base, context = encoder.apply({"params": params["encoder"]}, x)
        return flows.IAFPosterior(base, context, params["flow"], apply_flow)

    def draw(key: jax.Array, q, num_samples: int = 1) -> tuple[jax.Array, jax.Array]:
        """``reparameterize``'s draws and their ``log q(z|x)``: the Gaussian's density, or
        the flow's by the change of variables (known at its own draws only)."""
        return _draws_with_log_prob(sample_keys(key, jnp.arange(num_samples)), q)

    def decode(params: Params, z: jax.Array):
        """p(x|z): deterministic in (params, z); a hierarchy's decoder reads ``z_1``."""
        return decoder.apply(
            {"params": params["decoder"]}, z if levels is None else z[..., :latent_dim]
        )

    def encoder_network(encoder_params: Params, x: jax.Array) -> distributions.DiagGaussian:
        return encoder.apply({"params": encoder_params}, x)

    def prior_of(params: Params):
        """p(z): deterministic in params (see ``vae_jax.priors``, ``vae_jax.hierarchy``)."""
        if levels is not None:
            return levels.prior(params["hierarchy"])
        return priors.prior_distribution(
            params, prior=prior, latent_dim=latent_dim, encoder_network=encoder_network
        )

    def elbo(
        params: Params,
        key: jax.Array,
        x: jax.Array,
        num_samples: int = 1,
        kl: str = "analytic",
        beta: float | jax.Array = 1.0,
        stick_the_landing: bool = False,
    ) -> ElboOutput:
        """Per-example ``E_q[log p(x|z)] - beta * KL(q(z|x) || p(z))``.

        ``num_samples`` latent draws per example (the only random draws); the
        reconstruction term is the closed-form log-likelihood of ``x`` under ``p(x|z)``.
        ``kl="analytic"`` uses the Gaussian closed form (standard normal prior only),
        ``kl="mc"`` the Monte Carlo estimate ``log q(z|x) - log p(z)`` at the same draws.
        ``stick_the_landing`` (``kl="mc"`` only; Roeder et al., 2017) evaluates ``log q``
        with its parameters held constant: the same values, a gradient without the score
        term, whose mean is unchanged and whose variance vanishes as q reaches the
        posterior.
        """
        if kl not in KL_ESTIMATORS:
            raise ValueError(f"kl={kl!r}; choose one of {KL_ESTIMATORS}")
        if stick_the_landing and kl != "mc":
            raise ValueError("stick_the_landing needs kl='mc' (it changes log q's gradient)")
        if kl == "analytic" and not has_closed_form_kl(prior, posterior, len(latent_layers)):
            raise ValueError(
                f"kl='analytic' has no closed form for prior={prior!r} with "
                f"posterior={posterior!r} and latent layers {latent_layers}; use 'mc'"
            )
        if stick_the_landing and flow is not None:
            raise ValueError("stick_the_landing needs q's density at any z; 'iaf' has none")
        q = encode(params, x)
        if flow is not None:
            z, log_q = draw(key, q, num_samples)  # (S, ..., D), (S, ...)
        else:
            z = reparameterize(key, q, num_samples)  # (S, ..., D)
        log_likelihood = jnp.mean(decode(params, z).log_prob(x), axis=0)
        p = prior_of(params)
        q_in_log_q = jax.lax.stop_gradient(q) if stick_the_landing else q
        if kl == "analytic":
            kl_per_dim = q.kl_elementwise(p)
        elif flow is not None:  # not factorized: an equal share per dimension
            share = (log_q - p.log_prob(z)) / latent_dim
            kl_per_dim = jnp.mean(jnp.broadcast_to(share[..., None], z.shape), axis=0)
        elif levels is not None:  # each layer's KL, an equal share per dimension of it
            per_layer = jnp.mean(q_in_log_q.layer_log_probs(z) - p.layer_log_probs(z), axis=1)
            kl_per_dim = hierarchy.spread_over_layers(per_layer, latent_layers)
        else:
            log_q = q_in_log_q.log_prob_elementwise(z)
            if priors.has_closed_form_kl(prior):
                log_p = p.log_prob_elementwise(z)
            else:  # not factorized: an equal share of log p(z) per dimension
                log_p = jnp.broadcast_to(p.log_prob(z)[..., None] / latent_dim, log_q.shape)
            kl_per_dim = jnp.mean(log_q - log_p, axis=0)
        kl_total = jnp.sum(kl_per_dim, axis=-1)
        return ElboOutput(log_likelihood - beta * kl_total, log_likelihood, kl_total, kl_per_dim)

    def log_importance_weights(
        params: Params, x: jax.Array, q: distributions.DiagGaussian, z: jax.Array
    ) -> jax.Array:
        """``log p(x|z) + log p(z) - log q(z|x)`` for draws ``z`` of shape (S, ..., D)."""
        return decode(params, z).log_prob(x) + prior_of(params).log_prob(z) - q.log_prob(z)

    def iwae_bound(
        params: Params,
        key: jax.Array,
        x: jax.Array,
        num_samples: int,
        chunk_size: int | None = None,
    ) -> jax.Array:
        """Per-example importance-weighted bound ``log (1/K) sum_k p(x,z_k)/q(z_k|x)``.

        Burda et al., 2015. ``z_k`` uses key ``fold_in(key, k)``, exactly as
        ``reparameterize``, so ``K=1`` is the ELBO with Monte Carlo KL at the same key.
        The K draws are processed ``chunk_size`` at a time (default: all at once) with a
        running log-sum-exp, so memory is bounded by the chunk, not by K.
        """
        q = encode(params, x)
        chunk = num_samples if chunk_size is None else max(1, min(int(chunk_size), num_samples))
        num_chunks = -(-num_samples // chunk)
        sample_ids = jnp.arange(num_chunks * chunk)  # the last chunk is padded and masked
        keys = sample_keys(key, sample_ids)
        valid = sample_ids < num_samples

        p = prior_of(params)  # once, not per chunk: a VampPrior runs the encoder

        def chunk_log_sum_exp(chunk_keys, chunk_valid):
            z, log_q = _draws_with_log_prob(chunk_keys, q)
            log_w = decode(params, z).log_prob(x) + p.log_prob(z) - log_q
            mask = jnp.reshape(chunk_valid, (-1,) + (1,) * (log_w.ndim - 1))
            return jax.nn.logsumexp(jnp.where(mask, log_w, -jnp.inf), axis=0)

        if num_chunks == 1:
            total = chunk_log_sum_exp(keys, valid)
        else:

            def body(running, chunk_inputs):
                return jnp.logaddexp(running, chunk_log_sum_exp(*chunk_inputs)), None

            chunked = (keys.reshape(num_chunks, chunk), valid.reshape(num_chunks, chunk))
            initial = jnp.full(q.shape[:-1], -jnp.inf, jnp.float32)
            total, _ = jax.lax.scan(body, initial, chunked)
        return total - jnp.log(float(num_samples))

    def generate(params: Params, key: jax.Array, num: int, observation: str = "mean") -> Generation:
        """``num`` images from the model: ``z ~ p(z)`` with ``split(key)[0]``, then the
        decoder's mean ``E[x|z]`` (``observation="mean"``) or a draw ``x ~ p(x|z)`` with
        ``split(key)[1]`` (``"sample"``). The same key gives the same ``z`` for both."""
        if observation not in OBSERVATIONS:
            raise ValueError(f"observation={observation!r}; choose one of {OBSERVATIONS}")
        latent_key, observation_key = jax.random.split(key)
        z = prior_of(params).sample(latent_key, (num,))
        p = decode(params, z)
        x = p.mean() if observation == "mean" else p.sample(observation_key)
        return Generation(x=x, z=z, observation=observation)

    return VAE(
        init=init,
        encode=encode,
        reparameterize=reparameterize,
        decode=decode,
        draw=draw,
        prior=prior_of,
        elbo=elbo,
        log_importance_weights=log_importance_weights,
        iwae_bound=iwae_bound,
        generate=generate,
        latent_dim=sum(latent_layers),
        image_shape=image_shape,
        likelihood=likelihood,
        prior_name=prior,
        posterior_name=posterior,
        latent_layers=latent_layers,
        inference=inference if levels is not None else "",
    )
