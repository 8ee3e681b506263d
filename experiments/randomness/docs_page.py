"""``docs/randomness.md``: both questions answered with a trained model's numbers.

The page is generated from ``<workdir>/randomness/report.json``; its figures are copied to
``docs/figures/``. The command that regenerates it is written at its top.
"""

from __future__ import annotations

import shutil
from pathlib import Path


def _g(value, digits=3) -> str:
    return f"{value:.{digits}g}"


def _elbo_table(rows: list[dict]) -> str:
    lines = [
        "| latent draws | KL | ELBO estimate (mean ± s.e.) | Var of the estimate | "
        "Var of its gradient (per parameter) |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['num_samples']} | {r['kl']} | {r['elbo_mean']:.3f} ± "
            f"{r['elbo_standard_error']:.3f} | {_g(r['elbo_variance'])} | "
            f"{_g(r['gradient']['mean_variance_per_parameter'])} |"
        )
    return "\n".join(lines)


def _decomposition_table(post: dict, prior: dict) -> str:
    lines = [
        "| source of x | Var(x) measured | E[Var(x\\|z)] (decoder noise) | "
        "Var(E[x\\|z]) (latent draw) | share from p(x\\|z) | residual ± s.e. |",
        "|---|---|---|---|---|---|",
    ]
    for label, r in (("z ~ q(z\\|x), fixed x", post), ("z ~ p(z) (generation)", prior)):
        lines.append(
            f"| {label} | {r['total_variance']:.2f} | "
            f"{r['observation_noise_E_var_x_given_z']:.2f} | "
            f"{r['latent_draw_var_E_x_given_z']:.2f} | "
            f"{r['fraction_from_observation_noise']:.1%} | "
            f"{_g(r['residual_total_minus_parts'])} ± {_g(r['residual_standard_error'], 2)} |"
        )
    return "\n".join(lines)


def _kl_sentence(rows: list[dict]) -> str:
    """What the measurements say about analytic vs Monte Carlo KL (not assumed)."""
    by = {(r["num_samples"], r["kl"]): r for r in rows}
    counts = sorted({r["num_samples"] for r in rows})
    agree = all(
        abs(by[(n, "analytic")]["elbo_mean"] - by[(n, "mc")]["elbo_mean"])
        < 4 * (by[(n, "analytic")]["elbo_standard_error"] + by[(n, "mc")]["elbo_standard_error"])
        for n in counts
    )
    noisier = [
        n for n in counts if by[(n, "mc")]["elbo_variance"] > by[(n, "analytic")]["elbo_variance"]
    ]
    agreement = (
        "Both KL estimators estimate the same ELBO: their means agree within four standard "
        "errors for every number of draws."
        if agree
        else "The means of the two KL estimators differ by more than four standard errors "
        "somewhere in this table; see the report for details."
    )
    if not noisier:
        noise = (
            "Here the Monte Carlo KL is not noisier than the analytic one: its draws share the z "
            "of the reconstruction term, and their errors partly cancel."
        )
    elif len(noisier) == len(counts):
        noise = "Here the Monte Carlo KL adds noise at every number of draws."
    else:
        noise = f"The Monte Carlo KL is noisier with {noisier} draws and not with the others."
    gradient_noisier = [
        n
        for n in counts
        if by[(n, "mc")]["gradient"]["mean_variance_per_parameter"]
        > by[(n, "analytic")]["gradient"]["mean_variance_per_parameter"]
    ]
    gradient = (
        "The gradient, which is what training feels, is noisier with the Monte Carlo KL "
        f"for {gradient_noisier} draws."
        if gradient_noisier
        else "Its gradient is not noisier with the Monte Carlo KL here."
    )
    return (
        f"{agreement} {noise} {gradient} More latent draws shrink both variances about in "
        "proportion to their number."
    )


