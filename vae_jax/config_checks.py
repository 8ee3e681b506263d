"""Checks a config before any work starts; each failure names the field in one line.

``check_config`` looks only at the config; ``check_config_against_data`` also reads the
dataset's metadata (not its examples) to catch, e.g., a batch larger than the data or a
likelihood that does not fit it. Both run before a workdir is created.
"""

from __future__ import annotations

import math

import numpy as np

from vae_jax import optimizers
from vae_jax.core import likelihoods, networks, precision
from vae_jax.data import catalog, pipeline, preprocess, source
from vae_jax.errors import ConfigError, DataError
from vae_jax.model import compatibility, hierarchy, posteriors, priors
from vae_jax.model import vae as vae_module

OBJECTIVES = compatibility.OBJECTIVES
OPTIMIZERS = optimizers.OPTIMIZERS
SCHEDULES = ("constant", "warmup_cosine")


def _one_of(value, choices, field):
    if value not in choices:
        raise ConfigError(f"{field}={value!r} is not one of {list(choices)}")


def _at_least(value, minimum, field, *, strict=False):
    bad = value <= minimum if strict else value < minimum
    if bad or (isinstance(value, float) and not math.isfinite(value)):
        relation = ">" if strict else ">="
        raise ConfigError(f"{field}={value!r} must be {relation} {minimum}")


def _integer_one_of(value, choices, field):
    if isinstance(value, bool) or not isinstance(value, int) or value not in choices:
        raise ConfigError(f"{field}={value!r} is not one of {list(choices)}")


def _in_unit_interval(value, field, *, include_one=False):
    upper_ok = value <= 1 if include_one else value < 1
    if not (0 <= value and upper_ok):
        raise ConfigError(f"{field}={value!r} must be in [0, 1{']' if include_one else ')'}")


def _check_seed(seed, field):
    # jax.random.key takes 32 bits: key(2**32) is key(0), so a larger seed would silently
    # reuse another's numbers.
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**32:
        raise ConfigError(f"{field}={seed!r} must be an integer in [0, 2**32)")


def _check_data(data):
    _one_of(data.source, catalog.SOURCES, "data.source")
    _one_of(data.binarization, preprocess.BINARIZATIONS, "data.binarization")
    _one_of(data.static_binarization, preprocess.STATIC_METHODS, "data.static_binarization")
    _integer_one_of(
        data.binarization_version, preprocess.BINARIZATION_VERSIONS, "data.binarization_version"
    )
    _in_unit_interval(data.validation_fraction, "data.validation_fraction")
    _one_of(data.validation_order, pipeline.VALIDATION_ORDERS, "data.validation_order")
    _at_least(data.limit_train, 0, "data.limit_train")
    _at_least(data.limit_test, 0, "data.limit_test")
    _check_seed(data.binarization_seed, "data.binarization_seed")
    _check_seed(data.split_seed, "data.split_seed")


