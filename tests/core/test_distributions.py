"""Distributions against independent references: scipy, closed forms, quadrature."""

import dataclasses
import math
from fractions import Fraction

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized
from scipy import integrate, special, stats

from vae_jax.core import distributions as D

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

    def test_softplus_and_its_gradient_match_float64_everywhere_also_at_zero(self):
        """softplus(x) = log(1 + e^x) with gradient sigmoid(x): 0.5 at x = 0 exactly (the
        form max(x, 0) + log1p(exp(-|x|)) gave 0 there), right at |x| = 1000 too."""
        xs = np.array([0.0, -0.0, 1e-30, -1e-30, 1e-6, -1e-6, 0.5, -0.5, 3.0, -3.0,
                       20.0, -20.0, 100.0, -100.0, 1000.0, -1000.0], np.float32)  # fmt: skip
        x64 = xs.astype(np.float64)
        values = np.asarray(jax.vmap(D.softplus)(jnp.asarray(xs)), np.float64)
        np.testing.assert_allclose(values, np.logaddexp(0.0, x64), rtol=2e-7, atol=1e-37)
        for grad in (jax.vmap(jax.grad(D.softplus)), jax.jit(jax.vmap(jax.grad(D.softplus)))):
            gradients = np.asarray(grad(jnp.asarray(xs)), np.float64)
            np.testing.assert_allclose(gradients, special.expit(x64), rtol=2e-7, atol=1e-37)
        self.assertEqual(float(jax.grad(D.softplus)(jnp.float32(0.0))), 0.5)
        self.assertEqual(float(jax.grad(D.log_sigmoid)(jnp.float32(0.0))), 0.5)

    @parameterized.named_parameters(("x_is_1", 1.0), ("x_is_0", 0.0))
    def test_bernoulli_gradient_at_logit_zero_is_x_minus_one_half(self, x):
        """d/dl log Bernoulli(x; l) = x - sigmoid(l): +-0.5 at l = 0 (was 1.0 and 0.0)."""
        grad = jax.grad(lambda logit: D.Bernoulli(logit, 0).log_prob(jnp.float32(x)))
        self.assertEqual(float(grad(jnp.float32(0.0))), x - 0.5)

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
        np.testing.assert_allclose(total, 0.0, atol=3e-7)
        self.assertTrue(np.all(np.isfinite(dist.bin_log_probs())))

    def test_discretized_logistic_masses_sum_to_one_within_float32_rounding(self):
        """The 256 bin masses, summed in float64, are 1 within float32 rounding at every
        location and scale (measured: 1.2e-7 at most); with the bin width taken as the
        difference of two rounded edges they summed to 1 + 1.8e-5."""
        locs, log_scales = np.meshgrid(
            np.array([-0.3, 0.0, 0.1, 0.37, 0.5, 0.9, 1.0, 1.2], np.float32),
            np.array([-7.0, -5.0, -4.0, -3.0, -2.0, -1.0, 0.0, 1.0], np.float32),
        )
        dist = D.DiscretizedLogistic(jnp.asarray(locs), jnp.asarray(log_scales), 256, 0)
        masses = np.exp(np.asarray(dist.bin_log_probs(), np.float64))
        np.testing.assert_allclose(masses.sum(-1), 1.0, rtol=0, atol=3e-7)

    def test_discretized_logistic_bin_log_probs_match_float64(self):
        """Every bin's log-probability against the same formula in float64 numpy, at the
        float32 parameters: within 5e-6 nats where the mass exceeds 1e-6 (measured 2.9e-6,
        the rounding of the location in bin units; the former intensity-unit edges: 2e-5 to
        7e-5), within 1e-6 relative in the tails. log_scale >= -4: below it the float32
        rounding of ``loc / scale`` (one ulp of ~1000) dominates any formula."""
        num_bins = 256
        locs, log_scales = np.meshgrid(
            np.array([-0.3, 0.0, 0.1, 0.37, 0.5, 0.9, 1.0, 1.2], np.float32),
            np.array([-4.0, -3.0, -2.0, -1.0, 0.0, 1.0], np.float32),
        )
        dist = D.DiscretizedLogistic(jnp.asarray(locs), jnp.asarray(log_scales), num_bins, 0)
        got = np.asarray(dist.bin_log_probs(), np.float64)
        # log(F(k + 1/2) - F(k - 1/2)) of the logistic CDF F, edges in intensity units, the
        # edge bins taking the tails; the difference of sigmoids without cancellation.
        k = np.arange(num_bins, dtype=np.float64)
        loc = locs.astype(np.float64)[..., None]
        scale = np.exp(log_scales.astype(np.float64))[..., None]
        upper = ((k + 0.5) / (num_bins - 1) - loc) / scale
        lower = ((k - 0.5) / (num_bins - 1) - loc) / scale
        width = 1.0 / ((num_bins - 1) * scale)
        want = special.log_expit(upper) + special.log_expit(-lower) + np.log(-np.expm1(-width))
        want[..., 0] = special.log_expit(upper[..., 0])
        want[..., -1] = special.log_expit(-lower[..., -1])
        self.assertTrue(np.all(np.isfinite(got)))
        likely = want > np.log(1e-6)
        np.testing.assert_allclose(got[likely], want[likely], rtol=0, atol=5e-6)
        tails = ~likely
        np.testing.assert_array_less(np.abs(got - want)[tails], 1e-6 * np.abs(want)[tails])

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


