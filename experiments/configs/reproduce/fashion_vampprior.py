"""VAE with a VampPrior (500 pseudo-inputs) on dynamically binarized Fashion-MNIST.

Published: 227.35 ± 0.05 nats (Norouzi, Fleet & Norouzi, "Exemplar VAE", NeurIPS 2020,
Table 1, Fashion-MNIST, "VAE w/ VampPrior"; ``models/VAE.py`` with ``--prior vampprior``).
Protocol: ``protocol.py``.

    python -m experiments.train --config=experiments/configs/reproduce/fashion_vampprior.py \
        --workdir=runs/reproduce/fashion_vampprior
"""

from experiments.configs.reproduce import protocol

PUBLISHED = (227.35, 0.05)


def get_config():
    return protocol.vampprior(protocol.get_config())