def _check_model(m):
    _one_of(m.architecture, networks.ARCHITECTURES, "model.architecture")
    _at_least(m.latent_dim, 1, "model.latent_dim")
    for i, size in enumerate(m.hidden_sizes):
        _at_least(size, 1, f"model.hidden_sizes[{i}]")
    if m.architecture == "conv":
        if not m.conv_channels:
            raise ConfigError("model.conv_channels is empty; the conv architecture needs >= 1")
        for i, channels in enumerate(m.conv_channels):
            _at_least(channels, 1, f"model.conv_channels[{i}]")
    _one_of(m.activation, [*networks.ACTIVATIONS, networks.GATED], "model.activation")
    _one_of(m.kernel_init, networks.KERNEL_INITS, "model.kernel_init")
    if m.architecture == "gated_conv" and m.activation != networks.GATED:
        raise ConfigError(
            f"model.architecture='gated_conv' has gated layers only: set model.activation="
            f"{networks.GATED!r} (got {m.activation!r})"
        )
    if m.log_variance_range and not (
        len(m.log_variance_range) == 2 and m.log_variance_range[0] < m.log_variance_range[1]
    ):
        raise ConfigError(
            f"model.log_variance_range={tuple(m.log_variance_range)} must be () or (low, high) "
            "with low < high"
        )
    _in_unit_interval(m.bernoulli_clip, "model.bernoulli_clip")
    if m.bernoulli_clip >= 0.5:
        raise ConfigError(f"model.bernoulli_clip={m.bernoulli_clip} must be below 0.5")
    _one_of(m.likelihood, likelihoods.LIKELIHOODS, "model.likelihood")
    _one_of(m.gaussian_scale, likelihoods.GAUSSIAN_SCALES, "model.gaussian_scale")
    _at_least(m.observation_scale, 0, "model.observation_scale", strict=True)
    _at_least(m.min_scale, 0, "model.min_scale", strict=True)
    if m.likelihood == "gaussian" and m.min_scale >= m.observation_scale:
        raise ConfigError(
            f"model.min_scale={m.min_scale} must be below model.observation_scale="
            f"{m.observation_scale}"
        )
    _at_least(m.num_bins, 2, "model.num_bins")
    _one_of(m.compute_dtype, precision.COMPUTE_DTYPES, "model.compute_dtype")
    _one_of(m.prior, priors.PRIORS, "model.prior")
    _at_least(m.prior_components, 1, "model.prior_components")
    _one_of(m.pseudo_inputs, priors.PSEUDO_INPUTS, "model.pseudo_inputs")
    _integer_one_of(
        m.mixture_density_version,
        priors.MIXTURE_DENSITY_VERSIONS,
        "model.mixture_density_version",
    )
    _one_of(m.posterior, posteriors.POSTERIORS, "model.posterior")
    _at_least(m.flow_steps, 1, "model.flow_steps")
    _at_least(m.flow_hidden_size, 1, "model.flow_hidden_size")
    _check_hierarchy(m)


def _check_hierarchy(m):
    for i, size in enumerate(m.upper_latent_dims):
        _at_least(size, 1, f"model.upper_latent_dims[{i}]")
    if not m.upper_hidden_sizes:
        raise ConfigError(
            "model.upper_hidden_sizes is empty; each network between layers needs >= 1"
        )
    for i, size in enumerate(m.upper_hidden_sizes):
        _at_least(size, 1, f"model.upper_hidden_sizes[{i}]")
    _one_of(m.inference, hierarchy.INFERENCE, "model.inference")
    _one_of(m.decoder_reads, vae_module.DECODER_READS, "model.decoder_reads")
    if m.decoder_reads == "all_layers" and not m.upper_latent_dims:
        raise ConfigError(
            "model.decoder_reads='all_layers' needs a hierarchy: set model.upper_latent_dims"
        )


def _check_objective(o):
    _one_of(o.name, OBJECTIVES, "objective.name")
    _at_least(o.num_samples, 1, "objective.num_samples")
    _one_of(o.kl, compatibility.KL_ESTIMATORS, "objective.kl")
    _at_least(o.beta, 0.0, "objective.beta")
    _at_least(o.kl_warmup_steps, 0, "objective.kl_warmup_steps")
    _at_least(o.kl_warmup_epochs, 0, "objective.kl_warmup_epochs")
    if o.kl_warmup_steps and o.kl_warmup_epochs:
        raise ConfigError(
            f"objective.kl_warmup_steps={o.kl_warmup_steps} and objective.kl_warmup_epochs="
            f"{o.kl_warmup_epochs}: set one warm-up, the other to 0"
        )
    _at_least(o.free_bits, 0.0, "objective.free_bits")
    _one_of(o.gradient_estimator, compatibility.GRADIENT_ESTIMATORS, "objective.gradient_estimator")
    if o.name == "iwae":
        neutral_values = (
            ("beta", 1.0), ("kl_warmup_steps", 0), ("kl_warmup_epochs", 0), ("free_bits", 0.0)
        )  # fmt: skip
        for field, neutral in neutral_values:
            if o[field] != neutral:
                raise ConfigError(
                    f"objective.{field}={o[field]!r} applies to the elbo objective only "
                    f"(objective.name='iwae'); set it to {neutral!r}"
                )


