"""The default experiment: an MLP VAE on dynamically binarized Fashion-MNIST.

784-512-256-(20) encoder, mirrored decoder, Bernoulli likelihood, analytic KL, Adam.

    python -m experiments.train --config=experiments/configs/fashion_mlp.py --workdir=runs/fashion_mlp
"""

from experiments.configs import base


def get_config():
    return base.get_config()
