"""A published table reproduced: Exemplar VAE's Fashion-MNIST column (docs/reproductions.md)."""
