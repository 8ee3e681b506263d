"""``vae_jax/model/bounds.py`` through the VAE: the only random draw of the ELBO and the
IWAE bound is the latent one, and the bounds against each other (IWAE with one sample is
the Monte Carlo ELBO, the mean bound grows with K, chunking changes nothing, the KL
estimators agree in mean, the terms add up)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized

import vae_jax
from tests.helpers.tiny_vae import (
    RANDOM_DRAW_PRIMITIVES,
    _binary_images,
    _tiny_vae_and_params,
    count_primitives,
)


class RandomnessSitesTest(parameterized.TestCase):
    """The only random draws inside the objectives are latent draws."""

    def setUp(self):
        super().setUp()
        self.vae, self.params = _tiny_vae_and_params()
        self.x = _binary_images(jax.random.key(1), 3)

    @parameterized.product(num_samples=(1, 5), kl=("analytic", "mc"))
    def test_elbo_has_one_latent_draw_site(self, num_samples, kl):
        fn = functools.partial(self.vae.elbo, num_samples=num_samples, kl=kl)
        jaxpr = jax.make_jaxpr(fn)(self.params, jax.random.key(0), self.x)
        self.assertEqual(count_primitives(jaxpr.jaxpr, RANDOM_DRAW_PRIMITIVES), 1)
        # ... and that draw is the latent noise: num_samples x batch x latent_dim numbers
        # (drawn flat and reshaped, vae_jax.draws).
        sizes = [
            eqn.outvars[0].aval.size
            for eqn in _all_eqns(jaxpr.jaxpr)
            if eqn.primitive.name == "random_bits"
        ]
        self.assertEqual(sizes, [num_samples * 3 * self.vae.latent_dim])

    @parameterized.named_parameters(("unchunked", None), ("chunked", 3))
    def test_iwae_bound_has_one_latent_draw_site(self, chunk_size):
        fn = functools.partial(self.vae.iwae_bound, num_samples=10, chunk_size=chunk_size)
        jaxpr = jax.make_jaxpr(fn)(self.params, jax.random.key(0), self.x)
        self.assertEqual(count_primitives(jaxpr.jaxpr, RANDOM_DRAW_PRIMITIVES), 1)

    def test_generate_draws_x_only_when_asked(self):
        for observation, sites in (("mean", 1), ("sample", 2)):
            fn = functools.partial(self.vae.generate, num=4, observation=observation)
            jaxpr = jax.make_jaxpr(fn)(self.params, jax.random.key(0))
            self.assertEqual(count_primitives(jaxpr.jaxpr, RANDOM_DRAW_PRIMITIVES), sites)


def _all_eqns(jaxpr):
    for eqn in jaxpr.eqns:
        yield eqn
        for sub in jax.core.jaxprs_in_params(eqn.params):
            yield from _all_eqns(sub)


class BoundsTest(parameterized.TestCase):
    def setUp(self):
        super().setUp()
        self.vae, self.params = _tiny_vae_and_params()
        self.x = _binary_images(jax.random.key(1), 32)

    @pytest.mark.slow
    def test_iwae_with_one_sample_is_the_mc_elbo(self):
        key = jax.random.key(3)
        bound = self.vae.iwae_bound(self.params, key, self.x, num_samples=1)
        elbo = self.vae.elbo(self.params, key, self.x, num_samples=1, kl="mc").elbo
        np.testing.assert_allclose(bound, elbo, rtol=1e-6)

    @pytest.mark.slow
    def test_mean_bound_does_not_decrease_with_k(self):
        key = jax.random.key(4)

        @jax.jit  # the three bounds in one program: one compilation
        def mean_bounds(params, key, x):
            return [
                jnp.mean(self.vae.iwae_bound(params, key, x, num_samples=k)) for k in (1, 10, 100)
            ]

        means = [float(m) for m in mean_bounds(self.params, key, self.x)]
        self.assertLessEqual(means[0], means[1])
        self.assertLessEqual(means[1], means[2])

    @pytest.mark.slow
    def test_chunked_k5000_equals_unchunked(self):
        key = jax.random.key(5)
        x = self.x[:4]
        chunks = (250, 333)  # 333 leaves a padded, masked last chunk

        @jax.jit  # the three bounds in one program: one compilation
        def bounds(params, key, x):
            unchunked = self.vae.iwae_bound(params, key, x, num_samples=5000)
            return unchunked, [
                self.vae.iwae_bound(params, key, x, num_samples=5000, chunk_size=chunk)
                for chunk in chunks
            ]

        unchunked, all_chunked = bounds(self.params, key, x)
        for chunked in all_chunked:
            np.testing.assert_allclose(chunked, unchunked, rtol=1e-6)

    @pytest.mark.slow
    def test_analytic_and_mc_kl_agree_in_mean(self):
        keys = jax.random.split(jax.random.key(6), 2000)

        @jax.jit  # both in one program: one compilation
        def analytic_and_mc(params, keys, x):
            q = self.vae.encode(params, x)
            analytic = q.kl(self.vae.prior(params))
            return analytic, jax.vmap(lambda k: self.vae.elbo(params, k, x, kl="mc").kl)(keys)

        analytic, mc = analytic_and_mc(self.params, keys, self.x)
        se = mc.std(0) / np.sqrt(mc.shape[0])
        np.testing.assert_array_less(np.abs(mc.mean(0) - analytic), 4 * se + 1e-6)

    @pytest.mark.slow
    def test_elbo_terms_add_up_and_beta_scales_kl(self):
        out = self.vae.elbo(self.params, jax.random.key(7), self.x, beta=0.5)
        np.testing.assert_allclose(out.elbo, out.log_likelihood - 0.5 * out.kl, rtol=1e-6)
        np.testing.assert_allclose(out.kl, out.kl_per_dim.sum(-1), rtol=1e-6)

    def test_reconstruction_term_is_the_closed_form_log_likelihood(self):
        # With one draw, log_likelihood is exactly log p(x|z) at z = reparameterize(key).
        key = jax.random.key(8)
        z = vae_jax.reparameterize(key, self.vae.encode(self.params, self.x), 1)[0]
        expected = self.vae.decode(self.params, z).log_prob(self.x)
        out = self.vae.elbo(self.params, key, self.x)
        np.testing.assert_allclose(out.log_likelihood, expected, rtol=1e-6)
