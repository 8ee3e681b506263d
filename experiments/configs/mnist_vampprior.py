"""The VampPrior of Tomczak & Welling (2018) on dynamically binarized MNIST.

p(z) = (1/500) sum_c q(z | u_c) at 500 learned pseudo-inputs, 40 latent dimensions,
two hidden layers of 300 units (ReLU here; the paper's gated units are not built), Adam at
5e-4, batches of 100, a KL warm-up over the first 100 epochs. The paper trains up to
2,000 epochs with early stopping; this config stops at 300. Needs MNIST from TFDS
(online) or IDX files:

    python scripts/prepare_data.py --dataset=mnist --idx_dir=DIR     # or --source=tfds online
    python -m experiments.train --config=experiments/configs/mnist_vampprior.py \
        --workdir=runs/mnist_vampprior
"""

from experiments.configs import base

STEPS_PER_EPOCH = 540  # 54,000 training images (10% carved for validation) in batches of 100


def get_config():
    config = base.get_config()
    config.data.name = "mnist"
    config.model.hidden_sizes = (300, 300)
    config.model.latent_dim = 40
    config.model.prior = "vampprior"
    config.model.prior_components = 500
    config.objective.kl = "mc"  # the VampPrior has no closed-form KL
    config.objective.kl_warmup_steps = 100 * STEPS_PER_EPOCH
    config.optimizer.learning_rate = 5e-4
    config.training.batch_size = 100
    config.training.num_epochs = 300
    return config
