"""``vae_jax/config_checks.py``: every range at its edges and just past them, every string
field's choices, the refusals that need several fields, and every shipped config."""

from __future__ import annotations

import importlib
import inspect
import math
import re
from pathlib import Path

import numpy as np
import pytest

from experiments.configs import tiny
from tests.helpers.runs import apply_overrides
from vae_jax import config_checks
from vae_jax.errors import ConfigError
from vae_jax.training import resume

# --- Config ranges: every check at its edges and just past them. ---


def _float_at_least(field, minimum, *, strict=False):
    """``> minimum`` if strict, else ``>= minimum``; finite in float32 either way (training
    computes in float32: float64's largest number is inf there, its smallest is 0)."""
    inside = float(np.nextafter(np.float32(minimum), np.float32(np.inf)))
    # Just below in float32: float64's neighbour of 0 would be refused as an underflow
    # before the range check is reached.
    outside = float(np.nextafter(np.float32(minimum), np.float32(-np.inf)))
    rows = [
        (field, field, float(minimum), not strict),
        (field, field, inside if strict else outside, strict),
        (field, field, float(np.finfo(np.float32).max), True),
        (field, field, float(np.finfo(np.float64).max), False),
        (field, field, math.inf, False),
        (field, field, math.nan, False),
    ]
    if strict and minimum == 0:
        rows.append((field, field, float(np.nextafter(0.0, 1.0)), False))  # 0 in float32
    return rows


def _int_at_least(field, minimum):
    return [(field, field, minimum, True), (field, field, minimum - 1, False)]


def _unit_interval(field, *, include_one):
    """[0, 1] or [0, 1)."""
    rows = [
        (field, field, 0.0, True),
        (field, field, float(np.nextafter(0.0, -1.0)), False),
        (field, field, 1.0, include_one),
        (field, field, math.nan, False),
    ]
    if include_one:
        rows.append((field, field, float(np.nextafter(1.0, 2.0)), False))
    else:
        rows.append((field, field, float(np.nextafter(1.0, 0.0)), True))
    return rows


