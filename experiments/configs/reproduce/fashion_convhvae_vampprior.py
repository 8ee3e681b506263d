"""Convolutional two-level HVAE with a VampPrior on ``z2`` on dynamically binarized
Fashion-MNIST.

Published: 224.67 ± 0.03 nats (Norouzi, Fleet & Norouzi, "Exemplar VAE", NeurIPS 2020,
Table 1, Fashion-MNIST, "ConvHVAE w/ VampPrior"; ``models/convHVAE_2level.py`` with
``--prior vampprior``). Protocol: ``protocol.py``.

    python -m experiments.train \
        --config=experiments/configs/reproduce/fashion_convhvae_vampprior.py \
        --workdir=runs/reproduce/fashion_convhvae_vampprior
"""

from experiments.configs.reproduce import protocol

PUBLISHED = (224.67, 0.03)


def get_config():
    return protocol.vampprior(protocol.convolutional(protocol.hierarchical(protocol.get_config())))
