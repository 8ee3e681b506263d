"""The results table of the VAE family on dynamically binarized Fashion-MNIST.

    python -m experiments.results --workdir=runs/results --epochs=10 --seeds=0-2 \\
        --num_importance_samples=5000 --docs=docs/results.md

One seed sweep per model (the VAE, IWAE k=5 and k=50, VampPrior, IAF, two stochastic
layers: experiments/results/models.py), each evaluated at K; then the table with 95%
intervals over seeds, active units and times, as <workdir>/results.{md,json,png} and, with
--docs, the page. Running it again finishes what an interrupted run left.
"""

from pathlib import Path

from absl import flags
from ml_collections import config_flags

from experiments.results import experiment
from experiments.results.models import NAMES
from vae_jax.errors import ConfigError
from vae_jax.run import cli
from vae_jax.sweep.seeds import parse_seeds

DEFAULT_CONFIG = "experiments/configs/fashion_mlp.py"
_CONFIG = config_flags.DEFINE_config_file(
    "config", DEFAULT_CONFIG, "The base experiment every model changes one part of.",
    lock_config=True,
)  # fmt: skip
_WORKDIR = flags.DEFINE_string("workdir", "runs/results", "Directory of the models' sweeps.")
_MODELS = flags.DEFINE_list("models", [], f"Models to run (default all): {','.join(NAMES)}.")
_SEEDS = flags.DEFINE_string("seeds", "0-2", "Seeds of every model: 0-2, 1,3,5 or a mix.")
_EPOCHS = flags.DEFINE_integer("epochs", 10, "Epochs of every model.")
_K = flags.DEFINE_integer("num_importance_samples", 5000, "K of the test NLL bound.")
_TRAIN = flags.DEFINE_integer(
    "train_examples", 0, "Use the first N training images (0: the base config's; all by default)."
)
_TEST = flags.DEFINE_integer(
    "test_examples",
    0,
    "Evaluate on the first N test images (0: the base config's; all by default).",
)
_DOCS = flags.DEFINE_string("docs", None, "Also write the page here (docs/results.md).")
_NOTES = flags.DEFINE_string("notes", None, "A markdown file appended to the page.")


def _config_name() -> str:
    return config_flags.get_config_filename(flags.FLAGS["config"])


def _command() -> str:
    parts = ["python -m experiments.results", f"--workdir={_WORKDIR.value}"]
    if _config_name() != DEFAULT_CONFIG:  # the base config, when not the default
        parts.append(f"--config={_config_name()}")
    if _MODELS.value:
        parts.append(f"--models={','.join(_MODELS.value)}")
    parts += [f"--seeds={_SEEDS.value}", f"--epochs={_EPOCHS.value}",
              f"--num_importance_samples={_K.value}"]  # fmt: skip
    for flag in (_TRAIN, _TEST):
        if flag.value:
            parts.append(f"--{flag.name}={flag.value}")
    for flag in (_DOCS, _NOTES):
        if flag.value:
            parts.append(f"--{flag.name}={flag.value}")
    return " \\\n    ".join(parts)


def main(argv):
    del argv
    for flag, minimum in ((_EPOCHS, 1), (_K, 1), (_TRAIN, 0), (_TEST, 0)):
        if flag.value < minimum:
            raise ConfigError(f"--{flag.name}={flag.value} must be >= {minimum}")
    if _NOTES.value and not Path(_NOTES.value).is_file():
        raise ConfigError(f"--notes={_NOTES.value}: no such file")
    notes = Path(_NOTES.value).read_text() if _NOTES.value else ""
    results = experiment.run_results(
        cli.config_value(_CONFIG),
        _WORKDIR.value,
        model_names=_MODELS.value,
        seeds=parse_seeds(_SEEDS.value),
        epochs=_EPOCHS.value,
        num_importance_samples=_K.value,
        train_examples=_TRAIN.value,
        test_examples=_TEST.value,
        base_config_name=_config_name(),
        command=_command(),
    )
    docs = Path(_DOCS.value) if _DOCS.value else None
    for page in experiment.write(results, Path(_WORKDIR.value), docs, notes):
        print(f"page: {page}")


if __name__ == "__main__":
    cli.run(main)
