"""Two-level HVAE with a standard normal prior on dynamically binarized Fashion-MNIST.

Published: 227.37 ± 0.10 nats (Norouzi, Fleet & Norouzi, "Exemplar VAE", NeurIPS 2020,
Table 1, Fashion-MNIST, "HVAE w/ Gaussian prior"; ``models/HVAE_2level.py``: ``q(z2|x)
q(z1|x, z2)``, ``p(z2) p(z1|z2) p(x|z1, z2)``). Protocol: ``protocol.py``.

    python -m experiments.train --config=experiments/configs/reproduce/fashion_hvae.py \
        --workdir=runs/reproduce/fashion_hvae
"""

from experiments.configs.reproduce import protocol

PUBLISHED = (227.37, 0.10)


def get_config():
    return protocol.hierarchical(protocol.get_config())
