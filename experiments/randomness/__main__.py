"""Where the randomness lives: determinism of the networks, the variance of generated x,
the cost of sampling x-hat before the loss, and the sources of training noise.

    python -m experiments.randomness --workdir=runs/quickstart
    python -m experiments.randomness --workdir=runs/quickstart --docs=docs/randomness.md

Writes <workdir>/randomness/report.json and figures; --docs also regenerates the page.
"""

from pathlib import Path

from absl import flags

from experiments.randomness import docs_page
from experiments.randomness.experiment import run_experiment, summary_lines
from vae_jax.run import cli

_WORKDIR = flags.DEFINE_string("workdir", None, "A trained run.")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint (global step); default: the newest.")
_IMAGES = flags.DEFINE_integer("num_images", 8, "Test images for the per-image measurements.")
_DRAWS = flags.DEFINE_integer("num_draws", 2000, "Draws per image for the decomposition.")
_KEYS = flags.DEFINE_integer("num_keys", 200, "Keys over which estimator variances are taken.")
_BATCH = flags.DEFINE_integer("batch_size", 32, "Test images in the estimator batch.")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "Where the data is now, if it moved.")
_DOCS = flags.DEFINE_string("docs", None, "Also write this markdown page (docs/randomness.md).")
flags.mark_flag_as_required("workdir")


def main(argv):
    del argv
    report = run_experiment(
        _WORKDIR.value,
        step=_STEP.value,
        num_images=_IMAGES.value,
        num_draws=_DRAWS.value,
        num_keys=_KEYS.value,
        batch_size=_BATCH.value,
        data_dir=_DATA_DIR.value,
    )
    for line in summary_lines(report):
        print(line)
    print(f"report: {Path(_WORKDIR.value) / 'randomness' / 'report.json'}")
    if _DOCS.value:
        command = (
            f"python -m experiments.randomness --workdir={_WORKDIR.value} --docs={_DOCS.value}"
        )
        print(f"page: {docs_page.write(report, Path(_WORKDIR.value), Path(_DOCS.value), command)}")


if __name__ == "__main__":
    cli.run(main)
