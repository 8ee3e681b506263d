"""The one-stochastic-layer IWAE of Burda et al. (2015), ``mnist_iwae.py``, on dynamically
binarized Fashion-MNIST with the default experiment's length (20 epochs).

    python -m experiments.train --config=experiments/configs/fashion_iwae.py --workdir=runs/fashion_iwae
"""

from experiments.configs import mnist_iwae


def get_config():
    config = mnist_iwae.get_config()
    config.data.name = "fashion_mnist"
    config.training.num_epochs = 20
    return config
