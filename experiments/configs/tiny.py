"""A tiny MLP VAE that trains in seconds on a CPU: for tests and smoke runs.

python -m experiments.train --config=experiments/configs/tiny.py --workdir=runs/tiny
"""

from experiments.configs import base


def get_config():
    config = base.get_config()
    config.data.limit_train = 600
    config.data.limit_test = 100
    config.model.latent_dim = 4
    config.model.hidden_sizes = (32,)
    config.training.batch_size = 50
    config.training.num_epochs = 3
    config.training.eval_batch_size = 100
    config.evaluation.num_importance_samples = 64
    config.evaluation.importance_chunk_size = 16
    config.evaluation.batch_size = 25
    config.evaluation.num_figure_examples = 4
    return config
