"""The MNIST column of the same table: ``fashion_vae.py`` on dynamically binarized MNIST
read through TFDS (needs internet once, and an accelerator for the whole protocol in
reasonable time; not run on the project's CPU machines).

Published: the "Dynamic MNIST" column of Norouzi, Fleet & Norouzi, "Exemplar VAE"
(NeurIPS 2020), Table 1, same model; not copied here, as it could not be checked against
the paper on the machine that wrote this (fill ``PUBLISHED`` in from the paper).

    python scripts/prepare_data.py --dataset=mnist --source=tfds
    python -m experiments.reproductions --rows=mnist_vae --workdir=runs/reproduce
"""

from experiments.configs.reproduce import fashion_vae, protocol

PUBLISHED = None


def get_config():
    return protocol.on_mnist(fashion_vae.get_config())
