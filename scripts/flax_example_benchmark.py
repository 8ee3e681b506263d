"""Our compiled epoch against the official Flax VAE example's training loop, in one process.

Imported by scripts/benchmark.py (``--sections=flax_example``), which runs it and adds the
breakdown of our step.

The example (google/flax ``examples/vae``, ``models.py`` and ``train.py``), written here
from its description: an encoder Dense(500) -> relu -> two Dense(latents) heads (mean and
log-variance), a decoder Dense(500) -> relu -> Dense(784) giving Bernoulli logits, the loss
(cross-entropy from the logits plus the analytic KL, each a batch mean), ``optax.adam``, a
``flax.training.train_state.TrainState`` and one ``train_step`` jitted with ``jax.jit``,
called from a Python loop with a key split from the last one on the host. As in the
comparison of issue 32, its batches are dynamically binarized 8-bit images: numpy draws
each batch's bits on the host while JAX still runs the previous step (dispatch is
asynchronous; nothing in the loop waits for the device). ``hidden_sizes`` other than
``(500,)`` put the same loop around another width (the decoder mirrors the encoder), to
compare at our default model too. With ``compute_dtype="bfloat16"`` every Dense computes
in bfloat16 (``nn.Dense(dtype=...)``, Flax's own mixed precision; parameters and Adam's
moments stay float32) and the loss reads float32 logits.

Both sides run the same number of rounds in turn (ours, the example's, ours, ...) after
one warm-up round each, so that drifts in the machine's load reach both; the ratio is the
median over rounds of ours / the example's examples/s measured next to each other.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import linen as nn
from flax.training import train_state

PIXELS = 784  # 28 x 28, flattened as the example reads its images


class Encoder(nn.Module):
    hidden_sizes: tuple[int, ...]
    latents: int
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        for i, size in enumerate(self.hidden_sizes):
            x = nn.relu(nn.Dense(size, dtype=self.dtype, name=f"fc{i + 1}")(x))
        mean_x = nn.Dense(self.latents, dtype=self.dtype, name="fc_mean")(x)
        logvar_x = nn.Dense(self.latents, dtype=self.dtype, name="fc_logvar")(x)
        return mean_x, logvar_x


class Decoder(nn.Module):
    hidden_sizes: tuple[int, ...]  # the encoder's; the decoder runs them in reverse
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, z):
        for i, size in enumerate(reversed(self.hidden_sizes)):
            z = nn.relu(nn.Dense(size, dtype=self.dtype, name=f"fc{i + 1}")(z))
        return nn.Dense(PIXELS, dtype=self.dtype, name="fc_out")(z)


def reparameterize(rng, mean, logvar):
    std = jnp.exp(0.5 * logvar)
    eps = jax.random.normal(rng, logvar.shape)
    return mean + eps * std


class VAE(nn.Module):
    hidden_sizes: tuple[int, ...] = (500,)
    latents: int = 20
    dtype: jnp.dtype = jnp.float32

    def setup(self):
        self.encoder = Encoder(self.hidden_sizes, self.latents, self.dtype)
        self.decoder = Decoder(self.hidden_sizes, self.dtype)

    def __call__(self, x, z_rng):
        mean, logvar = self.encoder(x)
        mean, logvar = mean.astype(jnp.float32), logvar.astype(jnp.float32)
        z = reparameterize(z_rng, mean, logvar)
        recon_x = self.decoder(z).astype(jnp.float32)
        return recon_x, mean, logvar


@jax.vmap
def kl_divergence(mean, logvar):
    return -0.5 * jnp.sum(1 + logvar - jnp.square(mean) - jnp.exp(logvar))


@jax.vmap
def binary_cross_entropy_with_logits(logits, labels):
    logits = nn.log_sigmoid(logits)
    return -jnp.sum(labels * logits + (1.0 - labels) * jnp.log(-jnp.expm1(logits)))


def make_train_step(model: VAE):
    """The example's ``train_step(state, batch, z_rng) -> state``, jitted (no metrics: the
    example computes them at evaluation only)."""

    @jax.jit
    def train_step(state, batch, z_rng):
        def loss_fn(params):
            recon_x, mean, logvar = model.apply({"params": params}, batch, z_rng)
            bce_loss = binary_cross_entropy_with_logits(recon_x, batch).mean()
            kld_loss = kl_divergence(mean, logvar).mean()
            return bce_loss + kld_loss

        grads = jax.grad(loss_fn)(state.params)
        return state.apply_gradients(grads=grads)

    return train_step


def example_epoch(
    images: np.ndarray,
    *,
    hidden_sizes: tuple[int, ...],
    latents: int,
    compute_dtype: str,
    batch_size: int,
    learning_rate: float,
    seed: int = 0,
) -> tuple[Callable[[], train_state.TrainState], int]:
    """``(run, examples)``: ``run()`` trains one epoch over ``images`` (uint8, ``(N, 784)``,
    on the host) the example's way and returns the state; every call continues from the
    last. ``examples`` per epoch: the example drops the last partial batch."""
    model = VAE(tuple(hidden_sizes), int(latents), jnp.dtype(compute_dtype))
    rng = jax.random.key(seed)
    rng, init_key, z_key = jax.random.split(rng, 3)
    params = model.init(init_key, jnp.ones((batch_size, PIXELS), jnp.float32), z_key)["params"]
    state = train_state.TrainState.create(
        apply_fn=model.apply, params=params, tx=optax.adam(learning_rate)
    )
    train_step = make_train_step(model)
    host = np.random.default_rng(seed)
    steps = images.shape[0] // batch_size
    threshold = images.astype(np.float32)  # Bernoulli(k / 255): u * 255 < k, u ~ U[0, 1)
    carried = {"state": state, "rng": rng}

    def run():
        state, rng = carried["state"], carried["rng"]
        order = host.permutation(images.shape[0])
        for i in range(steps):
            indices = order[i * batch_size : (i + 1) * batch_size]
            uniforms = host.random((batch_size, PIXELS), dtype=np.float32)
            batch = (uniforms * 255.0 < threshold[indices]).astype(np.float32)
            rng, key = jax.random.split(rng)
            state = train_step(state, batch, key)
        carried["state"], carried["rng"] = state, rng
        return state

    return run, steps * batch_size


def interleaved(runs: dict[str, Callable[[], object]], repeats: int) -> dict[str, list[float]]:
    """Seconds of each ``run()`` (its result waited for), the runs called in turn
    ``repeats`` times after one warm-up round (which compiles)."""
    seconds = {name: [] for name in runs}
    for round_index in range(repeats + 1):
        for name, run in runs.items():
            started = time.perf_counter()
            jax.block_until_ready(run())
            if round_index:
                seconds[name].append(time.perf_counter() - started)
    return seconds


def metrics_ms(train_step, args: tuple, repeats: int) -> float:
    """What ``train_step(*args) -> (state, metrics)`` spends on its metrics alone (ms): the
    median over ``repeats`` interleaved pairs of the jitted step less the same step
    returning its state only (XLA drops what only the metrics need). Noise can make it
    slightly negative when the metrics cost next to nothing."""
    whole = jax.jit(train_step)
    state_only = jax.jit(lambda *args: train_step(*args)[0])
    seconds = interleaved({"whole": lambda: whole(*args), "state": lambda: state_only(*args)},
                          repeats)  # fmt: skip
    pairs = zip(seconds["whole"], seconds["state"], strict=True)
    return statistics.median(a - b for a, b in pairs) * 1e3


def against_compiled_epoch(
    config, program, args: tuple, num_train: int, repeats: int, images: np.ndarray
) -> dict:
    """Our compiled epoch ``program(*args)`` (over ``num_train`` images, every one trained
    on, the last batch masked) against the example's loop at ``config``'s widths, latents,
    batch size, learning rate and compute dtype over the same pixels ``images``
    (uint8 ``(num_train, 28, 28, 1)``), interleaved: examples/s and their ratio."""
    run_example, example_examples = example_epoch(
        np.asarray(images).reshape(num_train, PIXELS),
        hidden_sizes=tuple(config.model.hidden_sizes),
        latents=config.model.latent_dim,
        compute_dtype=config.model.compute_dtype,
        batch_size=config.training.batch_size,
        learning_rate=config.optimizer.learning_rate,
    )
    seconds = interleaved({"ours": lambda: program(*args), "flax_example": run_example}, repeats)
    examples = {"ours": num_train, "flax_example": example_examples}
    rates = {name: [examples[name] / s for s in times] for name, times in seconds.items()}
    return {
        "model": "-".join(map(str, [PIXELS, *config.model.hidden_sizes, config.model.latent_dim])),
        "compute_dtype": config.model.compute_dtype,
        "batch_size": config.training.batch_size,
        **{
            name: {
                "examples_per_epoch": examples[name],
                "seconds": seconds[name],
                "examples_per_second": statistics.median(rates[name]),
            }
            for name in seconds
        },
        "ours_over_flax_example": statistics.median(
            ours / theirs for ours, theirs in zip(rates["ours"], rates["flax_example"], strict=True)
        ),
    }
