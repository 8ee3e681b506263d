"""The VampPrior (Tomczak & Welling, 2018) on dynamically binarized Fashion-MNIST: the
setting of ``mnist_vampprior.py`` on the data these machines have, with the default
experiment's length (20 epochs) and a KL warm-up over its first 5 epochs.

    python -m experiments.train --config=experiments/configs/fashion_vampprior.py \
        --workdir=runs/fashion_vampprior
"""

from experiments.configs import mnist_vampprior


def get_config():
    config = mnist_vampprior.get_config()
    config.data.name = "fashion_mnist"
    config.objective.kl_warmup_steps = 5 * mnist_vampprior.STEPS_PER_EPOCH
    config.training.num_epochs = 20
    return config