def _binarization_section(protocol: dict) -> str:
    """How dynamic binarization draws a training batch (both recorded versions), and which
    one the run drew with."""
    if protocol.get("binarization") == "dynamic":
        version = protocol.get("binarization_version", 1)  # recorded from version 2 on
        drew = f"The run above drew its training batches with version {version}."
    else:
        drew = "The run above does not binarize dynamically."
    return f"""## Where the bits of a dynamically binarized batch come from

Dynamic binarization (Burda et al., 2015) binarizes every training image afresh at each
step: an 8-bit pixel x (0 to 255) becomes 1 with probability x / 255, drawn with the key
`k = fold_in(binarize_stream, t)` of step t. How the key becomes bits is a recorded
protocol version (`data.binarization_version`).
{drew}

* **Version 2** (new runs): 8 random bits per pixel. With n the batch's pixels in row-major
  order, u = the bytes of `jax.random.bits(k, (ceil(n / 4),), uint32)`, byte b of word w
  (bits 8b to 8b + 7) for pixel 4w + b. A byte 255 is rejected: in round r = 1, 2, ... the
  pixels still at 255, in order, take the bytes of
  `jax.random.bits(fold_in(k, r), (ceil(n / 512),), uint32)` in order (any left over wait
  for the next round), until none is left. Pixel i is 1 iff u_i < x_i. Each pixel keeps
  the first byte below 255 of a sequence of fresh uniform bytes, so u_i is uniform on
  {{0, ..., 254}}, independently of the other pixels; exactly x of those 255 values lie
  below x, so P(pixel = 1) = x / 255 exactly (0 at x = 0, 1 at x = 255). A batch of 128
  images (100,352 pixels) has about 392 bytes at 255: a redraw round (196 words, against
  25,088 for the first draw) is almost always needed, a second with probability about
  0.78, a third about 0.006.
* **Version 1** (runs recorded before the field, which read as 1 and resume, evaluate and
  reproduce as they were): `bernoulli(k, x / 255)`, a float32 uniform per pixel (32 random
  bits) compared with x / 255 in float32: within about 2^-23 of x / 255.

Validation and test images are binarized once, the same way under both versions
(`fold_in(fold_in(key(binarization_seed), 1000), split_id)`), so runs of either version
are scored on the same bits.
"""


