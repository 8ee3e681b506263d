"""The one-stochastic-layer IWAE of Burda et al. (2015) on dynamically binarized MNIST.

784-200-200-50 encoder with tanh units, mirrored decoder, Bernoulli likelihood, trained
with the k=5 importance-weighted bound. Needs MNIST from TFDS (online) or IDX files:

    python scripts/prepare_data.py --dataset=mnist --idx_dir=DIR     # or --source=tfds online
    python -m experiments.train --config=experiments/configs/mnist_iwae.py --workdir=runs/mnist_iwae
"""

from experiments.configs import base


def get_config():
    config = base.get_config()
    config.data.name = "mnist"
    config.model.hidden_sizes = (200, 200)
    config.model.latent_dim = 50
    config.model.activation = "tanh"
    config.objective.name = "iwae"
    config.objective.num_samples = 5
    config.optimizer.learning_rate = 1e-3
    config.optimizer.schedule = "warmup_cosine"
    config.optimizer.warmup_steps = 1000
    config.optimizer.final_learning_rate_ratio = 0.01
    config.training.batch_size = 20
    config.training.num_epochs = 100
    return config
