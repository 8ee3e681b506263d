"""Train many seeds in one compiled program, evaluate each, and aggregate over seeds.

    python -m experiments.sweep --config=experiments/configs/fashion_mlp.py \\
        --workdir=runs/fashion_sweep --seeds=0-7 [--strategy=auto|map|vmap|shard]

Each seed gets <workdir>/seed_<s>/ with the files of a single run; the sweep writes
sweep_table.json / .md (mean, std, 95% interval per metric) and figures/sweep_curves.png.
Running it again resumes every seed from its checkpoints. Exit status: 0 done, 1 error,
75 stopped by SIGTERM or Ctrl-C (resumable).
"""

import sys

from absl import flags
from ml_collections import config_flags

from vae_jax import cli
from vae_jax.sweep.runner import run_sweep
from vae_jax.sweep.seeds import parse_seeds
from vae_jax.sweep.strategies import STRATEGIES

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Experiment config file (experiments/configs/*.py).", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory of the sweep.")
_SEEDS = flags.DEFINE_string("seeds", "0-7", "Seeds: 0-7, 1,3,5 or a mix.")
_STRATEGY = flags.DEFINE_enum("strategy", "auto", list(STRATEGIES), "How seeds share a program.")
_EVALUATE = flags.DEFINE_bool("evaluate", True, "Evaluate every seed after training.")
_K = flags.DEFINE_integer(
    "num_importance_samples", None, "K of the test NLL (default: the config's)."
)
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    del argv
    result = run_sweep(
        cli.config_value(_CONFIG),
        _WORKDIR.value,
        parse_seeds(_SEEDS.value),
        strategy=_STRATEGY.value,
        evaluate=_EVALUATE.value,
        num_importance_samples=_K.value,
    )
    if result["status"] != "complete":
        sys.exit(cli.EXIT_STOPPED)  # stopped by a signal: the same command resumes


if __name__ == "__main__":
    cli.run(main)
