"""The VAE's pure functions: encoder and decoder are deterministic, they compose with jit,
vmap and grad without reusing a key, and every architecture gives its shapes and heads
(the bounds and where randomness enters them: test_bounds.py)."""

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized

import vae_jax
from experiments.configs import fashion_conv
from tests.helpers.tiny_vae import (
    RANDOM_DRAW_PRIMITIVES,
    _binary_images,
    _tiny_vae_and_params,
    count_primitives,
)
from vae_jax.core import distributions, networks


class DeterminismTest(parameterized.TestCase):
    def setUp(self):
        super().setUp()
        self.vae, self.params = _tiny_vae_and_params()
        self.x = _binary_images(jax.random.key(1), 6)

    def test_encode_and_decode_are_deterministic(self):
        q1, q2 = self.vae.encode(self.params, self.x), self.vae.encode(self.params, self.x)
        np.testing.assert_array_equal(q1.loc, q2.loc)
        np.testing.assert_array_equal(q1.log_scale, q2.log_scale)
        z = q1.loc
        p1, p2 = self.vae.decode(self.params, z), self.vae.decode(self.params, z)
        np.testing.assert_array_equal(p1.logits, p2.logits)

    def test_networks_draw_no_random_bits(self):
        encode_jaxpr = jax.make_jaxpr(self.vae.encode)(self.params, self.x)
        decode_jaxpr = jax.make_jaxpr(self.vae.decode)(self.params, jnp.zeros((6, 4)))
        self.assertEqual(count_primitives(encode_jaxpr.jaxpr, RANDOM_DRAW_PRIMITIVES), 0)
        self.assertEqual(count_primitives(decode_jaxpr.jaxpr, RANDOM_DRAW_PRIMITIVES), 0)

    def test_decoder_sample_varies_with_key_mean_does_not(self):
        @jax.jit
        def sample_and_mean(key):
            p = self.vae.decode(self.params, jnp.zeros((6, 4)))
            return p.sample(key), p.mean()

        (a, mean_a), (b, mean_b) = (
            sample_and_mean(jax.random.key(1)),
            sample_and_mean(jax.random.key(2)),
        )
        self.assertFalse(np.array_equal(a, b))
        np.testing.assert_array_equal(mean_a, mean_b)

    def test_generate_same_z_for_mean_and_sample(self):
        key = jax.random.key(5)
        generate = jax.jit(self.vae.generate, static_argnames=("num", "observation"))
        as_mean = generate(self.params, key, 4, observation="mean")
        as_sample = generate(self.params, key, 4, observation="sample")
        np.testing.assert_array_equal(as_mean.z, as_sample.z)
        self.assertEqual((as_mean.observation, as_sample.observation), ("mean", "sample"))
        np.testing.assert_array_equal(np.unique(as_sample.x), [0.0, 1.0])
        self.assertGreater(np.unique(as_mean.x).size, 2)


class TransformsTest(parameterized.TestCase):
    @pytest.mark.slow
    def test_jit_vmap_grad(self):
        vae, params = _tiny_vae_and_params()
        x = _binary_images(jax.random.key(1), 4)
        keys = jax.random.split(jax.random.key(2), 4)

        @jax.jit  # the vmapped ELBO and both gradients in one program: one compilation
        def vmapped_and_grads(params, keys, x):
            per_example = jax.vmap(lambda k, xi: vae.elbo(params, k, xi).elbo)(keys, x)
            grads = jax.grad(lambda p: -vae.elbo(p, keys[0], x).elbo.mean())(params)
            iwae_grads = jax.grad(lambda p: -vae.iwae_bound(p, keys[1], x, 8, 3).mean())(params)
            return per_example, grads, iwae_grads

        per_example, grads, iwae_grads = vmapped_and_grads(params, keys, x)
        # vmap over single examples with per-example keys equals a loop over examples.
        single = jax.jit(lambda k, xi: vae.elbo(params, k, xi).elbo)
        looped = np.stack([single(keys[i], x[i]) for i in range(4)])
        np.testing.assert_allclose(per_example, looped, rtol=1e-5)
        self.assertEqual(per_example.shape, (4,))
        self.assertTrue(all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads)))
        self.assertGreater(sum(float(jnp.abs(g).sum()) for g in jax.tree.leaves(grads)), 0)
        self.assertTrue(all(np.all(np.isfinite(g)) for g in jax.tree.leaves(iwae_grads)))

    @pytest.mark.slow
    def test_no_key_reuse(self):
        vae, _ = _tiny_vae_and_params()
        x = _binary_images(jax.random.key(1), 4)
        with jax.debug_key_reuse(True):
            root = jax.random.key(0)
            init_key, elbo_key, iwae_key, gen_key, rep_key = jax.random.split(root, 5)
            params = jax.jit(vae.init)(init_key)
            elbo = jax.jit(vae.elbo, static_argnames=("num_samples", "kl"))
            elbo(params, elbo_key, x, 3, "mc")
            elbo(params, elbo_key, x, num_samples=2)  # evaluating twice is not a reuse
            jax.jit(vae.iwae_bound, static_argnums=(3, 4))(params, iwae_key, x, 10, 4)
            jax.jit(vae.generate, static_argnums=(2, 3))(params, gen_key, 3, "sample")
            jax.jit(lambda k: vae.reparameterize(k, vae.encode(params, x), 4))(rep_key)


