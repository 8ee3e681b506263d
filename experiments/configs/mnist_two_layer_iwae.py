"""The two-stochastic-layer IWAE of Burda et al. (2015) on dynamically binarized MNIST.

x -> 200-200 tanh -> z1 (100) -> 100-100 tanh -> z2 (50), with q(z1|x) q(z2|z1) from the
bottom up and p(z2) p(z1|z2) p(x|z1) from the top down (vae_jax/model/hierarchy.py); Bernoulli
likelihood, the k=5 importance-weighted bound, Adam with the paper's eps = 1e-4 and
batches of 20. The paper trains for 3,280 passes with a stepped learning rate; this config
stops at 100 epochs with a cosine decay, like ``mnist_iwae.py`` (the one-layer model).
Needs MNIST from TFDS (online) or IDX files:

    python scripts/prepare_data.py --dataset=mnist --idx_dir=DIR     # or --source=tfds online
    python -m experiments.train --config=experiments/configs/mnist_two_layer_iwae.py \
        --workdir=runs/mnist_two_layer_iwae
"""

from experiments.configs import mnist_iwae


def get_config():
    config = mnist_iwae.get_config()
    config.model.latent_dim = 100
    config.model.upper_latent_dims = (50,)
    config.model.upper_hidden_sizes = (100, 100)
    config.model.inference = "bottom_up"
    config.objective.kl = "mc"  # a hierarchy's KL has no closed form (reported, not used)
    config.optimizer.eps = 1e-4
    return config