# Float64 reference of the continuous Bernoulli's log-partition A(l) = l / 2 + E(|l|),
# E(a) = log(sinh(a / 2) / (a / 2)), and its derivatives: mean = A', variance = A'' and
# its derivative. Below a = 0.5 the Taylor series from the exact Bernoulli numbers B_2n
# (E = sum_n B_2n / (2n (2n)!) a^2n; 8 terms: the ninth is below 1e-17 of E there), above
# it the closed forms in e^-a (float64 error there ~1e-14).
_CB_REFERENCE_SERIES_BELOW = 0.5
_CB_REFERENCE_COEFFICIENTS = [
    float(Fraction(*b) / (2 * n * math.factorial(2 * n)))
    for n, b in enumerate(
        [(1, 6), (-1, 30), (1, 42), (-1, 30), (5, 66), (-691, 2730), (7, 6), (-3617, 510)],
        start=1,
    )
]


def _cb_reference_even(a, derivative: int, branch: str = "auto") -> np.ndarray:
    """The ``derivative``-th derivative of E at ``a >= 0``, in float64."""
    a = np.asarray(a, np.float64)
    in_range = np.where(a < 1.0, a, 0.0) if branch == "auto" else a
    series = np.zeros_like(a)
    for n, c in enumerate(_CB_REFERENCE_COEFFICIENTS, start=1):
        power = 2 * n
        if power >= derivative:
            factor = math.prod(range(power - derivative + 1, power + 1))  # d^k a^p / da^k
            series += c * factor * in_range ** (power - derivative)
    s = np.where(a > 0, a, 1.0)
    t, one_minus_t = np.exp(-s), -np.expm1(-s)  # e^-a and 1 - e^-a
    closed = [
        s / 2 + np.log(one_minus_t) - np.log(s),
        0.5 + t / one_minus_t - 1 / s,
        1 / s**2 - t / one_minus_t**2,
        -2 / s**3 - t / one_minus_t**2 + 2 * t / one_minus_t**3,
    ][derivative]
    if branch == "series":
        return series
    if branch == "closed":
        return closed
    return np.where(a < _CB_REFERENCE_SERIES_BELOW, series, closed)


def _cb_reference(logits) -> dict:
    """(value, derivative in l) of A, log C, the mean and the variance, in float64."""
    logits = np.asarray(logits, np.float64)
    a, sign = np.abs(logits), np.sign(logits)
    safe = np.where(a > 0, a, 1.0)
    # A = l / 2 + E(a) = max(l, 0) + log(1 - e^-a) - log(a) above the series' range.
    log_partition = np.where(
        a < _CB_REFERENCE_SERIES_BELOW,
        logits / 2 + _cb_reference_even(a, 0, "series"),
        np.maximum(logits, 0) + np.log(-np.expm1(-safe)) - np.log(safe),
    )
    # The mean 1/2 +- E'(a), far from 0 as 1/a - e^-a / (1 - e^-a) (or 1 minus it),
    # without the cancellation of 1/2 against E'.
    mean_of_negative = np.where(
        a < _CB_REFERENCE_SERIES_BELOW,
        0.5 - _cb_reference_even(a, 1, "series"),
        1 / safe - np.exp(-safe) / -np.expm1(-safe),
    )
    mean = np.where(logits < 0, mean_of_negative, 1 - mean_of_negative)
    variance = _cb_reference_even(a, 2)
    return {
        "log_partition": (log_partition, mean),
        "log_normalizer": (np.logaddexp(0, logits) - log_partition, special.expit(logits) - mean),
        "mean": (mean, variance),
        "variance": (variance, sign * _cb_reference_even(a, 3)),
    }


# Logits at and around every branch point (the series' ends, old and new: 0.01, 0.1, 1, 2),
# and where e^l overflows float32 (88.7) or sinh(l / 2) does (177).
_CB_GRID_MAGNITUDES = [
    0.0, 1e-30, 1e-6, 0.005, 0.0099, 0.01, 0.0101, 0.05, 0.0999, 0.1, 0.1001, 0.5,
    0.999, 1.0, 1.001, 1.999, 2.0, 2.001, 5.0, 20.0, 88.0, 89.0, 90.0, 100.0, 199.0, 200.0,
    201.0, 500.0, 1000.0,
]  # fmt: skip
_CB_GRID = np.array(
    [-m for m in reversed(_CB_GRID_MAGNITUDES) if m] + _CB_GRID_MAGNITUDES, np.float32
)