# (field named in the error, config leaf, value, accepted, other fields set first)
CONV = {"model.architecture": "conv"}
GAUSSIAN = {"model.likelihood": "gaussian"}
IWAE = {"objective.name": "iwae"}
MC = {"objective.kl": "mc"}
RANGE_ROWS = [
    ("seed", "seed", 0, True),
    ("seed", "seed", -1, False),
    ("seed", "seed", 2**32 - 1, True),
    ("seed", "seed", 2**32, False),
    ("seed", "seed", True, False),
    *_unit_interval("data.validation_fraction", include_one=False),
    *_int_at_least("data.limit_train", 0),
    *_int_at_least("data.limit_test", 0),
    *_int_at_least("data.binarization_seed", 0),
    *_int_at_least("data.split_seed", 0),
    # jax.random.key takes 32 bits: key(2**32) would silently be key(0).
    ("data.binarization_seed", "data.binarization_seed", 2**32 - 1, True),
    ("data.binarization_seed", "data.binarization_seed", 2**32, False),
    ("data.split_seed", "data.split_seed", 2**32 - 1, True),
    ("data.split_seed", "data.split_seed", 2**32, False),
    # Dynamic binarization's protocol versions: the integers 1 and 2, nothing else.
    ("data.binarization_version", "data.binarization_version", 1, True),
    ("data.binarization_version", "data.binarization_version", 2, True),
    ("data.binarization_version", "data.binarization_version", 0, False),
    ("data.binarization_version", "data.binarization_version", 3, False),
    ("data.binarization_version", "data.binarization_version", True, False),
    ("model.mixture_density_version", "model.mixture_density_version", 1, True),
    ("model.mixture_density_version", "model.mixture_density_version", 2, True),
    ("model.mixture_density_version", "model.mixture_density_version", 0, False),
    ("model.mixture_density_version", "model.mixture_density_version", 3, False),
    ("model.mixture_density_version", "model.mixture_density_version", True, False),
    *_int_at_least("model.latent_dim", 1),
    ("model.hidden_sizes[0]", "model.hidden_sizes", (1,), True),
    ("model.hidden_sizes[0]", "model.hidden_sizes", (0,), False),
    ("model.hidden_sizes[1]", "model.hidden_sizes", (32, 1), True),
    ("model.hidden_sizes[1]", "model.hidden_sizes", (32, 0), False),
    ("model.conv_channels[0]", "model.conv_channels", (1,), True, CONV),
    ("model.conv_channels[0]", "model.conv_channels", (0,), False, CONV),
    ("model.conv_channels[1]", "model.conv_channels", (32, 0), False, CONV),
    ("model.conv_channels", "model.conv_channels", (), False, CONV),
    *_float_at_least("model.observation_scale", 0.0, strict=True),
    *_float_at_least("model.min_scale", 0.0, strict=True),
    # A learned gaussian scale's lower bound must be below its initial value.
    ("model.min_scale", "model.min_scale", 0.1, False, GAUSSIAN),
    ("model.min_scale", "model.min_scale", float(np.nextafter(0.1, 0.0)), True, GAUSSIAN),
    *_int_at_least("model.num_bins", 2),
    # a probability clamp: [0, 0.5)
    ("model.bernoulli_clip", "model.bernoulli_clip", 0.0, True),
    ("model.bernoulli_clip", "model.bernoulli_clip", -1e-9, False),
    ("model.bernoulli_clip", "model.bernoulli_clip", 0.49, True),
    ("model.bernoulli_clip", "model.bernoulli_clip", 0.5, False),
    ("model.log_variance_range", "model.log_variance_range", (), True),
    ("model.log_variance_range", "model.log_variance_range", (-6.0, 2.0), True),
    ("model.log_variance_range", "model.log_variance_range", (2.0, -6.0), False),
    ("model.log_variance_range", "model.log_variance_range", (1.0, 1.0), False),
    ("model.log_variance_range", "model.log_variance_range", (-6.0,), False),
    *_int_at_least("model.prior_components", 1),
    *_int_at_least("model.flow_steps", 1),
    *_int_at_least("model.flow_hidden_size", 1),
    ("model.upper_latent_dims[0]", "model.upper_latent_dims", (1,), True, MC),
    ("model.upper_latent_dims[0]", "model.upper_latent_dims", (0,), False, MC),
    ("model.upper_latent_dims[1]", "model.upper_latent_dims", (4, 0), False, MC),
    ("model.upper_hidden_sizes[0]", "model.upper_hidden_sizes", (1,), True),
    ("model.upper_hidden_sizes[0]", "model.upper_hidden_sizes", (0,), False),
    ("model.upper_hidden_sizes[1]", "model.upper_hidden_sizes", (8, 0), False),
    ("model.upper_hidden_sizes", "model.upper_hidden_sizes", (), False),
    *_int_at_least("objective.num_samples", 1),
    *_float_at_least("objective.beta", 0.0),
    *_int_at_least("objective.kl_warmup_steps", 0),
    *_int_at_least("objective.kl_warmup_epochs", 0),
    *_float_at_least("objective.free_bits", 0.0),
    # The elbo-only fields must stay neutral under iwae.
    ("objective.beta", "objective.beta", 1.0, True, IWAE),
    ("objective.beta", "objective.beta", float(np.nextafter(1.0, 2.0)), False, IWAE),
    ("objective.beta", "objective.beta", float(np.nextafter(1.0, 0.0)), False, IWAE),
    ("objective.kl_warmup_steps", "objective.kl_warmup_steps", 1, False, IWAE),
    ("objective.kl_warmup_epochs", "objective.kl_warmup_epochs", 1, False, IWAE),
    ("objective.free_bits", "objective.free_bits", float(np.nextafter(0.0, 1.0)), False, IWAE),
    *_float_at_least("optimizer.learning_rate", 0.0, strict=True),
    *_int_at_least("optimizer.warmup_steps", 0),
    *_unit_interval("optimizer.final_learning_rate_ratio", include_one=True),
    *_float_at_least("optimizer.weight_decay", 0.0),
    *_unit_interval("optimizer.b1", include_one=False),
    *_unit_interval("optimizer.b2", include_one=False),
    *_float_at_least("optimizer.eps", 0.0, strict=True),
    *_float_at_least("optimizer.grad_clip_norm", 0.0),
    *(
        row
        for field in (
            "batch_size",
            "num_epochs",
            "checkpoint_every_epochs",
            "keep_checkpoints",
            "eval_batch_size",
            "validation_num_samples",
            "epoch_unroll",
        )
        for row in _int_at_least(f"training.{field}", 1)
    ),
    *_int_at_least("training.early_stopping_patience", 0),
    # early stopping reads the validation split
    (
        "training.early_stopping_patience",
        "data.validation_fraction",
        0.0,
        False,
        {"training.early_stopping_patience": 3},
    ),
    *(
        row
        for field in (
            "num_importance_samples",
            "importance_chunk_size",
            "batch_size",
            "num_elbo_samples",
            "num_figure_examples",
        )
        for row in _int_at_least(f"evaluation.{field}", 1)
    ),
    *_int_at_least("runtime.num_devices", 0),
    *(
        row
        for field in (
            "ais_num_steps",
            "ais_num_chains",
            "ais_leapfrog_steps",
            "ais_chain_chunk_size",
            "bdmc_num_examples",
        )
        for row in _int_at_least(f"evaluation.{field}", 1)
    ),
    *_int_at_least("evaluation.ais_num_examples", 0),
    # an open interval: (0, 1)
    ("evaluation.ais_target_acceptance", "evaluation.ais_target_acceptance", 0.0, False),
    ("evaluation.ais_target_acceptance", "evaluation.ais_target_acceptance", 0.01, True),
    ("evaluation.ais_target_acceptance", "evaluation.ais_target_acceptance", 0.99, True),
    ("evaluation.ais_target_acceptance", "evaluation.ais_target_acceptance", 1.0, False),
]
# Seeds of keys the data draws from: 32 bits, like the run's seed.
# Every documented choice (experiments/configs/base.py) of the string fields check_config checks.
CHOICES = {
    "data.source": ("local", "tfds"),
    "data.binarization": ("none", "static", "dynamic"),
    "data.static_binarization": ("sample", "threshold"),
    "model.architecture": ("mlp", "conv", "gated_conv"),
    "model.activation": (
        "relu",
        "gelu",
        "elu",
        "silu",
        "tanh",
        "softplus",
        "leaky_relu",
        "gated",
    ),
    "model.kernel_init": ("lecun_normal", "he_normal"),
    "model.decoder_reads": ("z1", "all_layers"),
    "model.pseudo_inputs": ("sigmoid", "hardtanh"),
    "data.validation_order": ("permuted", "last"),
    "model.likelihood": ("bernoulli", "continuous_bernoulli", "gaussian", "discretized_logistic"),
    "model.gaussian_scale": ("fixed", "shared", "per_pixel", "predicted"),
    "objective.name": ("elbo", "iwae"),
    "objective.kl": ("analytic", "mc"),
    "optimizer.name": ("adam", "adamw", "adam_normgrad"),
    "optimizer.schedule": ("constant", "warmup_cosine"),
    "model.compute_dtype": ("float32", "bfloat16"),
    "evaluation.compute_dtype": ("float32", "bfloat16"),
    "runtime.matmul_precision": ("highest", "high", "default"),
    "objective.gradient_estimator": ("reparameterization", "stl", "dreg"),
    "model.prior": ("standard_normal", "mixture", "vampprior"),
    "model.posterior": ("gaussian", "iaf"),
    "model.inference": ("bottom_up", "top_down", "top_down_skip"),
    "evaluation.ais_schedule": ("sigmoidal", "linear"),
    "evaluation.ais_initial": ("posterior", "prior"),
}
# Choices that apply only beside other fields: (field, value) -> the context they need.
CHOICE_CONTEXT = {
    ("objective.gradient_estimator", "stl"): {"objective.kl": "mc"},
    ("objective.gradient_estimator", "dreg"): {"objective.name": "iwae"},
    ("model.prior", "mixture"): {"objective.kl": "mc"},
    ("model.prior", "vampprior"): {"objective.kl": "mc"},
    ("model.posterior", "iaf"): {"objective.kl": "mc"},
    ("model.architecture", "gated_conv"): {"model.activation": "gated"},
    ("model.decoder_reads", "all_layers"): {
        "model.upper_latent_dims": (4,),
        "objective.kl": "mc",
    },
}
# Fields check_config does not look at (data.name is checked against the data).
NO_RANGE = {
    "data.name": "no_such_dataset",
    "data.data_dir": "/no/such/dir",
    "data.validation_split": "no_such_split",
    "runtime.debug_key_reuse": True,
    "runtime.deterministic_gpu_ops": True,
}


