"""Convolutional two-level HVAE with a standard normal prior on dynamically binarized
Fashion-MNIST.

Published: 225.38 ± 0.08 nats (Norouzi, Fleet & Norouzi, "Exemplar VAE", NeurIPS 2020,
Table 1, Fashion-MNIST, "ConvHVAE w/ Gaussian prior"; ``models/convHVAE_2level.py``: gated
convolutions reading x, a decoder of two gated dense layers and four gated 3x3
convolutions at full resolution). Protocol: ``protocol.py``.

    python -m experiments.train --config=experiments/configs/reproduce/fashion_convhvae.py \
        --workdir=runs/reproduce/fashion_convhvae
"""

from experiments.configs.reproduce import protocol

PUBLISHED = (225.38, 0.08)


def get_config():
    return protocol.convolutional(protocol.hierarchical(protocol.get_config()))
