"""A convolutional two-layer hierarchical VAE with a VampPrior on its top layer (the
"convHVAE + VampPrior" of Tomczak & Welling 2018) on dynamically binarized Fashion-MNIST.

The setting of ``fashion_hvae_vampprior.py`` with strided convolutions (32 and 64 channels)
before the dense layer in the encoder and transposed convolutions in the decoder.

    python -m experiments.train --config=experiments/configs/fashion_conv_hvae.py \
        --workdir=runs/fashion_conv_hvae
"""

from experiments.configs import fashion_hvae_vampprior


def get_config():
    config = fashion_hvae_vampprior.get_config()
    config.model.architecture = "conv"
    config.model.conv_channels = (32, 64)
    config.model.hidden_sizes = (300,)
    return config
