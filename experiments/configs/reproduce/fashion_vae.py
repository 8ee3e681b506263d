"""VAE with a standard normal prior on dynamically binarized Fashion-MNIST.

Published: 228.70 ± 0.15 nats (Norouzi, Fleet & Norouzi, "Exemplar VAE", NeurIPS 2020,
Table 1, Fashion-MNIST, "VAE w/ Gaussian prior"; the model of ``models/VAE.py`` in
jmtomczak/vae_vampprior and sajadn/Exemplar-VAE). Protocol: ``protocol.py``.

    python -m experiments.train --config=experiments/configs/reproduce/fashion_vae.py \
        --workdir=runs/reproduce/fashion_vae
"""

from experiments.configs.reproduce import protocol

PUBLISHED = (228.70, 0.15)


def get_config():
    return protocol.get_config()
