"""The IAF posterior of ``mnist_iaf.py`` on dynamically binarized Fashion-MNIST, with the
default experiment's length (20 epochs).

    python -m experiments.train --config=experiments/configs/fashion_iaf.py --workdir=runs/fashion_iaf
"""

from experiments.configs import mnist_iaf


def get_config():
    config = mnist_iaf.get_config()
    config.data.name = "fashion_mnist"
    config.training.num_epochs = 20
    return config