def _check_optimizer(opt):
    _one_of(opt.name, OPTIMIZERS, "optimizer.name")
    _at_least(opt.learning_rate, 0.0, "optimizer.learning_rate", strict=True)
    _one_of(opt.schedule, SCHEDULES, "optimizer.schedule")
    _at_least(opt.warmup_steps, 0, "optimizer.warmup_steps")
    _in_unit_interval(
        opt.final_learning_rate_ratio, "optimizer.final_learning_rate_ratio", include_one=True
    )
    _at_least(opt.weight_decay, 0.0, "optimizer.weight_decay")
    _in_unit_interval(opt.b1, "optimizer.b1")
    _in_unit_interval(opt.b2, "optimizer.b2")
    _at_least(opt.eps, 0.0, "optimizer.eps", strict=True)
    _at_least(opt.grad_clip_norm, 0.0, "optimizer.grad_clip_norm")


def _check_training(t):
    for field in (
        "batch_size",
        "num_epochs",
        "checkpoint_every_epochs",
        "keep_checkpoints",
        "eval_batch_size",
        "validation_num_samples",
        "epoch_unroll",
    ):
        _at_least(t[field], 1, f"training.{field}")
    _at_least(t.early_stopping_patience, 0, "training.early_stopping_patience")


def _check_evaluation(e):
    for field in ("num_importance_samples", "importance_chunk_size", "batch_size"):
        _at_least(e[field], 1, f"evaluation.{field}")
    _at_least(e.num_elbo_samples, 1, "evaluation.num_elbo_samples")
    _at_least(e.num_figure_examples, 1, "evaluation.num_figure_examples")
    _one_of(e.compute_dtype, precision.COMPUTE_DTYPES, "evaluation.compute_dtype")
    _check_ais(e)


def _check_ais(e):
    """The AIS fields (absent from runs written before them: their defaults apply)."""
    for field in ("ais_num_steps", "ais_num_chains", "ais_leapfrog_steps",
                  "ais_chain_chunk_size", "bdmc_num_examples"):  # fmt: skip
        if field in e:
            _at_least(e[field], 1, f"evaluation.{field}")
    if "ais_num_examples" in e:
        _at_least(e.ais_num_examples, 0, "evaluation.ais_num_examples")
    if "ais_schedule" in e:
        _one_of(e.ais_schedule, ("sigmoidal", "linear"), "evaluation.ais_schedule")
    if "ais_initial" in e:
        _one_of(e.ais_initial, ("posterior", "prior"), "evaluation.ais_initial")
    if "ais_target_acceptance" in e and not 0 < e.ais_target_acceptance < 1:
        raise ConfigError(
            f"evaluation.ais_target_acceptance={e.ais_target_acceptance!r} must be in (0, 1)"
        )


FLOAT32_MAX = float(np.finfo(np.float32).max)


def _floats(tree, name: str = ""):
    """``(field, value)`` of every float in a config (nested groups, tuples included)."""
    if hasattr(tree, "items"):
        for key, value in tree.items():
            yield from _floats(value, f"{name}.{key}" if name else key)
    elif isinstance(tree, (list, tuple)):
        for index, value in enumerate(tree):
            yield from _floats(value, f"{name}[{index}]")
    elif isinstance(tree, float):
        yield name, tree


def _check_floats_fit_float32(config) -> None:
    """Training computes in float32: a float field that is not finite there (1e300 becomes
    inf) or that underflows to 0 (1e-50) would fail later or silently mean another value."""
    for field, value in _floats(config):
        if not math.isfinite(value) or abs(value) > FLOAT32_MAX:
            raise ConfigError(f"{field}={value!r} is not a finite float32 number")
        if value != 0 and np.float32(value) == 0:
            raise ConfigError(f"{field}={value!r} underflows to 0 in float32")


