"""Every config field, its default and its meaning (the one place they are documented).

Other configs import this and override; it is also the default experiment as it stands
(``fashion_mlp.py`` returns it unchanged). Each field can be set on the command line as
``--config.<group>.<field>=<value>``; the config is locked, so a misspelt field fails.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    # Root of every random draw: all key streams derive from jax.random.key(seed).
    config.seed = 0

    config.data = data = ml_collections.ConfigDict()
    data.name = (
        "fashion_mnist"  # mnist | fashion_mnist | kmnist | binarized_mnist | cifar10 | a local name
    )
    data.source = "local"  # local: ingested IDX files (scripts/prepare_data.py); tfds: TFDS catalog
    data.data_dir = ""  # TFDS data dir; "" = $TFDS_DATA_DIR or ~/tensorflow_datasets
    data.binarization = "dynamic"  # none | static | dynamic (fresh Bernoulli draw every step)
    data.static_binarization = "sample"  # for static: sample (keyed Bernoulli) | threshold (> 0.5)
    data.binarization_seed = 0  # key of static binarization and of eval sets under dynamic
    # dynamic: how a training step draws its bits from fold_in(binarize_stream, step)
    # (recorded; vae_jax/data/preprocess.py): 2 = 8 random bits per pixel, exactly
    # Bernoulli(x / 255) for 8-bit x | 1 = a float32 uniform per pixel compared with
    # x / 255 (runs recorded before this field; resume those with 1). Evaluation sets are
    # binarized once, the same way under both.
    data.binarization_version = 2
    data.validation_fraction = 0.1  # carved from train: the last fraction after a keyed permutation
    # permuted: carve the validation images after the keyed permutation below | last: the
    # last ones of the train split in file order (the VampPrior and Exemplar-VAE code)
    data.validation_order = "permuted"
    data.validation_split = ""  # use this dataset split as validation instead of carving
    data.split_seed = 0  # key of the permutation that carves validation (same for every run seed)
    data.limit_train = 0  # use only the first N source train examples (0 = all)
    data.limit_test = 0  # use only the first N test examples (0 = all)

    config.model = model = ml_collections.ConfigDict()
    model.architecture = "mlp"  # mlp | conv
    model.latent_dim = 20  # dimension of z
    model.hidden_sizes = (512, 256)  # encoder dense widths; the decoder mirrors them
    model.conv_channels = (32, 64)  # conv: channels of the strided 3x3 convolutions
    # relu | gelu | elu | silu | tanh | softplus | leaky_relu | gated: every dense layer is
    # W h * sigmoid(V h) with no other nonlinearity (Dauphin et al. 2017; GatedDense of the
    # VampPrior code; mlp only)
    model.activation = "relu"
    model.kernel_init = "lecun_normal"  # mlp dense kernels: lecun_normal (Flax) | he_normal
    # (low, high): Gaussian heads of q and of p(z_l | z_{l+1}) predict a log-variance
    # clipped to it, mean and log-variance from separate layers (the VampPrior code: (-6, 2));
    # () = the default heads (a free log-scale; softplus scales above z_1)
    model.log_variance_range = ()
    model.bernoulli_clip = 0.0  # bernoulli: clamp probabilities to [c, 1 - c] (0 = off)
    model.likelihood = (
        "bernoulli"  # bernoulli | continuous_bernoulli | gaussian | discretized_logistic
    )
    model.gaussian_scale = "shared"  # gaussian: fixed | shared | per_pixel | predicted
    model.observation_scale = 0.1  # fixed gaussian scale; initial value of learned scales
    model.min_scale = 1e-3  # lower bound of learned gaussian scales
    model.num_bins = 256  # discretized_logistic: number of pixel values
    # float32 | bfloat16: operands of the networks' matrix products, accumulated in float32;
    # parameters, optimizer state and every log-probability stay float32 (mixed precision).
    model.compute_dtype = "float32"
    # p(z): standard_normal | mixture (learned mixture of diagonal Gaussians) | vampprior
    # (mixture of the encoder's posteriors at learned pseudo-inputs, Tomczak & Welling
    # 2018). The learned priors have no closed-form KL: they need objective.kl = "mc".
    model.prior = "standard_normal"
    model.prior_components = 10  # mixture: Gaussians; vampprior: pseudo-inputs
    # vampprior: sigmoid (of logits; start at 0.05 +- 0.01 per pixel) | hardtanh: clip(W, 0, 1)
    # with W ~ N(0, 2 / prior_components), the Exemplar-VAE code's pseudo-inputs
    model.pseudo_inputs = "sigmoid"
    # mixture | vampprior: how log p(z) lays out its work (recorded; the same formula, other
    # rounding; vae_jax/core/distributions/mixture.py): 2 = components first, about ten
    # times faster forward and backward on a CPU | 1 = components last (runs recorded
    # before this field; resume those with 1)
    model.mixture_density_version = 2
    # q(z|x): gaussian (diagonal) | iaf: inverse autoregressive flow on top of it (Kingma et
    # al. 2016), MADE steps with a context from the encoder; needs objective.kl = "mc" and
    # the reparameterization gradient; one layer of it does not combine with the vampprior
    # (vae_jax/model/compatibility.py lists what combines and why).
    model.posterior = "gaussian"
    model.flow_steps = 2  # iaf: number of steps
    model.flow_hidden_size = 64  # iaf: width of each MADE and of the encoder's context
    # Stochastic layers above z (vae_jax/model/hierarchy.py): sizes of z_2..z_L; () = one
    # layer. z_1 has latent_dim units and feeds the decoder; model.prior is p(z_L) (any of
    # them: "HVAE + VampPrior"), each p(z_l | z_{l+1}) is a Gaussian MLP, model.posterior
    # is z_1's family (iaf: a flow for z_1). Needs kl = mc.
    model.upper_latent_dims = ()
    model.upper_hidden_sizes = (100, 100)  # dense widths of each network between two layers
    # How q(z|x) runs through the layers: bottom_up, q(z_1|x) q(z_2|z_1) ... (Burda et al.
    # 2015) | top_down: the ladder VAE (Sønderby et al. 2016), a deterministic upward pass
    # merged, precision-weighted, with p(z_l | z_{l+1}) on the way down | top_down_skip:
    # q(z_L|x) prod q(z_l | x, z_{l+1}), Tomczak & Welling's two-level HVAE
    model.inference = "bottom_up"
    # hierarchies: z1 (p(x|z_1)) | all_layers (p(x|z_1..z_L), a dense branch per layer: the
    # VampPrior code's HVAE decoder; mlp only)
    model.decoder_reads = "z1"

    config.objective = objective = ml_collections.ConfigDict()
    objective.name = "elbo"  # elbo | iwae (importance-weighted bound, Burda et al. 2015)
    objective.num_samples = 1  # latent draws per example (K for iwae)
    objective.kl = "analytic"  # elbo: analytic | mc (Monte Carlo at the same z draws)
    objective.beta = 1.0  # weight of the KL term (beta-VAE); elbo only
    # the KL weight rises linearly from beta / kl_warmup_steps at step 0 to beta at step
    # kl_warmup_steps - 1 (0 = off)
    objective.kl_warmup_steps = 0
    # the same, counted in epochs: beta * min(1, (e + 1) / kl_warmup_epochs) in epoch e
    # (from 0), constant within an epoch (the VampPrior code's warm-up; 0 = off)
    objective.kl_warmup_epochs = 0
    objective.free_bits = 0.0  # nats per latent dim below which KL is not penalized (0 = off)
    # How the bound's gradient is estimated (its value is the same): reparameterization
    # (Kingma & Welling 2014) | stl: "sticking the landing", elbo with kl=mc (Roeder et al.
    # 2017) | dreg: doubly reparameterized, iwae (Tucker et al. 2018)
    objective.gradient_estimator = "reparameterization"

    config.optimizer = optimizer = ml_collections.ConfigDict()
    # adam | adamw | adam_normgrad: Adam on each parameter array's gradient divided by its
    # L2 norm (+1e-7), the VampPrior code's AdamNormGrad
    optimizer.name = "adam"
    optimizer.learning_rate = 1e-3  # peak learning rate
    optimizer.schedule = "constant"  # constant | warmup_cosine
    optimizer.warmup_steps = 0  # warmup_cosine: linear warm-up steps
    optimizer.final_learning_rate_ratio = 0.0  # warmup_cosine: final / peak learning rate
    optimizer.weight_decay = 1e-4  # adamw only
    optimizer.b1 = 0.9  # Adam: decay of the first-moment average
    optimizer.b2 = 0.999  # Adam: decay of the second-moment average
    optimizer.eps = 1e-8  # Adam: added to the root of the second moment
    optimizer.grad_clip_norm = 0.0  # clip the global gradient norm to this (0 = off)

    config.training = training = ml_collections.ConfigDict()
    training.batch_size = 128  # examples per step (the last batch of an epoch is masked)
    training.num_epochs = 20  # passes over the training split (also sets the schedule's length)
    training.checkpoint_every_epochs = 1  # also at the end, and on SIGTERM
    training.keep_checkpoints = 3  # newest checkpoints kept
    training.eval_batch_size = 1000  # validation ELBO batch size
    training.validation_num_samples = 1  # latent draws per example for the validation ELBO
    # Early stopping (0 = off): stop when the validation ELBO has not improved for more than
    # this many epochs (epochs of the KL warm-up do not count: the VampPrior code's rule).
    # The best epoch's checkpoint is kept in best_checkpoint/ and evaluated; num_epochs is
    # then the most epochs a run may take.
    training.early_stopping_patience = 0
    # Training steps per iteration of the epoch's compiled loop (lax.scan's ``unroll``). At 2
    # XLA alternates the parameters between two buffers instead of copying every kernel a
    # backward product reads before updating it in place: about 7% faster per step on a CPU
    # (docs/benchmarks.md). Opt-in: the steps and keys are the same, their fusion is not, so
    # the rounding differs from 1 and a sweep's seeds then equal their single runs only to
    # rounding (at 1, bit for bit). Recorded; resuming with another value is refused.
    training.epoch_unroll = 1

    config.evaluation = evaluation = ml_collections.ConfigDict()
    evaluation.num_importance_samples = 5000  # K of the test NLL bound
    evaluation.importance_chunk_size = 50  # draws processed at a time (bounds memory)
    evaluation.batch_size = 50  # test examples per compiled evaluation step
    evaluation.num_elbo_samples = 1  # latent draws per example for the test ELBO
    evaluation.num_figure_examples = 8  # test images in reconstruction figures
    # float32 | bfloat16: model.compute_dtype for the test bounds, whatever training used;
    # bfloat16 is ~2x faster on hardware with bfloat16 matrix units (its bias: docs/benchmarks.md)
    evaluation.compute_dtype = "float32"
    # Annealed importance sampling, run by `experiments.evaluate --estimator=ais` and `--bdmc`
    # only (docs/likelihoods.md): log p(x) from q(z|x) to p(x, z) with HMC (Wu et al., 2017)
    evaluation.ais_num_steps = 1000  # intermediate distributions T (each one HMC transition)
    evaluation.ais_num_chains = 16  # independent chains per example (log mean exp of weights)
    evaluation.ais_leapfrog_steps = 10  # per HMC transition: one decoder pass + gradient each
    evaluation.ais_num_examples = 0  # AIS on the first N test images (0 = all)
    evaluation.ais_chain_chunk_size = 16  # chains run together; each group adapts its step size
    evaluation.ais_schedule = "sigmoidal"  # sigmoidal (Wu et al.) | linear
    evaluation.ais_initial = "posterior"  # posterior: anneal from q(z|x) | prior: from p(z)
    evaluation.ais_target_acceptance = 0.65  # HMC step sizes adapt toward this acceptance rate
    evaluation.bdmc_num_examples = 100  # --bdmc: examples simulated from the model

    config.runtime = runtime = ml_collections.ConfigDict()
    runtime.debug_key_reuse = False  # run under jax.debug_key_reuse (slower; finds key reuse)
    runtime.deterministic_gpu_ops = False  # sets XLA_FLAGS=--xla_gpu_deterministic_ops=true
    # highest | high | default: jax_default_matmul_precision of float32 products. highest is
    # float32 everywhere; default lets the backend round (TF32 on recent NVIDIA GPUs, one
    # bfloat16 pass on TPUs; CPUs compute float32 either way)
    runtime.matmul_precision = "highest"
    runtime.num_devices = 0  # data parallel over this many devices (0 = all; sweeps: leave at 0)
    return config
