"""IWAE at K=5000 against AIS at growing numbers of steps, and the BDMC gap, for the
quickstart model (experiments/configs/fashion_mlp.py) trained on a small budget.

    python -m experiments.likelihoods --workdir=runs/likelihoods --epochs=3 \\
        --train_examples=20000 --num_images=20 --steps=10,100,1000 --num_chains=8 \\
        --bdmc_examples=20 --bdmc_steps=10,100,300 --docs=docs/likelihoods.md

Trains the model in <workdir>/run (or finds it trained), then writes
<workdir>/likelihoods.{json,md,png}; --docs also writes the page, its JSON and figure.
"""

from pathlib import Path

from absl import flags

from experiments.likelihoods import experiment, page
from vae_jax.run import cli

_WORKDIR = flags.DEFINE_string("workdir", "runs/likelihoods", "Where the run and results go.")
_EPOCHS = flags.DEFINE_integer("epochs", 3, "Training epochs of the model.")
_TRAIN = flags.DEFINE_integer("train_examples", 20000, "First N training images (0: all).")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "TFDS data dir (default: the config's).")
_IMAGES = flags.DEFINE_integer("num_images", 20, "The first N test images.")
_K = flags.DEFINE_integer("num_importance_samples", 5000, "K of the IWAE bound.")
_STEPS = flags.DEFINE_list("steps", ["10", "100", "1000"], "AIS steps T on the test images.")
_CHAINS = flags.DEFINE_integer("num_chains", 8, "AIS chains per example.")
_LEAPFROG = flags.DEFINE_integer("leapfrog_steps", 10, "Leapfrog steps per HMC transition.")
_BDMC = flags.DEFINE_integer("bdmc_examples", 20, "Examples simulated from the model for BDMC.")
_BDMC_STEPS = flags.DEFINE_list("bdmc_steps", ["10", "100", "300"], "AIS steps T of BDMC.")
_DOCS = flags.DEFINE_string("docs", None, "Also write the page here (docs/likelihoods.md).")


def _command() -> str:
    parts = ["python -m experiments.likelihoods", f"--workdir={_WORKDIR.value}"]
    parts += [f"--epochs={_EPOCHS.value}", f"--train_examples={_TRAIN.value}",
              f"--num_images={_IMAGES.value}", f"--num_importance_samples={_K.value}",
              f"--steps={','.join(_STEPS.value)}", f"--num_chains={_CHAINS.value}",
              f"--leapfrog_steps={_LEAPFROG.value}", f"--bdmc_examples={_BDMC.value}",
              f"--bdmc_steps={','.join(_BDMC_STEPS.value)}"]  # fmt: skip
    if _DATA_DIR.value:
        parts.append(f"--data_dir={_DATA_DIR.value}")
    if _DOCS.value:
        parts.append(f"--docs={_DOCS.value}")
    return " ".join(parts)


def main(argv):
    del argv
    settings = experiment.Settings(
        epochs=_EPOCHS.value,
        train_examples=_TRAIN.value,
        data_dir=_DATA_DIR.value,
        num_images=_IMAGES.value,
        num_importance_samples=_K.value,
        steps=experiment.parse_steps(_STEPS.value, "--steps"),
        num_chains=_CHAINS.value,
        leapfrog_steps=_LEAPFROG.value,
        bdmc_examples=_BDMC.value,
        bdmc_steps=experiment.parse_steps(_BDMC_STEPS.value, "--bdmc_steps"),
    )
    results = experiment.run(Path(_WORKDIR.value), settings, command=_command())
    for line in page.summary_lines(results):
        print(line)
    docs = Path(_DOCS.value) if _DOCS.value else None
    for path in page.write(results, Path(_WORKDIR.value), docs):
        print(f"wrote {path}")


if __name__ == "__main__":
    cli.run(main)
