"""Re-run a run from its manifest and verify it bit for bit.

    python -m experiments.reproduce --workdir=runs/fashion_mlp             # the whole run
    python -m experiments.reproduce --workdir=runs/fashion_mlp --epochs=5  # a prefix of it

Prints `reproduced` and exits 0, or names the first differing parameter leaf or metric
and exits 1. Differences in package versions, backend or XLA flags are reported first.
"""

import sys

from absl import flags

from vae_jax.reproduce import reproduce
from vae_jax.run import cli

_WORKDIR = flags.DEFINE_string("workdir", None, "The run to reproduce.")
_EPOCHS = flags.DEFINE_integer(
    "epochs", None, "Re-run this many epochs and compare with that epoch's checkpoint."
)
_SCRATCH = flags.DEFINE_string("scratch", None, "Keep the re-run here (default: a temp dir).")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "Where the run's data is now, if it moved.")
flags.mark_flag_as_required("workdir")


def main(argv):
    del argv
    outcome = reproduce(
        _WORKDIR.value, epochs=_EPOCHS.value, scratch=_SCRATCH.value, data_dir=_DATA_DIR.value
    )
    if outcome.reproduced:
        print(f"reproduced (epoch {outcome.epoch}: parameters, optimizer state and metrics)")
        return
    print(f"not reproduced at epoch {outcome.epoch}: {outcome.difference}")
    sys.exit(1)


if __name__ == "__main__":
    cli.run(main)
