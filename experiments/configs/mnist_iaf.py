"""An inverse autoregressive flow posterior (Kingma et al., 2016) on dynamically binarized
MNIST.

The paper's MNIST models are convolutional (ResNet blocks) with 32 latent dimensions and
IAF steps of MADEs with a context from the encoder; this config keeps what this codebase
builds: the strided conv encoder and decoder, 32 latent dimensions, two IAF steps with
MADEs of 320 hidden units, Adam at 1e-3 (not the paper's architecture, so not its
numbers). Needs MNIST from TFDS (online) or IDX files:

    python scripts/prepare_data.py --dataset=mnist --idx_dir=DIR     # or --source=tfds online
    python -m experiments.train --config=experiments/configs/mnist_iaf.py --workdir=runs/mnist_iaf
"""

from experiments.configs import base


def get_config():
    config = base.get_config()
    config.data.name = "mnist"
    config.model.architecture = "conv"
    config.model.conv_channels = (32, 64)
    config.model.hidden_sizes = (450,)
    config.model.latent_dim = 32
    config.model.posterior = "iaf"
    config.model.flow_steps = 2
    config.model.flow_hidden_size = 320
    config.objective.kl = "mc"  # a flow posterior has no closed-form KL
    config.training.num_epochs = 100
    return config
