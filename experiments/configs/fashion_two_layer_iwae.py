"""The two-stochastic-layer IWAE of Burda et al. (2015), ``mnist_two_layer_iwae.py``, on
dynamically binarized Fashion-MNIST with the default experiment's length (20 epochs).

    python -m experiments.train --config=experiments/configs/fashion_two_layer_iwae.py \
        --workdir=runs/fashion_two_layer_iwae
"""

from experiments.configs import mnist_two_layer_iwae


def get_config():
    config = mnist_two_layer_iwae.get_config()
    config.data.name = "fashion_mnist"
    config.training.num_epochs = 20
    return config
