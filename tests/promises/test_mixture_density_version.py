"""The mixture priors' log-density versions (``model.mixture_density_version``): version 2
computes the same formula as version 1 with the components first; both against a float64
reference, their gradients against each other, and the field's checks and resume rule."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special, stats

from experiments.configs import tiny
from vae_jax import config_checks
from vae_jax.core import distributions
from vae_jax.errors import ConfigError
from vae_jax.model import priors
from vae_jax.run import files
from vae_jax.training import resume

C, D = 50, 6


def _mixture_values(loc_spread: float, log_scale: float, seed: int = 0):
    """Logits, locs and log-scales of a mixture, and draws near its components (where the
    log-sum-exp is decided and rounding matters most)."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=C)
    loc = rng.normal(0.0, loc_spread, (C, D))
    log_scale = log_scale + 0.1 * rng.normal(size=(C, D))
    near = rng.integers(0, C, (3, 7))
    z = loc[near] + np.exp(log_scale[near]) * rng.normal(size=(3, 7, D))
    return logits, loc, log_scale, z


def _reference_log_prob(logits, loc, log_scale, z):
    """float64 scipy: log sum_c softmax(logits)_c prod_d N(z_d; loc_cd, exp(log_scale_cd))."""
    per_component = stats.norm.logpdf(z[..., None, :], loc, np.exp(log_scale)).sum(-1)
    return special.logsumexp(per_component + special.log_softmax(logits), axis=-1)


def _mixture(values, version):
    logits, loc, log_scale, _ = (jnp.asarray(v, jnp.float32) for v in values)
    return distributions.MixtureOfDiagGaussians(logits, loc, log_scale, density_version=version)


@pytest.mark.parametrize(("loc_spread", "log_scale"), [(1.0, -1.0), (2.0, -3.0), (4.0, -3.0)])
@pytest.mark.parametrize("version", priors.MIXTURE_DENSITY_VERSIONS)
def test_each_version_is_the_mixture_density_to_float32_accuracy(version, loc_spread, log_scale):
    """Both versions against scipy in float64, at the VampPrior code's smallest scale
    (log-variance -6) too, where expanding the quadratic into matrix products would be off
    by up to 0.07 nats: each within 2e-4 nats of a log-density of order 60."""
    values = _mixture_values(loc_spread, log_scale)
    ours = np.asarray(_mixture(values, version).log_prob(jnp.asarray(values[3], jnp.float32)))
    reference = _reference_log_prob(*values)
    assert ours.shape == reference.shape == (3, 7)
    np.testing.assert_allclose(ours, reference, rtol=0, atol=2e-4)


def test_version_2_has_version_1s_gradients():
    """A second way of computing the same function: the gradients in the logits, locs,
    log-scales and draws agree to float32 rounding (relative to the largest entry)."""
    values = _mixture_values(2.0, -2.0, seed=1)
    args = tuple(jnp.asarray(v, jnp.float32) for v in values)

    def total(version, logits, loc, log_scale, z):
        mixture = distributions.MixtureOfDiagGaussians(
            logits, loc, log_scale, density_version=version
        )
        return jnp.sum(mixture.log_prob(z) * jnp.linspace(0.5, 1.5, 21).reshape(3, 7))

    grads = {v: jax.grad(lambda *a, v=v: total(v, *a), argnums=(0, 1, 2, 3))(*args) for v in (1, 2)}
    for old, new in zip(grads[1], grads[2], strict=True):
        scale = float(np.max(np.abs(old)))
        assert scale > 0
        np.testing.assert_allclose(np.asarray(new), np.asarray(old), rtol=0, atol=2e-5 * scale)


def test_version_2_differs_from_version_1_only_in_rounding_in_a_vampprior_vae():
    """The same VampPrior model and parameters under both versions: the prior's
    log-density agrees to 1e-4 relative (and the versions are distinct code paths)."""
    from vae_jax import model

    built = {
        v: model.make_vae(
            image_shape=(4, 4, 1),
            hidden_sizes=(8,),
            latent_dim=3,
            prior="vampprior",
            prior_components=5,
            mixture_density_version=v,
        )
        for v in (1, 2)
    }
    params = built[1].init(jax.random.key(0))
    z = jax.random.normal(jax.random.key(1), (2, 4, 3))
    densities = {v: built[v].prior(params).log_prob(z) for v in (1, 2)}
    assert built[2].prior(params).density_version == 2
    assert built[1].prior(params).density_version == 1
    np.testing.assert_allclose(densities[2], densities[1], rtol=1e-4)


@pytest.mark.parametrize(("value", "accepted"), [(1, True), (2, True), (0, False), (3, False)])
def test_the_field_takes_1_or_2_and_names_itself_otherwise(value, accepted):
    config = tiny.get_config()
    config.model.mixture_density_version = value
    if accepted:
        config_checks.check_config(config)
        return
    with pytest.raises(ConfigError, match=r"^model\.mixture_density_version=") as error:
        config_checks.check_config(config)
    assert "\n" not in str(error.value)


def test_new_runs_take_version_2_and_old_runs_read_as_version_1():
    assert tiny.get_config().model.mixture_density_version == 2
    old_config = resume.config_as_json(tiny.get_config())
    del old_config["model"]["mixture_density_version"]
    assert files.with_added_fields(old_config)["model"]["mixture_density_version"] == 1


@pytest.mark.parametrize("prior", ["mixture", "vampprior", "standard_normal"])
def test_an_old_run_resumes_with_version_2_only_where_the_version_changes_nothing(prior):
    """A run recorded before the field (version 1) resumed under a version-2 config: refused
    in one line naming the field when its prior is a mixture; allowed with the standard
    normal prior, which computes no mixture density."""
    config = tiny.get_config()
    config.model.prior = prior
    config.objective.kl = "mc"
    recorded = resume.config_as_json(config)
    del recorded["model"]["mixture_density_version"]
    recorded = files.with_added_fields(recorded)
    if prior == "standard_normal":
        assert resume.check_resumable(recorded, config) == ["model.mixture_density_version"]
        return
    with pytest.raises(ConfigError, match=r"model\.mixture_density_version is 2 but") as error:
        resume.check_resumable(recorded, config)
    assert "\n" not in str(error.value)
    config.model.mixture_density_version = 1
    assert resume.check_resumable(recorded, config) == []
