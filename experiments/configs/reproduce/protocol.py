"""The protocol and parts shared by every row of the reproduced table.

Norouzi, Fleet & Norouzi, "Exemplar VAE" (NeurIPS 2020), Table 1 (density estimation),
whose setting is Tomczak & Welling's VampPrior code (``jmtomczak/vae_vampprior``), read in
``sajadn/Exemplar-VAE`` (``density_estimation.py``, ``models/``, ``utils/``):

* data: dynamically binarized, the training images binarized afresh at every step, the
  validation and test images once; 50,000 training and 10,000 validation images, the last
  10,000 of the training file (no shuffle: ``use_fixed_validation=True``);
* networks: two gated dense layers of 300 units per network (``GatedDense``), He-normal
  kernels, a mean layer and a log-variance layer clipped to [-6, 2] per Gaussian, Bernoulli
  probabilities clamped to [1e-5, 1 - 1e-5]; 40 latent units per layer;
* training: ``AdamNormGrad`` (Adam on each parameter's gradient divided by its norm) at
  5e-4, batches of 100, the ELBO with a single-sample KL, whose weight rises as epoch / 100
  over the first 100 epochs; early stopping when the validation loss has not improved for
  more than 50 epochs (not counted during the warm-up), at most 2,000 epochs; the best
  validation epoch's parameters are evaluated;
* evaluation: log p(x) by importance sampling with 5,000 samples on the 10,000 test images.

What differs, and why, is listed in docs/reproductions.md.
"""

from experiments.configs import base

NUM_TRAIN = 50_000
BATCH_SIZE = 100
STEPS_PER_EPOCH = NUM_TRAIN // BATCH_SIZE


def get_config():
    config = base.get_config()
    config.data.name = "fashion_mnist"
    config.data.binarization = "dynamic"
    config.data.validation_fraction = 1 / 6  # 10,000 of the 60,000 training images
    config.data.validation_order = "last"
    model = config.model
    model.architecture = "mlp"
    model.hidden_sizes = (300, 300)
    model.latent_dim = 40
    model.activation = "gated"
    model.kernel_init = "he_normal"
    model.log_variance_range = (-6.0, 2.0)
    model.bernoulli_clip = 1e-5
    model.prior = "standard_normal"
    model.prior_components = 500
    objective = config.objective
    objective.name = "elbo"
    objective.kl = "mc"
    objective.kl_warmup_epochs = 100
    config.optimizer.name = "adam_normgrad"
    config.optimizer.learning_rate = 5e-4
    training = config.training
    training.batch_size = BATCH_SIZE
    training.num_epochs = 2000
    training.early_stopping_patience = 50
    training.checkpoint_every_epochs = 10
    training.eval_batch_size = 1000
    evaluation = config.evaluation
    evaluation.num_importance_samples = 5000
    evaluation.importance_chunk_size = 500
    evaluation.batch_size = 10
    return config


def on_mnist(config):
    """The same row on MNIST from TFDS (``mnist``: 60,000 training images, the last 10,000
    of them for validation, as ``dynamic_mnist`` in the papers' code): the table's MNIST
    column, for machines with internet and an accelerator; not run on the project's CPU
    machines. Its published numbers (Exemplar VAE, Table 1, "Dynamic MNIST") are not
    copied into the ``mnist_*`` configs: they could not be checked against the paper where
    these were written; set ``PUBLISHED`` from the paper. To run a row::

        python scripts/prepare_data.py --dataset=mnist --source=tfds
        python -m experiments.reproductions --rows=mnist_vae --workdir=runs/reproduce
    """
    config.data.name = "mnist"
    config.data.source = "tfds"
    return config


def hierarchical(config):
    """The two-level HVAE of ``models/HVAE_2level.py``: ``q(z2|x) q(z1|x, z2)``,
    ``p(z2) p(z1|z2) p(x|z1, z2)``, 40 units per layer, the prior on ``z2``."""
    config.model.upper_latent_dims = (40,)
    config.model.upper_hidden_sizes = (300, 300)
    config.model.inference = "top_down_skip"
    config.model.decoder_reads = "all_layers"
    return config


def convolutional(config):
    """The gated convolutional networks of ``models/convHVAE_2level.py``."""
    config.model.architecture = "gated_conv"
    return config


def vampprior(config):
    """The VampPrior on the top layer: 500 pseudo-inputs, ``clip(W, 0, 1)`` with
    He-normal ``W`` (the Exemplar-VAE code's ``means``, after its ``he_initializer``)."""
    config.model.prior = "vampprior"
    config.model.prior_components = 500
    config.model.pseudo_inputs = "hardtanh"
    return config
