"""The ladder VAE of Sønderby et al. (2016) on dynamically binarized MNIST.

Five stochastic layers of 64, 32, 16, 8 and 4 units; inference runs top-down, each layer's
posterior the precision-weighted merge of a deterministic bottom-up pass with the
generative p(z_l | z_{l+1}) (vae_jax/model/hierarchy.py); the ELBO with a linear KL warm-up over
the first 200 epochs, Adam at 2e-4, batches of 256. The paper's deterministic widths
shrink per layer (512 ... 32) and it uses batch normalization; here x -> 512-256 and every
network between layers has 128-128 units, no batch normalization (it would make a
network depend on the batch). The paper trains 2,000 epochs; this config stops at 300.
Needs MNIST from TFDS (online) or IDX files:

    python scripts/prepare_data.py --dataset=mnist --idx_dir=DIR     # or --source=tfds online
    python -m experiments.train --config=experiments/configs/mnist_ladder.py --workdir=runs/mnist_ladder
"""

from experiments.configs import base

STEPS_PER_EPOCH = 211  # 54,000 training images (10% carved for validation) in batches of 256


def get_config():
    config = base.get_config()
    config.data.name = "mnist"
    config.model.hidden_sizes = (512, 256)
    config.model.latent_dim = 64
    config.model.upper_latent_dims = (32, 16, 8, 4)
    config.model.upper_hidden_sizes = (128, 128)
    config.model.inference = "top_down"
    config.objective.kl = "mc"  # a hierarchy's KL has no closed form
    config.objective.kl_warmup_steps = 200 * STEPS_PER_EPOCH
    config.optimizer.learning_rate = 2e-4
    config.training.batch_size = 256
    config.training.num_epochs = 300
    return config