def _check_combination(m, o) -> None:
    """What is undefined about this model with this objective, from the one compatibility
    table (``vae_jax.model.compatibility``): the first refusal, naming the fields."""
    combination = compatibility.Combination(
        prior=m.prior,
        posterior=m.posterior,
        num_layers=1 + len(m.upper_latent_dims),
        inference=m.inference,
        architecture=m.architecture,
        objective=o.name,
        kl=o.kl,
        gradient_estimator=o.gradient_estimator,
        free_bits=float(o.free_bits),
    )
    refusals = compatibility.refusals(combination, upper_latent_dims=tuple(m.upper_latent_dims))
    if refusals:
        raise ConfigError(refusals[0].message())


def check_config(config) -> None:
    """Field-by-field checks that need no data; raises ``ConfigError``."""
    _check_floats_fit_float32(config)
    _check_seed(config.seed, "seed")
    _check_data(config.data)
    _check_model(config.model)
    _check_objective(config.objective)
    _check_combination(config.model, config.objective)
    _check_optimizer(config.optimizer)
    _check_training(config.training)
    if config.training.early_stopping_patience and not (
        config.data.validation_fraction > 0 or config.data.validation_split
    ):
        raise ConfigError(
            f"training.early_stopping_patience={config.training.early_stopping_patience} needs "
            "a validation split: set data.validation_fraction > 0 or data.validation_split"
        )
    _check_evaluation(config.evaluation)
    _at_least(config.runtime.num_devices, 0, "runtime.num_devices")
    _one_of(
        config.runtime.matmul_precision, precision.MATMUL_PRECISIONS, "runtime.matmul_precision"
    )


def _check_likelihood_fits_data(config, spec: catalog.DatasetSpec) -> None:
    likelihood, binarization = config.model.likelihood, config.data.binarization
    kind = likelihoods.get_spec(likelihood).data_kind
    binary_data = spec.binary or binarization != "none"
    if spec.binary and binarization != "none":
        raise ConfigError(
            f"data.binarization={binarization!r}: {spec.name} is already binary; use 'none'"
        )
    if kind == likelihoods.BINARY and not binary_data:
        raise ConfigError(
            "model.likelihood='bernoulli' needs binary data but data.binarization='none' "
            "gives intensities; binarize ('dynamic' or 'static') or use continuous_bernoulli"
        )
    if kind != likelihoods.BINARY and binary_data:
        raise ConfigError(
            f"model.likelihood={likelihood!r} is for {kind} data but the data are binary "
            f"(data.binarization={binarization!r}); use bernoulli or data.binarization='none'"
        )


def num_training_examples(config, spec: catalog.DatasetSpec) -> int:
    """Training examples after limits and carving validation (as ``load_dataset`` does)."""
    num = spec.split_sizes.get("train", 0)
    if config.data.limit_train:
        num = min(num, int(config.data.limit_train))
    if not config.data.validation_split:
        num -= round(float(config.data.validation_fraction) * num)
    return num


def check_config_against_data(config) -> catalog.DatasetSpec:
    """Checks that need the dataset's metadata; raises ``ConfigError``/``DataError``."""
    try:
        spec = catalog.get_spec(config.data)
    except DataError as error:
        raise ConfigError(str(error)) from error
    for split in ("train", "test", config.data.validation_split):
        if split:
            source.open_split(config.data, split)  # prepared, and the split exists
    _check_likelihood_fits_data(config, spec)
    if config.model.architecture == "conv":
        reason = networks.conv_downsampling_error(spec.image_shape, len(config.model.conv_channels))
        if reason:
            raise ConfigError(f"model.conv_channels={tuple(config.model.conv_channels)}: {reason}")
    if config.model.architecture == "gated_conv":
        reason = networks.conv_downsampling_error(spec.image_shape, 2)  # two stride-2 layers
        if reason:
            raise ConfigError(f"model.architecture='gated_conv': {reason}")
    num_train = num_training_examples(config, spec)
    if config.training.batch_size > num_train:
        raise ConfigError(
            f"training.batch_size={config.training.batch_size} is larger than the "
            f"{num_train} training examples of {spec.name}"
        )
    return spec


def check_all(config) -> catalog.DatasetSpec:
    """Every check, in order; returns the dataset's spec."""
    check_config(config)
    return check_config_against_data(config)
