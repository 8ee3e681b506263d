"""Train a VAE: parse the config and call ``train_and_evaluate(config, workdir)``.

    python -m experiments.train --config=experiments/configs/fashion_mlp.py \
        --workdir=runs/fashion_mlp
    python -m experiments.train --config=experiments/configs/tiny.py --workdir=runs/tiny \\
        --config.seed=3 --config.model.latent_dim=2

Running again in the same workdir resumes from its newest valid checkpoint.
"""

from absl import flags
from ml_collections import config_flags

from vae_jax import cli
from vae_jax.training.loop import train_and_evaluate

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Experiment config file (experiments/configs/*.py).", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and reports.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    del argv
    train_and_evaluate(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
    cli.run(main)