# (rtol, atol) of each value and of its gradient against the float64 reference; the
# atol of the log-partition and log C grows with |l| (1 + |l| times it): they are sums
# of terms as large as |l|, each rounded to float32 (log C = softplus - A at l = 1000
# is 6.9 from 1000 - 993.1). With the series ending at |l| = 0.01 the gradient of A
# was off by 1.4e-5 just above it; with e^l and sinh the gradients of the mean and
# the variance were NaN from |l| = 89 and 200.
_CB_TOLERANCES = {
    "log_partition": ((2e-7, 1e-7), (4e-7, 1e-7)),
    "log_normalizer": ((2e-7, 1e-7), (4e-7, 1e-7)),
    "mean": ((4e-7, 1e-7), (1e-6, 1e-8)),
    "variance": ((1e-6, 1e-9), (5e-6, 1e-10)),
}
_CB_GROWS_WITH_THE_LOGIT = ("log_partition", "log_normalizer")
_CB_FUNCTIONS = {
    "log_partition": D.continuous_bernoulli_log_partition,
    "log_normalizer": D.continuous_bernoulli_log_normalizer,
    "mean": lambda logit: D.ContinuousBernoulli(logit, 0).mean(),
    "variance": lambda logit: D.ContinuousBernoulli(logit, 0).variance(),
}


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

    def test_float64_reference_branches_agree(self):
        """The reference's series and closed forms agree where it switches (a self-check)."""
        a = np.array([_CB_REFERENCE_SERIES_BELOW])
        for derivative in range(4):
            series = _cb_reference_even(a, derivative, "series")
            closed = _cb_reference_even(a, derivative, "closed")
            np.testing.assert_allclose(series, closed, rtol=1e-11, err_msg=str(derivative))

    @parameterized.named_parameters(
        ("log_partition", "log_partition"),
        ("log_normalizer", "log_normalizer"),
        ("mean", "mean"),
        ("variance", "variance"),
    )
    def test_values_and_gradients_match_float64_over_the_logit_grid(self, name):
        """Value and jax.grad at every logit of the grid, against the float64 reference."""
        function = _CB_FUNCTIONS[name]
        logits = jnp.asarray(_CB_GRID)
        values = np.asarray(jax.vmap(function)(logits), np.float64)
        gradients = np.asarray(jax.jit(jax.vmap(jax.grad(function)))(logits), np.float64)
        self.assertTrue(np.all(np.isfinite(values)), _CB_GRID[~np.isfinite(values)])
        self.assertTrue(np.all(np.isfinite(gradients)), _CB_GRID[~np.isfinite(gradients)])
        want_values, want_gradients = _cb_reference(_CB_GRID)[name]
        (value_rtol, value_atol), (gradient_rtol, gradient_atol) = _CB_TOLERANCES[name]
        if name in _CB_GROWS_WITH_THE_LOGIT:
            value_atol = value_atol * (1.0 + np.abs(_CB_GRID.astype(np.float64)))
        np.testing.assert_array_less(
            np.abs(values - want_values), value_rtol * np.abs(want_values) + value_atol
        )
        np.testing.assert_allclose(
            gradients, want_gradients, rtol=gradient_rtol, atol=gradient_atol
        )

    @pytest.mark.slow
    def test_kl_and_its_gradients_match_float64_over_the_logit_grid(self):
        """KL(p || q) = mean_p (l_p - l_q) - A(l_p) + A(l_q), with d/dl_p = var_p (l_p - l_q)
        and d/dl_q = mean_q - mean_p, for p over the grid and q at 6 logits: finite
        everywhere (the gradient was NaN from l_p = 89), within float32 rounding of terms
        as large as |l| (the KL at l = 1000 is a difference of numbers near 1000)."""
        kl = lambda p, q: D.ContinuousBernoulli(p, 0).kl(D.ContinuousBernoulli(q, 0))
        p_logits = _CB_GRID.astype(np.float64)
        reference_p = _cb_reference(p_logits)
        mean_p, variance_p = reference_p["mean"]
        for q_logit in np.array([0.0, 0.05, -3.0, 89.0, -200.0, 1000.0], np.float32):
            reference_q = _cb_reference(np.float64(q_logit))
            want = (
                mean_p * (p_logits - q_logit)
                - reference_p["log_partition"][0]
                + reference_q["log_partition"][0]
            )
            args = (jnp.asarray(_CB_GRID), jnp.float32(q_logit))
            value = np.asarray(jax.vmap(kl, (0, None))(*args), np.float64)
            grad_p, grad_q = jax.jit(jax.vmap(jax.grad(kl, (0, 1)), (0, None)))(*args)
            scale = 1.0 + np.abs(p_logits) + abs(float(q_logit))
            for got, expected, what in (
                (value, want, "kl"),
                (np.asarray(grad_p, np.float64), variance_p * (p_logits - q_logit), "d/dl_p"),
                (np.asarray(grad_q, np.float64), reference_q["mean"][0] - mean_p, "d/dl_q"),
            ):
                message = f"{what}, q logit {q_logit}"
                self.assertTrue(np.all(np.isfinite(got)), message)
                np.testing.assert_array_less(
                    np.abs(got - expected), 1e-6 * np.abs(expected) + 2e-7 * scale, message
                )

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
