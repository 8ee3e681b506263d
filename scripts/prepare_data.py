"""Prepares a dataset for training, as a TFDS dataset (array_record) in --data_dir.

Offline (default): ingest a folder of IDX files (MNIST format). Fashion-MNIST defaults to
Debian's package (`apt-get install dataset-fashion-mnist`):

    python scripts/prepare_data.py --dataset=fashion_mnist
    python scripts/prepare_data.py --dataset=mnist --idx_dir=/path/to/mnist

Online: TFDS's own download_and_prepare for catalog names (needs internet and TensorFlow,
which the default install leaves out: `pip install tensorflow`):

    python scripts/prepare_data.py --dataset=cifar10 --source=tfds

A second call finds the prepared data and does nothing.
"""

from pathlib import Path

from absl import flags, logging

from vae_jax.data import catalog, ingest, source
from vae_jax.errors import DataError
from vae_jax.run import cli

_DATASET = flags.DEFINE_string("dataset", "fashion_mnist", "Dataset name (data.name in configs).")
_SOURCE = flags.DEFINE_enum("source", "local", list(catalog.SOURCES), "local IDX files or tfds.")
_IDX_DIR = flags.DEFINE_string(
    "idx_dir", None, "Folder of IDX files (default for fashion_mnist: Debian's package folder)."
)
_DATA_DIR = flags.DEFINE_string(
    "data_dir", "", "TFDS data dir (default: $TFDS_DATA_DIR or ~/tensorflow_datasets)."
)
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Rebuild even if already prepared.")


def prepare_from_tfds(name: str, data_dir: str) -> Path:
    """TFDS catalog download_and_prepare as array_record; needs TensorFlow and internet."""
    try:
        import tensorflow  # noqa: F401
    except ImportError as e:
        raise DataError(
            f"--source=tfds needs TensorFlow to download and encode {name!r}: `pip install "
            "tensorflow`, or ingest local IDX files with --source=local --idx_dir=DIR"
        ) from e
    import tensorflow_datasets as tfds

    builder = tfds.builder(name, data_dir=str(catalog.resolve_data_dir(data_dir)))
    builder.download_and_prepare(file_format="array_record")
    return Path(builder.data_dir)


def main(argv):
    del argv
    name = _DATASET.value
    if _SOURCE.value == "tfds":
        path = prepare_from_tfds(name, _DATA_DIR.value)
    else:
        path = ingest.prepare_local(
            name, _IDX_DIR.value, _DATA_DIR.value, overwrite=_OVERWRITE.value
        )
    data_config = _data_config(name, _SOURCE.value, _DATA_DIR.value)
    spec = catalog.get_spec(data_config)
    sizes = ", ".join(f"{split} {n}" for split, n in sorted(spec.split_sizes.items()))
    logging.info("ready: %s (%s) in %s", name, sizes, path)
    print(f"{name}: {sizes} examples, image shape {spec.image_shape}, in {path}")
    # Reading one example proves the reader accepts it.
    source.open_split(data_config, "test")[0]


def _data_config(name, source_name, data_dir):
    import ml_collections

    return ml_collections.ConfigDict({"name": name, "source": source_name, "data_dir": data_dir})


if __name__ == "__main__":
    cli.run(main)