def render(report: dict, workdir: str, command: str) -> str:
    d = report["determinism"]
    vd = report["variance_decomposition"]
    post, prior = vd["posterior"], vd["prior"]
    z_ratio = [
        s / p
        for image in post["per_image"]
        for s, p in zip(image["z_sample_variance"], image["z_posterior_variance"], strict=True)
    ]
    s = report["sampling_before_the_loss"]
    g = s["gradients"]
    enc = report["training_noise"]["encoder_gradients"]
    noise = report["training_noise"]
    ratio = enc["variance_ratio_score_function_over_reparameterization"]
    cf_variance = _g(g["closed_form_log_likelihood"]["mean_variance_per_parameter"])
    why = " — which is why z is drawn as μ + σ·ε" if ratio > 1 else ""
    ce = ""
    if "cross_entropy_exact_expectation" in s:
        ce = (
            f"* cross-entropy of x against a sampled binary x̂ (clipped to "
            f"[{s['cross_entropy_eps']}, 1 − {s['cross_entropy_eps']}]): it estimates "
            f"**{s['cross_entropy_exact_expectation']:.2f}** (sampled: "
            f"{s['cross_entropy_sampled_estimate']:.2f}), a scaled count of mismatched pixels "
            f"— {s['gap_cross_entropy_minus_log_likelihood']:.2f} nats away from log p(x|z);\n"
        )
    return f"""# Where the randomness lives in a VAE

Regenerate this page, its numbers and figures, with one command:

    {command}

Numbers below come from the run `{workdir}` (likelihood: {report["likelihood"]}, checkpoint
step {report["checkpoint"]["step"]}, epoch {report["checkpoint"]["epoch"]}; binarization:
{report["data"]["protocol"]["binarization"]}; networks' products in
{report.get("compute_dtype", "float32")}), measured on test images with keys from the
run's `eval` stream (`{report["keys"]["derivation"]}`), so they repeat exactly.

## 1. Once trained, where is the randomness? Is the encoder "probabilistic"?

The encoder and the decoder are ordinary deterministic networks. The encoder maps x to the
*parameters* of a distribution q(z|x) (a mean and a scale per latent dimension); the decoder
maps z to the parameters of p(x|z) (here {report["likelihood"]} logits or moments). "Probabilistic
encoder" means that its output is a distribution, not that the network computes randomly.

* Repeated `encode` calls on the same {d["inputs"]["images"]} images (compiled and op by op):
  largest difference **{d["encode_max_abs_difference"]}**. Repeated `decode` calls on the
  same z: **{d["decode_max_abs_difference"]}**. The same x always gives the same q(z|x); the
  same z always gives the same p(x|z), hence the same decoder mean x̂ = E[x|z].
* Randomness enters only when a distribution is *sampled*, each time with a key: z ~ q(z|x)
  (reparameterized: z = μ + σ·ε), z ~ p(z) to generate, and x ~ p(x|z) only when asked.
  Two samples from p(x|z) for the same z differ in
  **{d["decoder_samples_fraction_of_pixels_differing"]:.1%}** of pixels.
* Across {vd["num_draws"]} latent keys, the sample variance of z for a fixed x matches the
  encoder's posterior variance σ²(x): ratio {min(z_ratio):.3f} to {max(z_ratio):.3f} over all
  dimensions and images.

![Repeated draws](figures/randomness_draws.png)

*Rows: test images. Left: decoder means for repeated z ~ q(z|x); right: a sample
x ~ p(x|z) for the same z. The means vary only through z; the samples add the decoder's
own noise.*

How much of the variance of a generated x comes from each source? Per pixel, the law of
total variance splits it exactly: Var(x) = E_z[Var(x|z)] + Var_z(E[x|z]). Summed over
pixels and averaged over {vd["num_images"]} test images ({vd["num_draws"]} draws each):

{_decomposition_table(post, prior)}

The two parts add up to the measured variance within Monte Carlo error (largest residual:
{post["max_abs_residual_in_standard_errors"]:.1f} standard errors). For a fixed image,
{post["fraction_from_observation_noise"]:.0%} of the spread of x̂ is the decoder's
observation noise and {post["fraction_from_latent_draw"]:.0%} the latent draw; generating
from the prior, the latent draw's share is {prior["fraction_from_latent_draw"]:.0%}.

![Variance decomposition](figures/randomness_variance_decomposition.png)

## 2. Why do implementations not sample x̂ ~ p(x|z) before the reconstruction loss?

Because the loss needs log p(x|z), the log-likelihood of the *data* x under the decoder's
distribution, and that is available in closed form (for a Bernoulli decoder,
Σ x log p + (1 − x) log(1 − p)). "x ~ p(x|z)" in the model's definition states which
distribution the data are assumed to come from; it is not a step of the algorithm. On
{s["num_images"]} test images, at one z ~ q(z|x) each:

* the ELBO's reconstruction term, closed form: **{s["closed_form_log_likelihood"]:.2f} nats**;
* squared error of x against a sampled x̂: it estimates
  **{s["squared_error_exact_expectation"]:.2f}** (sampled over {s["num_x_hat_draws"]} draws:
  {s["squared_error_sampled_estimate"]:.2f}) = −(‖x − E[x|z]‖² + Σ Var(x|z)), a different
  quantity: {s["gap_squared_error_minus_log_likelihood"]:.2f} away from log p(x|z), and it
  charges the model for the decoder's own noise;
{ce}* matching x̂ to x exactly is an unbiased estimate of p(x|z) itself, not of its log; it
  happened in {s["exact_match_fraction"]:.3g} of the draws.

And learning through a sample is blocked: the gradient of the sampled squared error with
respect to the decoder, taken through x̂ ~ Bernoulli, is exactly
**{g["pathwise_through_sample_max_abs"]}** (x̂ is a step function of the logits). A
score-function (REINFORCE) estimator is needed; over {g["num_keys"]} keys its gradient
variance per parameter is **{_g(g["score_function_sampled_score"]["mean_variance_per_parameter"])}**
(noise-to-signal {_g(g["score_function_sampled_score"]["noise_to_signal"])}). It is
unbiased, but the mean of its {g["num_keys"]} draws is still
{g["score_function_relative_error_of_mean"]:.3g}× the exact gradient's norm away from it —
what its noise predicts ({g["score_function_relative_error_expected_from_noise"]:.3g}×).
The closed-form gradient of log p(x|z), whose only noise is the latent draw, has variance
**{cf_variance}** per parameter (noise-to-signal
{_g(g["closed_form_log_likelihood"]["noise_to_signal"])}).

## Where the training noise comes from

Across {noise["num_keys"]} keys, for a batch of {noise["batch_size"]} test images: the
ELBO estimate (batch mean) and its gradient (all parameters), with the analytic KL or the
Monte Carlo KL at the same draws, for 1, 4, 16 and 64 latent draws per image.

{_elbo_table(noise["elbo"])}

{_kl_sentence(noise["elbo"])}

For the encoder, the reparameterization gradient of E_q[log p(x|z)] and the score-function
gradient have the same expectation (their means over the keys are
{enc["relative_difference_of_means"]:.3g}× apart relative to the norm of the mean, where noise
alone predicts {enc["relative_difference_expected_from_noise"]:.3g}×) over
{enc["num_keys"]} keys, but the score function's variance is
**{ratio:.3g}×** that of the reparameterization gradient{why}.

![Estimator variances](figures/randomness_estimator_variances.png)

{_binarization_section(report["data"]["protocol"])}"""


def write(report: dict, workdir: Path, docs_path: Path, command: str) -> Path:
    """Writes the page and copies the figures next to it."""
    docs_path = Path(docs_path)
    figures_dir = docs_path.parent / "figures"
    figures_dir.mkdir(parents=True, exist_ok=True)
    for source in report["figures"]:
        shutil.copyfile(source, figures_dir / f"randomness_{Path(source).name}")
    docs_path.write_text(render(report, str(workdir), command))
    return docs_path