def _range_param(row):
    name, leaf, value, accepted, context = (*row, {})[:5]
    verdict = "accepted" if accepted else "refused"
    return pytest.param(name, leaf, value, accepted, context, id=f"{name}={value!r}-{verdict}")


def _check(config, name: str, accepted: bool) -> None:
    if accepted:
        config_checks.check_config(config)
        return
    with pytest.raises(ConfigError) as error:
        config_checks.check_config(config)
    message = str(error.value)
    assert re.match(rf"{re.escape(name)}[= ]", message), message


@pytest.mark.parametrize(
    ("name", "leaf", "value", "accepted", "context"),
    [_range_param(row) for row in RANGE_ROWS],
)
def test_config_ranges_at_and_just_past_their_edges(name, leaf, value, accepted, context):
    """README: invalid values fail in one line naming the field; each range is closed or open
    exactly as config_checks documents it."""
    config = tiny.get_config()
    for dotted, other in context.items():
        apply_overrides(config, {dotted: other})
    config_checks.check_config(config)  # the context alone is valid
    apply_overrides(config, {leaf: value})
    _check(config, name, accepted)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        pytest.param(field, value, id=f"{field}={value}")
        for field, values in CHOICES.items()
        for value in (*values, "no_such_choice", values[0].upper())
    ],
)
def test_string_fields_accept_their_documented_choices_only(field, value):
    """Every choice base.py documents is accepted; anything else fails naming the field."""
    config = tiny.get_config()
    apply_overrides(config, CHOICE_CONTEXT.get((field, value), {}))
    apply_overrides(config, {field: value})
    _check(config, field, value in CHOICES[field])


