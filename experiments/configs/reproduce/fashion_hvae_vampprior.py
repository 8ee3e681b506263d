"""Two-level HVAE with a VampPrior on ``z2`` on dynamically binarized Fashion-MNIST.

Published: 226.72 ± 0.08 nats (Norouzi, Fleet & Norouzi, "Exemplar VAE", NeurIPS 2020,
Table 1, Fashion-MNIST, "HVAE w/ VampPrior"; ``models/HVAE_2level.py`` with ``--prior
vampprior``: the pseudo-inputs' ``q(z2|u)``). Protocol: ``protocol.py``.

    python -m experiments.train \
        --config=experiments/configs/reproduce/fashion_hvae_vampprior.py \
        --workdir=runs/reproduce/fashion_hvae_vampprior
"""

from experiments.configs.reproduce import protocol

PUBLISHED = (226.72, 0.08)


def get_config():
    return protocol.vampprior(protocol.hierarchical(protocol.get_config()))
