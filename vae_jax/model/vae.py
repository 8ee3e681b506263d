"""The VAE and its builder: ``make_vae(**kwargs)`` picks the components, the bounds do the rest.

``make_vae(image_shape=..., latent_dim=..., ...)`` fixes the architecture (static) and
returns a ``VAE`` of pure functions of ``(params, key, x)``; it never sees a config
(``vae_jax.adapter.vae_from_config`` builds one from ``config.model``). It is the only place
that maps the parts' names to components:

* networks (``vae_jax.core.networks``): the encoder ``x -> Encoded`` and the decoder
  ``z -> p(x|z)`` through the observation model (``vae_jax.core.likelihoods``);
* a posterior family (``vae_jax.model.posteriors``): ``q(z|x)``, or ``z_1``'s in a hierarchy;
* a prior (``vae_jax.model.priors``): ``p(z)``, or the top layer's in a hierarchy;
* optionally a hierarchy of stochastic layers (``vae_jax.model.hierarchy``).

The bounds (``vae_jax.model.bounds``) are written once against the latent contract
(``vae_jax.model.contract``); what combines is decided by ``vae_jax.model.compatibility``
from the declared capabilities. The networks are deterministic; the only random draws are
the ones a distribution is sampled for, each with an explicit key:

* ``reparameterize``: ``z ~ q(z|x)`` as ``loc + scale * eps`` (Kingma & Welling, 2014);
* ``generate``: ``z ~ p(z)`` and, only with ``observation="sample"``, ``x ~ p(x|z)``.

The ELBO's reconstruction term is the closed-form ``log p(x|z)`` of the data under the
decoder's distribution: the data is never resampled from the decoder before the loss.
Functions accept a batch ``(..., H, W, C)`` or a single image ``(H, W, C)``, and are
``jit``-, ``vmap``- and ``grad``-compatible.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from vae_jax.core import likelihoods, networks, precision
from vae_jax.model import bounds, compatibility, hierarchy, posteriors, priors
from vae_jax.model.bounds import (
    ElboOutput,
    Generation,
    ModelFunctions,
    reparameterize,
    sample_keys,
)

Params = Any
# What the latent diagnostics describe of a hierarchy's posterior.
DECODER_READS = ("z1", "all_layers")
HIERARCHY_DESCRIBED = "each layer's Gaussian with the layers it depends on at their means"


class VAE(NamedTuple):
    """A VAE's pure functions. Build with ``make_vae``; see the module docstring."""

    init: Callable[[jax.Array], Params]
    encode: Callable[[Params, jax.Array], Any]  # q(z|x) of the latent contract
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
    inference: str = ""  # hierarchies: "bottom_up" or "top_down" (vae_jax.model.hierarchy)
    # Derived from the parts' capabilities (vae_jax.model.compatibility):
    closed_form_kl: bool = True  # KL(q || p) in closed form: kl="analytic" allowed
    kl_per_dimension: bool = True  # q and p factorize over dimensions (free bits)
    density_everywhere: bool = True  # q's density at any z (STL, DReG)
    posterior_described: str = "q(z|x)"  # what the latent diagnostics describe


def has_closed_form_kl(prior: str, posterior: str, num_layers: int = 1) -> bool:
    """Whether ``KL(q(z|x) || p(z))`` has a closed form (``vae_jax.model.compatibility``):
    one stochastic layer, a standard normal prior and a Gaussian posterior."""
    return compatibility.closed_form_kl(
        compatibility.posterior_capabilities(posterior, num_layers),
        compatibility.prior_capabilities(prior, num_layers),
    )


