"""Distributions against independent references: scipy, closed forms, quadrature."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized
from scipy import integrate, special, stats

from vae_jax import distributions as D

jax.config.update("jax_enable_x64", False)


def _rng(seed=0):
    return np.random.default_rng(seed)


class LogProbTest(parameterized.TestCase):
    def test_diag_gaussian_matches_scipy(self):
        r = _rng()
        loc, log_scale, x = r.normal(size=(3, 6, 5)) * np.array([[[1.0]], [[0.5]], [[2.0]]])
        dist = D.DiagGaussian(jnp.asarray(loc, jnp.float32), jnp.asarray(log_scale, jnp.float32))
        expected = stats.norm.logpdf(x, loc, np.exp(log_scale)).sum(-1)
        np.testing.assert_allclose(dist.log_prob(jnp.asarray(x, jnp.float32)), expected, rtol=1e-5)

    def test_gaussian_observation_sums_over_image(self):
        r = _rng(1)
        loc = r.uniform(size=(2, 4, 4, 1))
        log_scale = np.full_like(loc, np.log(0.1))
        x = r.uniform(size=(2, 4, 4, 1))
        dist = D.Gaussian(jnp.asarray(loc, jnp.float32), jnp.asarray(log_scale, jnp.float32))
        expected = stats.norm.logpdf(x, loc, 0.1).sum((1, 2, 3))
        np.testing.assert_allclose(dist.log_prob(jnp.asarray(x, jnp.float32)), expected, rtol=1e-5)

    def test_bernoulli_matches_scipy(self):
        r = _rng(2)
        logits = r.normal(size=(4, 10)) * 3
        x = (r.uniform(size=(4, 10)) < 0.5).astype(np.float32)
        dist = D.Bernoulli(jnp.asarray(logits, jnp.float32), event_ndims=1)
        expected = stats.bernoulli.logpmf(x, special.expit(logits)).sum(-1)
        np.testing.assert_allclose(dist.log_prob(jnp.asarray(x)), expected, rtol=1e-5)

    @parameterized.named_parameters(("positive", 100.0), ("negative", -100.0))
    def test_bernoulli_stable_at_large_logits(self, logit):
        dist = D.Bernoulli(jnp.full((2,), logit, jnp.float32), event_ndims=0)
        log_probs = dist.log_prob(jnp.array([0.0, 1.0]))
        # log sigmoid(-l) and log sigmoid(l), in float64 closed form.
        expected = [-np.logaddexp(0, logit), -np.logaddexp(0, -logit)]
        np.testing.assert_allclose(log_probs, expected, rtol=1e-6, atol=1e-30)
        grad = jax.grad(lambda logits: D.Bernoulli(logits, 0).log_prob(jnp.array([0.0, 1.0])).sum())
        self.assertTrue(np.all(np.isfinite(grad(jnp.full((2,), logit)))))

    def test_discretized_logistic_matches_logistic_cdf(self):
        r = _rng(3)
        num_bins = 256
        loc = r.uniform(-0.2, 1.2, size=(50,))
        log_scale = r.uniform(-5, 0, size=(50,))
        k = r.integers(0, num_bins, size=(50,))
        k[:5] = 0
        k[5:10] = num_bins - 1
        dist = D.DiscretizedLogistic(
            jnp.asarray(loc, jnp.float32), jnp.asarray(log_scale, jnp.float32), num_bins, 0
        )
        half = 0.5 / (num_bins - 1)
        centre = k / (num_bins - 1)
        cdf = lambda v: stats.logistic.cdf(v, loc, np.exp(log_scale))
        expected = np.where(
            k == 0,
            cdf(centre + half),
            np.where(
                k == num_bins - 1, 1 - cdf(centre - half), cdf(centre + half) - cdf(centre - half)
            ),
        )
        np.testing.assert_allclose(
            np.exp(dist.log_prob(jnp.asarray(k))), expected, rtol=2e-4, atol=1e-12
        )

    @parameterized.named_parameters(
        ("centred", 0.5, -3.0),
        ("sharp", 0.3, -9.0),
        ("broad", 0.5, 2.0),
        ("far_left", -3.0, -4.0),
        ("far_right", 4.0, -4.0),
    )
    def test_discretized_logistic_bins_sum_to_one(self, loc, log_scale):
        dist = D.DiscretizedLogistic(jnp.float32(loc), jnp.float32(log_scale), 256, 0)
        total = jax.nn.logsumexp(dist.bin_log_probs(), axis=-1)
        np.testing.assert_allclose(total, 0.0, atol=2e-5)
        self.assertTrue(np.all(np.isfinite(dist.bin_log_probs())))

    def test_bernoulli_mean_and_variance_match_scipy(self):
        logits = np.array([-30.0, -3.0, -0.4, 0.0, 0.7, 5.0, 30.0])
        dist = D.Bernoulli(jnp.asarray(logits, jnp.float32), event_ndims=0)
        reference = stats.bernoulli(special.expit(logits))
        np.testing.assert_allclose(dist.mean(), reference.mean(), rtol=1e-6, atol=1e-30)
        # scipy's p (1 - p) loses 1 - p at logit 30 in float64; p(l) p(-l) keeps it.
        np.testing.assert_allclose(dist.variance()[:-1], reference.var()[:-1], rtol=1e-5)
        exact = special.expit(logits) * special.expit(-logits)
        np.testing.assert_allclose(dist.variance(), exact, rtol=1e-5, atol=1e-30)

    def test_discretized_logistic_mean_and_variance_match_scipy_bins(self):
        # Moments of the bin probabilities built from scipy's logistic CDF (edge bins take
        # the tails), in integer units.
        num_bins = 256
        loc, log_scale = np.array([0.5, 0.1, 1.1]), np.array([-3.0, -2.0, -1.5])
        dist = D.DiscretizedLogistic(
            jnp.asarray(loc, jnp.float32), jnp.asarray(log_scale, jnp.float32), num_bins, 0
        )
        edges = (np.arange(num_bins - 1) + 0.5) / (num_bins - 1)
        cdf = stats.logistic.cdf(edges[None, :], loc[:, None], np.exp(log_scale)[:, None])
        cdf = np.concatenate([np.zeros((3, 1)), cdf, np.ones((3, 1))], axis=1)
        probs = np.diff(cdf, axis=1)
        bins = np.arange(num_bins)
        mean = (probs * bins).sum(1)
        variance = (probs * (bins - mean[:, None]) ** 2).sum(1)
        np.testing.assert_allclose(dist.mean(), mean, rtol=1e-4)
        np.testing.assert_allclose(dist.variance(), variance, rtol=1e-3)


def _cb_density_reference(x, logit):
    """Float64 reference: the paper's C(lam) lam^x (1-lam)^(1-x) where 1 - 2 lam is
    representable, else the same density as l e^(l x) / (e^l - 1)."""
    if logit == 0.0:
        return 1.0
    if abs(logit) > 20:
        return logit * np.exp(logit * x) / (np.exp(logit) - 1.0)
    lam = special.expit(logit)
    c = 2 * np.arctanh(1 - 2 * lam) / (1 - 2 * lam)
    return c * lam**x * (1 - lam) ** (1 - x)


class ContinuousBernoulliTest(parameterized.TestCase):
    LOGITS = (-50.0, -10.0, -1.0, -1e-3, -1e-6, 0.0, 1e-6, 1e-3, 0.05, 1.0, 10.0, 50.0)

    def test_matches_closed_form_density(self):
        xs = np.linspace(0, 1, 11)
        for logit in self.LOGITS:
            dist = D.ContinuousBernoulli(jnp.full(xs.shape, logit, jnp.float32), event_ndims=0)
            expected = np.log([_cb_density_reference(x, logit) for x in xs])
            np.testing.assert_allclose(
                dist.log_prob(jnp.asarray(xs, jnp.float32)),
                expected,
                rtol=1e-5,
                atol=2e-5,
                err_msg=f"logit={logit}",
            )

    def test_normalizer_matches_the_paper(self):
        for logit in self.LOGITS:
            lam = special.expit(logit)
            if logit == 0.0:
                expected = np.log(2.0)
            elif abs(logit) > 20:  # 1 - 2 lam rounds to +-1: use C = l / tanh(l / 2)
                expected = np.log(logit / np.tanh(logit / 2))
            else:
                expected = np.log(2 * np.arctanh(1 - 2 * lam) / (1 - 2 * lam))
            np.testing.assert_allclose(
                D.continuous_bernoulli_log_normalizer(jnp.float32(logit)), expected,
                rtol=1e-5, atol=1e-5, err_msg=f"logit={logit}",
            )  # fmt: skip

    def test_density_integrates_to_one(self):
        density = jax.jit(lambda x, logit: jnp.exp(D.ContinuousBernoulli(logit, 0).log_prob(x)))
        for logit in self.LOGITS:
            total, _ = integrate.quad(
                lambda x, logit=logit: float(density(jnp.float32(x), jnp.float32(logit))),
                0,
                1,
                limit=200,
            )
            self.assertAlmostEqual(total, 1.0, delta=2e-4, msg=f"logit={logit}")

    def test_mean_and_variance_match_quadrature(self):
        for logit in self.LOGITS:
            mean, _ = integrate.quad(lambda x, lg=logit: x * _cb_density_reference(x, lg), 0, 1)
            second, _ = integrate.quad(
                lambda x, lg=logit: x * x * _cb_density_reference(x, lg), 0, 1
            )
            dist = D.ContinuousBernoulli(jnp.float32(logit), 0)
            np.testing.assert_allclose(dist.mean(), mean, atol=2e-6, err_msg=f"logit={logit}")
            np.testing.assert_allclose(
                dist.variance(), second - mean**2, rtol=1e-4, atol=1e-6, err_msg=f"logit={logit}"
            )

    def test_samples_follow_the_distribution(self):
        for logit in (-5.0, 0.0, 1e-4, 2.0):
            dist = D.ContinuousBernoulli(jnp.float32(logit), 0)
            samples = np.asarray(dist.sample(jax.random.key(0), (20000,)), np.float64)
            cdf = lambda v, lg=logit: v if abs(lg) < 1e-8 else np.expm1(lg * v) / np.expm1(lg)
            result = stats.kstest(samples, cdf)
            self.assertGreater(result.pvalue, 1e-3, msg=f"logit={logit}")

    def test_gradient_finite_at_zero(self):
        grad = jax.grad(lambda logit: D.ContinuousBernoulli(logit, 0).log_prob(0.3))(
            jnp.float32(0.0)
        )
        # d/dl [x l - A(l)] = x - mean(l) = 0.3 - 0.5 at l = 0.
        np.testing.assert_allclose(grad, -0.2, atol=1e-6)


class KLTest(parameterized.TestCase):
    def _assert_within_standard_errors(self, analytic, samples, n_se=4.0):
        samples = np.asarray(samples, np.float64)
        mean = samples.mean(0)
        se = samples.std(0) / np.sqrt(samples.shape[0])
        np.testing.assert_array_less(np.abs(mean - np.asarray(analytic)), n_se * se + 1e-6)

    def test_gaussian_kl_matches_monte_carlo(self):
        r = _rng(4)
        p = D.DiagGaussian(
            jnp.asarray(r.normal(size=(3, 4)), jnp.float32),
            jnp.asarray(r.normal(size=(3, 4)) * 0.5, jnp.float32),
        )
        q = D.DiagGaussian(
            jnp.asarray(r.normal(size=(3, 4)), jnp.float32),
            jnp.asarray(r.normal(size=(3, 4)) * 0.5, jnp.float32),
        )
        z = p.sample(jax.random.key(1), (200000,))
        self._assert_within_standard_errors(p.kl(q), p.log_prob(z) - q.log_prob(z))

    def test_kl_to_standard_normal_closed_form(self):
        loc, log_scale = jnp.array([0.3, -1.0]), jnp.array([0.2, -0.7])
        kl = D.DiagGaussian(loc, log_scale).kl(D.standard_normal((2,)))
        s2 = np.exp(2 * np.asarray(log_scale))
        expected = 0.5 * np.sum(s2 + np.asarray(loc) ** 2 - 1 - np.log(s2))
        np.testing.assert_allclose(kl, expected, rtol=1e-6)

    def test_bernoulli_kl_matches_enumeration(self):
        a, b = jnp.array([0.5, -2.0, 3.0]), jnp.array([-1.0, 0.0, 2.5])
        pa, pb = special.expit(np.asarray(a, np.float64)), special.expit(np.asarray(b, np.float64))
        expected = pa * np.log(pa / pb) + (1 - pa) * np.log((1 - pa) / (1 - pb))
        np.testing.assert_allclose(D.Bernoulli(a, 0).kl(D.Bernoulli(b, 0)), expected, rtol=1e-4)

    def test_continuous_bernoulli_kl_matches_quadrature(self):
        for a, b in ((0.5, -2.0), (0.0, 3.0), (-7.0, 1e-4)):

            def integrand(x, a=a, b=b):
                p, q = _cb_density_reference(x, a), _cb_density_reference(x, b)
                return p * np.log(p / q)

            expected, _ = integrate.quad(integrand, 0, 1)
            kl = D.ContinuousBernoulli(jnp.float32(a), 0).kl(
                D.ContinuousBernoulli(jnp.float32(b), 0)
            )
            np.testing.assert_allclose(kl, expected, rtol=1e-4, atol=1e-6)


class SamplingTest(parameterized.TestCase):
    def test_reparameterized_samples_have_right_moments(self):
        loc, log_scale = jnp.array([1.5, -2.0, 0.0]), jnp.array([0.0, -1.0, 1.0])
        dist = D.DiagGaussian(loc, log_scale)
        n = 100000
        z = np.asarray(dist.sample(jax.random.key(0), (n,)), np.float64)
        scale = np.exp(np.asarray(log_scale))
        np.testing.assert_array_less(np.abs(z.mean(0) - loc), 4 * scale / np.sqrt(n))
        # The sample variance has standard error ~ sigma^2 sqrt(2 / n).
        np.testing.assert_array_less(np.abs(z.var(0) - scale**2), 4 * scale**2 * np.sqrt(2 / n))

    def test_sample_gradient_is_reparameterized(self):
        # d z / d loc = 1 and d z / d log_scale = scale * eps = z - loc.
        key = jax.random.key(3)
        z = D.DiagGaussian(jnp.float32(0.5), jnp.float32(0.2), 0).sample(key)
        g_loc, g_log_scale = jax.grad(
            lambda m, s: D.DiagGaussian(m, s, 0).sample(key), argnums=(0, 1)
        )(jnp.float32(0.5), jnp.float32(0.2))
        np.testing.assert_allclose(g_loc, 1.0)
        np.testing.assert_allclose(g_log_scale, z - 0.5, rtol=1e-6)

    @parameterized.named_parameters(
        ("gaussian", lambda: D.DiagGaussian(jnp.zeros((4, 3)), jnp.zeros((4, 3)))),
        ("bernoulli", lambda: D.Bernoulli(jnp.zeros((4, 8, 8, 1)))),
        ("continuous_bernoulli", lambda: D.ContinuousBernoulli(jnp.zeros((4, 8, 8, 1)))),
        (
            "discretized_logistic",
            lambda: D.DiscretizedLogistic(
                jnp.full((4, 8, 8, 1), 0.5), jnp.full((4, 8, 8, 1), -2.0)
            ),
        ),
    )
    def test_same_key_same_sample_different_key_different(self, make):
        dist = make()
        a = dist.sample(jax.random.key(7), (2,))
        b = dist.sample(jax.random.key(7), (2,))
        c = dist.sample(jax.random.key(8), (2,))
        np.testing.assert_array_equal(a, b)
        self.assertFalse(np.array_equal(a, c))
        self.assertEqual(a.shape, (2, *dist.shape))

    def test_discretized_logistic_sample_frequencies(self):
        dist = D.DiscretizedLogistic(jnp.float32(0.02), jnp.float32(-4.0), 256, 0)
        samples = np.asarray(dist.sample(jax.random.key(0), (50000,)))
        probs = np.exp(np.asarray(dist.bin_log_probs(), np.float64))
        counts = np.bincount(samples, minlength=256)
        used = probs * len(samples) > 5
        chi2 = stats.chisquare(counts[used], probs[used] / probs[used].sum() * counts[used].sum())
        self.assertGreater(chi2.pvalue, 1e-3)
        np.testing.assert_allclose(samples.mean(), dist.mean(), rtol=0.02)


class PytreeTest(parameterized.TestCase):
    def test_distributions_pass_through_jit_and_vmap(self):
        make = jax.jit(lambda loc: D.Bernoulli(loc))
        self.assertIsInstance(make(jnp.zeros((2, 4, 4, 1))), D.Bernoulli)
        log_probs = jax.vmap(lambda logits, x: D.Bernoulli(logits).log_prob(x))(
            jnp.zeros((3, 4, 4, 1)), jnp.ones((3, 4, 4, 1))
        )
        np.testing.assert_allclose(log_probs, 16 * np.log(0.5), rtol=1e-6)

    def test_immutable(self):
        dist = D.DiagGaussian(jnp.zeros(2), jnp.zeros(2))
        with pytest.raises(dataclasses.FrozenInstanceError):
            dist.loc = jnp.ones(2)
        np.testing.assert_array_equal(dist.loc, jnp.zeros(2))
