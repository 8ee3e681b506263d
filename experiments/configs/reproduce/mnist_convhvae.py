"""``fashion_convhvae.py`` on dynamically binarized MNIST (see ``protocol.on_mnist``)."""

from experiments.configs.reproduce import fashion_convhvae, protocol

PUBLISHED = None  # Exemplar VAE's Table 1, Dynamic MNIST column: not checked here


def get_config():
    return protocol.on_mnist(fashion_convhvae.get_config())