def evaluation_kl(vae: VAE) -> str:
    """The KL estimator evaluation uses: ``"analytic"`` where the KL has a closed form,
    else ``"mc"``."""
    return "analytic" if vae.closed_form_kl else "mc"


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
    decoder_reads: str = "z1",
    kernel_init: str = "lecun_normal",
    log_variance_range: tuple[float, ...] = (),
    bernoulli_clip: float = 0.0,
    pseudo_inputs: str = "sigmoid",
    mixture_density_version: int = 1,
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
      architecture: ``"mlp"``, ``"conv"`` or ``"gated_conv"`` (the VampPrior code's
        ``convHVAE_2level.py`` networks; ``hidden_sizes[0]`` is its dense width).
      hidden_sizes: encoder dense widths; the decoder mirrors them.
      conv_channels: ``conv`` only: channels of the strided 3x3 convolutions.
      activation: one of ``networks.ACTIVATIONS``.
      gaussian_scale: ``gaussian`` only: fixed, shared, per_pixel or predicted scale.
      observation_scale: the fixed Gaussian scale, or the initial value of a learned one.
      min_scale: lower bound of learned Gaussian scales.
      num_bins: ``discretized_logistic`` only: number of pixel values.
      compute_dtype: ``"float32"`` or ``"bfloat16"``: operands of the networks' matrix
        products, an ``iaf``'s MADEs included (float32 accumulation; parameters and every
        log-probability stay float32; see ``vae_jax.core.precision``).
      prior: ``p(z)`` (of the top layer in a hierarchy): one of ``priors.PRIORS``.
      prior_components: ``mixture``: Gaussians; ``vampprior``: pseudo-inputs.
      posterior: the family of ``q(z|x)`` (of ``z_1`` in a hierarchy): ``"gaussian"``
        (diagonal) or ``"iaf"`` (Kingma et al., 2016; see ``vae_jax.model.flows``); a
        one-layer ``iaf`` does not combine with ``vampprior``
        (``vae_jax.model.compatibility``).
      flow_steps: ``iaf``: number of flow steps.
      flow_hidden_size: ``iaf``: width of each MADE and of the encoder's context.
      upper_latent_dims: sizes of the stochastic layers ``z_2, ..., z_L`` above ``z_1``
        (``latent_dim`` units); empty for one layer. See ``vae_jax.model.hierarchy``:
        ``z`` is then the concatenation of all layers, ``prior`` is the top layer's and
        ``posterior`` ``z_1``'s.
      upper_hidden_sizes: dense widths of each network between two stochastic layers.
      inference: hierarchies: ``"bottom_up"`` (Burda et al., 2015), ``"top_down"`` (the
        ladder VAE, Sønderby et al., 2016) or ``"top_down_skip"`` (Tomczak & Welling's
        two-level HVAE, ``q(z_L|x) prod q(z_l|x, z_{l+1})``; the encoder describes ``z_L``).
      decoder_reads: hierarchies: ``"z1"`` (``p(x|z_1)``) or ``"all_layers"`` (``p(x|z_1,
        ..., z_L)``, one dense branch per layer: the VampPrior code's HVAE); ``mlp`` only.
      kernel_init: ``mlp``: ``"lecun_normal"`` (Flax's) or ``"he_normal"`` (the VampPrior
        code's) for every dense kernel of the encoder, decoder and hierarchy.
      log_variance_range: ``(low, high)``: every Gaussian head of q and of ``p(z_l |
        z_{l+1})`` predicts a log-variance clipped to it (the VampPrior code's ``(-6, 2)``);
        empty: the default heads.
      bernoulli_clip: ``bernoulli``: probabilities clamped to ``[c, 1 - c]`` (0 = off).
      pseudo_inputs: ``vampprior``: how its pseudo-inputs are parameterized, one of
        ``priors.PSEUDO_INPUTS``.
      mixture_density_version: ``mixture`` and ``vampprior``: how ``log p(z)`` is laid
        out, 1 or 2 (``distributions.MixtureOfDiagGaussians``; the same formula, other
        rounding).

    Returns:
      A ``VAE`` whose functions close over the static architecture only.
    """
    image_shape = tuple(int(d) for d in image_shape)
    latent_dim, num_bins = int(latent_dim), int(num_bins)
    priors.check_prior(prior)
    posteriors.check_posterior(posterior)
    latent_layers = (latent_dim, *(int(d) for d in upper_latent_dims))
    num_layers = len(latent_layers)
    if decoder_reads not in DECODER_READS:
        raise ValueError(f"decoder_reads={decoder_reads!r}; choose one of {DECODER_READS}")
    if decoder_reads == "all_layers" and num_layers < 2:
        raise ValueError("decoder_reads='all_layers' needs a hierarchy (upper_latent_dims)")
    log_variance_range = tuple(float(v) for v in log_variance_range)
    if log_variance_range and (
        len(log_variance_range) != 2 or not log_variance_range[0] < log_variance_range[1]
    ):
        raise ValueError(
            f"log_variance_range={log_variance_range}; give (low, high) with low < high"
        )
    refused = compatibility.model_refusals(prior, posterior, num_layers)
    if refused:
        raise ValueError(refused[0].message(qualified=False))
    levels = None
    if num_layers > 1:
        levels = hierarchy.Hierarchy(
            latent_dims=latent_layers,
            inference=inference,
            hidden_sizes=upper_hidden_sizes,
            feature_size=tuple(upper_hidden_sizes)[-1],
            activation=activation,
            compute_dtype=compute_dtype,
            kernel_init=kernel_init,
            log_variance_range=log_variance_range,
            data_shape=image_shape,
            data_convs=networks.GATED_CONV_DATA_BRANCH if architecture == "gated_conv" else (),
        )
    # The encoder's context: a ladder's features d_1 (which a flow on z_1 reads too), or
    # the flow's own context.
    if levels is not None and levels.inference == "top_down":
        context_dim = levels.feature_size
    else:
        context_dim = int(flow_hidden_size) if posterior == "iaf" else 0
    if posterior == "iaf":
        family = posteriors.iaf(
            latent_dim=latent_dim,
            num_steps=flow_steps,
            hidden_size=flow_hidden_size,
            context_dim=context_dim,
            compute_dtype=precision.check_compute_dtype(compute_dtype),
        )
    else:
        family = posteriors.gaussian()
    head = likelihoods.ObservationHead(
        likelihood=likelihood,
        image_shape=image_shape,
        gaussian_scale=gaussian_scale,
        observation_scale=observation_scale,
        min_scale=min_scale,
        num_bins=num_bins,
        bernoulli_clip=float(bernoulli_clip),
    )
    # The layer the encoder describes: z_1, or z_L when inference runs top-down from x.
    skip = levels is not None and levels.inference == "top_down_skip"
    encoded_dim = latent_layers[-1] if skip else latent_dim
    decoder_input_sizes = latent_layers if decoder_reads == "all_layers" else ()
    encoder, decoder = networks.make_networks(
        architecture=architecture,
        hidden_sizes=hidden_sizes,
        conv_channels=conv_channels,
        latent_dim=encoded_dim,
        activation=activation,
        head=head,
        compute_dtype=precision.check_compute_dtype(compute_dtype),
        context_dim=context_dim,
        kernel_init=kernel_init,
        log_variance_range=log_variance_range,
        decoder_input_sizes=decoder_input_sizes,
    )

    def posterior_of(params: Params, encoded: networks.Encoded, u: jax.Array):
        """q(z|x) from the encoder's output and its input ``u``: the family's, or the
        hierarchy's."""
        family_params = params.get("flow", {})
        if levels is None:
            return family.wrap(encoded.gaussian, encoded.context, family_params)
        return levels.posterior(
            params["hierarchy"], encoded, family, family_params, u if skip else None
        )

    def top_posterior_at(params: Params, u: jax.Array):
        """The top layer's Gaussian posterior at an encoder input ``u`` (no rescaling)."""
        encoded = encoder.apply({"params": params["encoder"]}, u)
        if levels is None or skip:  # top_down_skip: the encoder describes z_L itself
            return encoded.gaussian
        return posterior_of(params, encoded, u).top_gaussian()

    top_dim = latent_layers[-1]
    if prior == "mixture":
        prior_part = priors.mixture(top_dim, prior_components, mixture_density_version)
    elif prior == "vampprior":
        prior_part = priors.vampprior(
            prior_components,
            image_shape,
            top_posterior_at,
            pseudo_inputs,
            mixture_density_version,
        )
    else:
        prior_part = priors.standard_normal(top_dim)

    family_has_params = posterior == "iaf"
    parts = (
        ("encoder", "decoder")
        + ("prior",) * prior_part.learned
        + ("flow",) * family_has_params
        + ("hierarchy",) * (levels is not None)
    )

    def init(key: jax.Array) -> Params:
        """``split(key, n)`` into one key per part, in the order encoder, decoder, then the
        prior's when it is learned, the flow's, the hierarchy's: ``split(key)`` for the
        default model."""
        keys = dict(zip(parts, jax.random.split(key, len(parts)), strict=True))
        x = jnp.zeros((1, *image_shape), jnp.float32)
        z = jnp.zeros((1, sum(decoder_input_sizes) or latent_dim), jnp.float32)
        params = {
            "encoder": encoder.init(keys["encoder"], x)["params"],
            "decoder": decoder.init(keys["decoder"], z)["params"],
        }
        if levels is not None:
            params["hierarchy"] = levels.init(keys["hierarchy"])
        if family_has_params:
            params["flow"] = family.init(keys["flow"])
        if prior_part.learned:
            params["prior"] = prior_part.init(keys["prior"])
        return params

    def encode(params: Params, x: jax.Array):
        """q(z|x): deterministic in (params, x), a distribution of the latent contract."""
        x = likelihoods.encoder_input(x, likelihood, num_bins)
        return posterior_of(params, encoder.apply({"params": params["encoder"]}, x), x)

    def decode(params: Params, z: jax.Array):
        """p(x|z): deterministic in (params, z); a hierarchy's decoder reads ``z_1`` (or
        every layer, with ``decoder_reads="all_layers"``)."""
        if levels is not None and not decoder_input_sizes:
            z = z[..., :latent_dim]
        return decoder.apply({"params": params["decoder"]}, z)

    def prior_of(params: Params):
        """p(z): deterministic in params (the top layer's prior under a hierarchy's
        conditionals)."""
        top = prior_part.distribution(params)
        return top if levels is None else levels.prior(params["hierarchy"], top)

    def draw(key: jax.Array, q, num_samples: int = 1) -> tuple[jax.Array, jax.Array]:
        """``reparameterize``'s draws and their ``log q(z|x)``: the density at the draws,
        or a flow's by the change of variables (known at its own draws only)."""
        return bounds.draws_with_log_prob(sample_keys(key, jnp.arange(num_samples)), q)

    q_capabilities = compatibility.posterior_capabilities(posterior, num_layers)
    p_capabilities = compatibility.prior_capabilities(prior, num_layers)
    functions = ModelFunctions(
        encode=encode,
        decode=decode,
        prior=prior_of,
        closed_form_kl=compatibility.closed_form_kl(q_capabilities, p_capabilities),
        density_everywhere=q_capabilities.density_everywhere,
        describe=f"prior={prior!r} with posterior={posterior!r} and latent layers {latent_layers}",
    )
    if levels is None:
        described = family.described
    elif family.capabilities.diagonal_gaussian:
        described = HIERARCHY_DESCRIBED
    else:
        described = f"{HIERARCHY_DESCRIBED} (z_1: {family.described})"
    return VAE(
        init=init,
        encode=encode,
        reparameterize=reparameterize,
        decode=decode,
        draw=draw,
        prior=prior_of,
        elbo=functools.partial(bounds.elbo, functions),
        log_importance_weights=functools.partial(bounds.log_importance_weights, functions),
        iwae_bound=functools.partial(bounds.iwae_bound, functions),
        generate=functools.partial(bounds.generate, functions),
        latent_dim=sum(latent_layers),
        image_shape=image_shape,
        likelihood=likelihood,
        prior_name=prior,
        posterior_name=posterior,
        latent_layers=latent_layers,
        inference=inference if levels is not None else "",
        closed_form_kl=functions.closed_form_kl,
        kl_per_dimension=compatibility.kl_per_dimension(q_capabilities, p_capabilities),
        density_everywhere=q_capabilities.density_everywhere,
        posterior_described=described,
    )
