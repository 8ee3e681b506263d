"""Train a VAE: parse the config and call ``train_and_evaluate(config, workdir)``.

    python -m experiments.train --config=experiments/configs/fashion_mlp.py \
        --workdir=runs/fashion_mlp
    python -m experiments.train --config=experiments/configs/tiny.py --workdir=runs/tiny \\
        --config.seed=3 --config.model.latent_dim=2

Running again in the same workdir resumes from its newest valid checkpoint; to continue
with, e.g., a lower learning rate, add --config.optimizer.learning_rate=... and
--allow_change=optimizer.learning_rate. Exit status:
0 trained, 1 error (one line on stderr), 75 stopped by SIGTERM or Ctrl-C (resumable).
--print_config prints the config with the overrides applied (every field) and exits.

Several hosts (or processes) train one data-parallel run with JAX's distributed runtime:

    python -m experiments.train ... --coordinator_address=host0:1234 --num_processes=2 \
        --process_id=<0 or 1>
"""

import sys

from absl import flags
from ml_collections import config_flags

from vae_jax.errors import ConfigError
from vae_jax.run import cli, parallel
from vae_jax.single_run import train_and_evaluate

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Experiment config file (experiments/configs/*.py).", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and reports.")
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address", "", "Multi-host: HOST:PORT of process 0 (jax.distributed)."
)
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", 1, "Multi-host: number of processes.")
_PROCESS_ID = flags.DEFINE_integer("process_id", 0, "Multi-host: this process's index.")
_ALLOW_CHANGE = flags.DEFINE_list(
    "allow_change",
    [],
    "On resume: optimizer.* or objective.* fields that may differ from the run's (e.g. a "
    "lower learning rate after a blow-up); recorded as a segment that reproduce replays.",
)
_PRINT_CONFIG = cli.define_print_config()
flags.mark_flags_as_required(["config"])


def main(argv):
    del argv
    config = cli.config_value(_CONFIG)
    if _PRINT_CONFIG.value:
        cli.print_config(config)
        return
    if _WORKDIR.value is None:
        raise ConfigError("--workdir is required (where the run's files go)")
    parallel.initialize_distributed(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
    result = train_and_evaluate(config, _WORKDIR.value, allow_change=tuple(_ALLOW_CHANGE.value))
    if result["status"] != "complete":
        sys.exit(cli.EXIT_STOPPED)  # stopped by a signal: the same command resumes


if __name__ == "__main__":
    cli.run(main)
