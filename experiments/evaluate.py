"""Evaluate a trained run: test NLL (importance-weighted bound), ELBO, latent diagnostics,
figures. Results go to <workdir>/report.json, report.md and figures/.

    python -m experiments.evaluate --workdir=runs/fashion_mlp
    python -m experiments.evaluate --workdir=runs/fashion_mlp --num_importance_samples=1000 \\
        --step=4220
    python -m experiments.evaluate --workdir=runs/fashion_mlp --compute_dtype=bfloat16
    python -m experiments.evaluate --workdir=runs/fashion_mlp --estimator=ais \\
        --ais_num_steps=1000 --ais_num_chains=16 --ais_num_examples=1000 --bdmc

While a training holds the workdir, --step=N evaluates that checkpoint into
<workdir>/evaluations/step_<N>/ (files the training never touches); without --step the
evaluation is refused, naming the training's process.
"""

from absl import flags

from vae_jax.core import precision
from vae_jax.evaluation import ais, ais_evaluation, vae_ais
from vae_jax.evaluation.evaluate_run import evaluate_run, resolved_config
from vae_jax.run import cli

_WORKDIR = flags.DEFINE_string("workdir", None, "The run to evaluate.")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint (global step); default: the newest.")
_K = flags.DEFINE_integer(
    "num_importance_samples", None, "K of the test NLL bound (default: the run's config, 5000)."
)
_CHUNK = flags.DEFINE_integer(
    "importance_chunk_size", None, "Draws per chunk; bounds memory (default: the run's config)."
)
_BATCH = flags.DEFINE_integer("batch_size", None, "Test examples per compiled step.")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "Where the data is now, if it moved.")
_FIGURES = flags.DEFINE_bool("figures", True, "Write figures/*.png.")
_COMPUTE_DTYPE = flags.DEFINE_enum(
    "compute_dtype",
    None,
    precision.COMPUTE_DTYPES,
    "Precision of the networks' products (default: the run's evaluation.compute_dtype).",
)
_PRINT_CONFIG = cli.define_print_config(
    "the run's config as this evaluation uses it (recorded fields; --data_dir, "
    "--compute_dtype, --num_importance_samples, --importance_chunk_size, --batch_size and "
    "the AIS flags applied)"
)
# Annealed importance sampling (vae_jax/evaluation/ais_evaluation.py; docs/likelihoods.md).
# Each AIS flag defaults to the run's config.evaluation.<flag name>.
_ESTIMATOR = flags.DEFINE_enum(
    "estimator", "iwae", ais_evaluation.ESTIMATORS,
    "iwae: the importance-weighted bound only; ais: also log p(x) by AIS beside it.",
)  # fmt: skip
_BDMC = flags.DEFINE_bool(
    "bdmc", False, "Also bracket log p(x) on data simulated from the model (forward and "
    "reverse AIS, bdmc_num_examples examples).",
)  # fmt: skip
_AIS_INTEGERS = {
    "ais_num_steps": "Intermediate distributions of AIS.",
    "ais_num_chains": "Independent AIS chains per example.",
    "ais_leapfrog_steps": "Leapfrog steps per HMC transition.",
    "ais_num_examples": "AIS on the first N test images (0: all).",
    "ais_chain_chunk_size": "Chains run together (each group adapts its step size).",
    "bdmc_num_examples": "Simulated examples of --bdmc.",
}
_AIS_FLAGS = [flags.DEFINE_integer(name, None, text) for name, text in _AIS_INTEGERS.items()]
_AIS_FLAGS += [
    flags.DEFINE_enum("ais_schedule", None, ais.SCHEDULES, "Annealing schedule."),
    flags.DEFINE_enum(
        "ais_initial", None, vae_ais.INITIAL_DISTRIBUTIONS, "Anneal from q(z|x) or the prior."
    ),
]
flags.mark_flag_as_required("workdir")


def main(argv):
    del argv
    if _PRINT_CONFIG.value:
        config = resolved_config(
            _WORKDIR.value, data_dir=_DATA_DIR.value, compute_dtype=_COMPUTE_DTYPE.value
        )
        given = {flag.name: flag.value for flag in _AIS_FLAGS}
        given.update(
            num_importance_samples=_K.value,
            importance_chunk_size=_CHUNK.value,
            batch_size=_BATCH.value,
        )
        for name, value in given.items():
            if value is not None:
                config.evaluation[name] = value
        cli.print_config(config)
        return
    evaluate_run(
        _WORKDIR.value,
        step=_STEP.value,
        num_importance_samples=_K.value,
        importance_chunk_size=_CHUNK.value,
        batch_size=_BATCH.value,
        data_dir=_DATA_DIR.value,
        make_figures=_FIGURES.value,
        compute_dtype=_COMPUTE_DTYPE.value,
        estimator=_ESTIMATOR.value,
        bdmc=_BDMC.value,
        ais_overrides={flag.name: flag.value for flag in _AIS_FLAGS},
    )


if __name__ == "__main__":
    cli.run(main)
