"""The ladder VAE of Sønderby et al. (2016), ``mnist_ladder.py``, on dynamically binarized
Fashion-MNIST with the default experiment's length (20 epochs) and a KL warm-up over its
first 10.

    python -m experiments.train --config=experiments/configs/fashion_ladder.py --workdir=runs/fashion_ladder
"""

from experiments.configs import mnist_ladder


def get_config():
    config = mnist_ladder.get_config()
    config.data.name = "fashion_mnist"
    config.objective.kl_warmup_steps = 10 * mnist_ladder.STEPS_PER_EPOCH
    config.training.num_epochs = 20
    return config
