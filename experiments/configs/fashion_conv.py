"""A convolutional VAE on Fashion-MNIST intensities with a continuous Bernoulli likelihood.

Switch to a Gaussian with ``--config.model.likelihood=gaussian`` (learned shared scale by
default; see ``model.gaussian_scale``).

    python -m experiments.train --config=experiments/configs/fashion_conv.py --workdir=runs/fashion_conv
"""

from experiments.configs import base


def get_config():
    config = base.get_config()
    config.data.binarization = "none"
    config.model.architecture = "conv"
    config.model.conv_channels = (32, 64)
    config.model.hidden_sizes = (256,)
    config.model.likelihood = "continuous_bernoulli"
    return config
