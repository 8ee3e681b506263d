"""The default experiment (``fashion_mlp.py``) with a learned prior: a mixture of 10
diagonal Gaussians (one per class would be the hope; nothing ties them to classes), its
KL estimated by Monte Carlo at the posterior draw.

    python -m experiments.train --config=experiments/configs/fashion_mixture_prior.py \
        --workdir=runs/fashion_mixture_prior
"""

from experiments.configs import base


def get_config():
    config = base.get_config()
    config.model.prior = "mixture"
    config.model.prior_components = 10
    config.objective.kl = "mc"  # a mixture has no closed-form KL to a Gaussian
    return config
