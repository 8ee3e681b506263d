"""A two-layer hierarchical VAE with a VampPrior on its top layer ("HVAE + VampPrior",
Tomczak & Welling 2018, their best non-autoregressive model) on dynamically binarized
Fashion-MNIST.

Two stochastic layers of 40 units; inference runs top-down (``model.inference=top_down``:
a deterministic upward pass gives ``q(z_2|x)`` directly, so the VampPrior
``p(z_2) = (1/500) sum_c q(z_2 | u_c)`` mixes the exact top-layer posteriors at 500 learned
pseudo-inputs); ``p(z_1|z_2)`` and the decoder ``p(x|z_1)``. Dense layers of 300 units (ReLU
here; the paper's gated units and its decoder reading both layers are not built), Adam at
5e-4, batches of 100, a KL warm-up over the first 5 epochs, 20 epochs.

    python -m experiments.train --config=experiments/configs/fashion_hvae_vampprior.py \
        --workdir=runs/fashion_hvae_vampprior
"""

from experiments.configs import fashion_vampprior, mnist_vampprior


def get_config():
    config = fashion_vampprior.get_config()
    config.model.upper_latent_dims = (40,)
    config.model.upper_hidden_sizes = (300, 300)
    config.model.inference = "top_down"
    config.objective.kl_warmup_steps = 5 * mnist_vampprior.STEPS_PER_EPOCH
    return config
