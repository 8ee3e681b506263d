"""Data: TFDS reading (no TensorFlow), offline IDX ingestion, preprocessing, batching."""

from vae_jax.data.batching import Batches, epoch_batches, num_batches, ordered_batches
from vae_jax.data.pipeline import Dataset, Split, load_dataset
from vae_jax.data.preprocess import Preprocessing
from vae_jax.errors import DataError

__all__ = [
    "Batches",
    "DataError",
    "Dataset",
    "Preprocessing",
    "Split",
    "epoch_batches",
    "load_dataset",
    "num_batches",
    "ordered_batches",
]