class ArchitecturesTest(parameterized.TestCase):
    @parameterized.named_parameters(
        # every head, on the MLP and 28x28x1 ...
        ("mlp_bernoulli", "mlp", (28, 28, 1), "bernoulli"),
        ("mlp_continuous_bernoulli", "mlp", (28, 28, 1), "continuous_bernoulli"),
        ("mlp_gaussian", "mlp", (28, 28, 1), "gaussian"),
        ("mlp_discretized_logistic", "mlp", (28, 28, 1), "discretized_logistic"),
        # ... and both architectures on both image sizes.
        ("mlp_rgb", "mlp", (32, 32, 3), "gaussian"),
        ("conv_gray", "conv", (28, 28, 1), "bernoulli"),
        ("conv_rgb", "conv", (32, 32, 3), "discretized_logistic"),
    )
    @pytest.mark.slow
    def test_shapes_and_heads(self, architecture, image_shape, likelihood):
        config = fashion_conv.get_config()
        config.model.architecture = architecture
        config.model.likelihood = likelihood
        config.model.gaussian_scale = "predicted"
        config.model.hidden_sizes = (16,)
        config.model.conv_channels = (4, 8)
        vae = vae_jax.vae_from_config(config, image_shape=image_shape)
        x = np.full((2, *image_shape), 0.5, np.float32)
        if likelihood == "discretized_logistic":
            x = np.full((2, *image_shape), 128, np.int32)

        @jax.jit  # init and the forward pass in one program: one compilation
        def run(key, x):
            params = vae.init(key)
            q = vae.encode(params, x)
            p = vae.decode(params, q.loc)
            return q, p, p.mean(), p.log_prob(x), vae.elbo(params, jax.random.key(1), x).elbo

        q, p, mean, log_prob, elbo = run(jax.random.key(0), x)
        self.assertEqual(q.loc.shape, (2, config.model.latent_dim))
        expected_type = {
            "bernoulli": distributions.Bernoulli,
            "continuous_bernoulli": distributions.ContinuousBernoulli,
            "gaussian": distributions.Gaussian,
            "discretized_logistic": distributions.DiscretizedLogistic,
        }[likelihood]
        self.assertIsInstance(p, expected_type)
        self.assertEqual(mean.shape, (2, *image_shape))
        self.assertEqual(log_prob.shape, (2,))
        self.assertTrue(np.all(np.isfinite(elbo)))

    @pytest.mark.slow
    def test_conv_kernels_are_flax_lecun_normal_bit_for_bit(self):
        """The conv layers draw their kernels as matrices (faster to compile); the values
        must stay Flax's default initializer's, or every conv run's numbers change."""
        shapes = [(3, 3, 1, 4), (3, 3, 4, 8), (3, 3, 8, 3)]  # first, inner and last layers
        flax_default = flax.linen.initializers.lecun_normal()

        @jax.jit
        def both(key):
            keys = jax.random.split(key, len(shapes))
            ours = [networks.conv_kernel_init(k, s) for k, s in zip(keys, shapes, strict=True)]
            return ours, [flax_default(k, s) for k, s in zip(keys, shapes, strict=True)]

        ours, expected = both(jax.random.key(3))
        for shape, a, b in zip(shapes, ours, expected, strict=True):
            self.assertEqual(a.shape, shape)
            np.testing.assert_array_equal(a, b)
        # the fan-in is the receptive field times the input channels: std 1/sqrt(9 * 4)
        self.assertAlmostEqual(float(np.std(ours[1])), 1 / 6, delta=0.03)

    @parameterized.parameters("fixed", "shared", "per_pixel", "predicted")
    @pytest.mark.slow
    def test_gaussian_scale_options(self, gaussian_scale):
        config = fashion_conv.get_config()
        config.model.likelihood = "gaussian"
        config.model.gaussian_scale = gaussian_scale
        config.model.architecture = "mlp"
        vae = vae_jax.vae_from_config(config, image_shape=(28, 28, 1))
        params = vae.init(jax.random.key(0))
        p = jax.jit(vae.decode)(params, jnp.zeros((2, config.model.latent_dim)))
        # Every option starts at observation_scale (predicted: up to the network's output).
        if gaussian_scale != "predicted":
            np.testing.assert_allclose(p.scale, config.model.observation_scale, rtol=1e-4)
        has_learned_scale = "raw_log_scale" in params["decoder"].get("head", {})
        self.assertEqual(has_learned_scale, gaussian_scale in ("shared", "per_pixel"))