@pytest.mark.parametrize(
    ("estimator", "context", "message"),
    [
        ("stl", {}, "applies to the elbo objective with kl='mc'"),
        ("stl", {"objective.name": "iwae"}, "applies to the elbo objective with kl='mc'"),
        ("dreg", {}, "applies to the iwae objective"),
    ],
)
def test_a_gradient_estimator_outside_its_bound_fails_naming_the_field(estimator, context, message):
    config = tiny.get_config()
    apply_overrides(config, {**context, "objective.gradient_estimator": estimator})
    with pytest.raises(
        ConfigError, match=rf"^objective\.gradient_estimator='{estimator}' {re.escape(message)}$"
    ):
        config_checks.check_config(config)


@pytest.mark.parametrize(
    ("conv_channels", "refusal"),
    [
        ((32, 64), None),  # 28 = 7 * 2**2
        ((16, 32, 64), "image size (28, 28) is not divisible by 2**3=8"),
    ],
)
def test_a_conv_model_must_fit_the_image_size(tiny_config, conv_channels, refusal):
    """Checked against the data before any work: one halving per conv layer."""
    tiny_config.model.architecture = "conv"
    tiny_config.model.conv_channels = conv_channels
    if refusal is None:
        config_checks.check_config_against_data(tiny_config)
        return
    with pytest.raises(ConfigError, match=re.escape(f"model.conv_channels={conv_channels}: ")):
        config_checks.check_config_against_data(tiny_config)
    with pytest.raises(ConfigError, match=re.escape(refusal)):
        config_checks.check_config_against_data(tiny_config)


@pytest.mark.parametrize(
    "name",
    sorted(
        p.stem
        for p in (Path(__file__).parents[1] / "experiments" / "configs").glob("*.py")
        if p.stem not in ("__init__", "base")
    ),
)
def test_every_shipped_config_passes_the_config_checks(name):
    """A config in experiments/configs that check_config refuses could not be launched."""
    module = importlib.import_module(f"experiments.configs.{name}")
    config_checks.check_config(module.get_config())


def test_the_range_table_covers_every_field_config_checks_checks():
    """A field added to the config or to config_checks must be added to the tables above."""
    leaves = set(resume.flatten(resume.config_as_json(tiny.get_config())))
    ranged = {row[1] for row in RANGE_ROWS}
    tables = [ranged, set(CHOICES), set(NO_RANGE)]
    assert sum(len(t) for t in tables) == len(set().union(*tables)), "a field in two tables"
    assert set().union(*tables) == leaves
    source_text = inspect.getsource(config_checks)
    mentioned = set(
        re.findall(
            r'"((?:data|model|objective|optimizer|training|evaluation|runtime)\.\w+)', source_text
        )
    )
    bare = set(re.findall(r'"([a-z_]+)"', source_text))
    mentioned |= {leaf for leaf in leaves if leaf.rsplit(".", 1)[-1] in bare}
    if "config.seed" in source_text:
        mentioned.add("seed")
    assert mentioned - ranged - set(CHOICES) == set()
    # The fields without a range really are unchecked.
    config = tiny.get_config()
    for field, value in NO_RANGE.items():
        apply_overrides(config, {field: value})
    config_checks.check_config(config)
