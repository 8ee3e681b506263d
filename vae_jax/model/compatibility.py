"""The one table of what combines, derived from the capabilities the parts declare.

A model is a prior, a posterior family, one or several stochastic layers and an
architecture; it is trained with an objective, a KL estimator and a gradient estimator.
Every combination works except those that are mathematically undefined, and each refusal
says why:

* ``kl='analytic'`` needs the KL in closed form: ``q`` and ``p`` both one diagonal Gaussian
  (one layer, the Gaussian posterior, the standard normal prior);
* free bits need a KL per latent dimension: ``q`` and ``p`` both factorized over dimensions;
* ``stl`` and ``dreg`` evaluate ``log q`` with its parameters held at the draws, so they need
  ``q``'s density at any ``z`` (a flow has it at its own draws only);
* the VampPrior is the mean of the top layer's posteriors at its pseudo-inputs, so that
  layer's density must be known at any ``z`` (not a flow's);
* ``stl`` applies to the ELBO with a Monte Carlo KL, ``dreg`` to the IWAE bound.

The architecture (``mlp``, ``conv``) combines with everything. ``make_vae``,
``make_objective`` and ``config_checks`` all ask ``refusals``; the tests run every
combination ``allowed`` lists.
"""

from __future__ import annotations

import itertools
from typing import NamedTuple

from vae_jax.model import hierarchy, posteriors, priors
from vae_jax.model.contract import Capabilities

OBJECTIVES = ("elbo", "iwae")
KL_ESTIMATORS = ("analytic", "mc")
GRADIENT_ESTIMATORS = ("reparameterization", "stl", "dreg")
ARCHITECTURES = ("mlp", "conv")


class Combination(NamedTuple):
    """One choice of every part; ``num_layers`` is ``1 + len(model.upper_latent_dims)``."""

    prior: str = "standard_normal"
    posterior: str = "gaussian"
    num_layers: int = 1
    inference: str = "bottom_up"
    architecture: str = "mlp"
    objective: str = "elbo"
    kl: str = "analytic"
    gradient_estimator: str = "reparameterization"
    free_bits: float = 0.0  # 0: off


class Refusal(NamedTuple):
    """Why a combination is refused: ``field=value`` and the reason.

    ``reason`` may name other fields as ``{field.name}`` (replaced by ``field.name=value``
    from ``others``) and the refused field as ``{field}``.
    """

    field: str
    value: object
    reason: str
    others: tuple[tuple[str, object], ...] = ()

    def message(self, *, qualified: bool = True) -> str:
        """One line: with config field names (``objective.kl``) or the core's keyword names
        (``kl``) when ``qualified`` is False."""

        def name(field: str) -> str:
            return field if qualified else field.rpartition(".")[2]

        text = self.reason.replace("{field}", name(self.field))
        for field, value in self.others:
            text = text.replace("{" + field + "}", f"{name(field)}={value!r}")
        return f"{name(self.field)}={self.value!r} {text}"


def posterior_capabilities(posterior: str, num_layers: int) -> Capabilities:
    """Capabilities of ``q(z|x)`` over all of ``z``: the family's for one layer; a
    hierarchy's density is a product over layers, known at any ``z`` when its first layer's
    is, never one Gaussian nor factorized over dimensions."""
    family = posteriors.CAPABILITIES[posterior]
    if num_layers == 1:
        return family
    return Capabilities(density_everywhere=family.density_everywhere)


def prior_capabilities(prior: str, num_layers: int) -> Capabilities:
    """Capabilities of ``p(z)``: the prior's for one layer; a hierarchy's top-down product
    is neither one Gaussian nor factorized over dimensions."""
    own = priors.CAPABILITIES[prior]
    return own if num_layers == 1 else Capabilities(density_everywhere=own.density_everywhere)


def top_layer_capabilities(posterior: str, num_layers: int) -> Capabilities:
    """Capabilities of the top layer's posterior: the family's for one layer, a Gaussian
    above ``z_1`` in a hierarchy (the family is ``z_1``'s)."""
    return posteriors.CAPABILITIES[posterior if num_layers == 1 else "gaussian"]


def closed_form_kl(q: Capabilities, p: Capabilities) -> bool:
    """Whether ``KL(q || p)`` has a closed form: both one diagonal Gaussian."""
    return q.diagonal_gaussian and p.diagonal_gaussian


def kl_per_dimension(q: Capabilities, p: Capabilities) -> bool:
    """Whether the KL has a value per latent dimension: both factorize over dimensions."""
    return q.per_dimension and p.per_dimension


def _lacking(c: Combination, q: Capabilities, upper_latent_dims: tuple) -> tuple[str, object]:
    """The part that takes a closed form (or a KL per dimension) away, as a field."""
    if c.num_layers > 1:
        return ("model.upper_latent_dims", tuple(upper_latent_dims) or (1,) * (c.num_layers - 1))
    if q.diagonal_gaussian:
        return ("model.prior", c.prior)
    return ("model.posterior", c.posterior)


def model_refusals(prior: str, posterior: str, num_layers: int) -> list[Refusal]:
    """What is undefined about the model alone (no objective yet)."""
    top = top_layer_capabilities(posterior, num_layers)
    if priors.MIXES_POSTERIORS[prior] and not top.density_everywhere:
        return [
            Refusal(
                "model.posterior",
                posterior,
                "does not combine with {model.prior}: "
                f"{prior!r} needs q's density at any z (it is a mixture of the top layer's "
                f"posteriors), which {posterior!r} does not have",
                (("model.prior", prior),),
            )
        ]
    return []


def estimator_refusals(objective: str, kl: str, gradient_estimator: str) -> list[Refusal]:
    """An estimator outside the bound it is defined for."""
    field = "objective.gradient_estimator"
    if gradient_estimator == "stl" and (objective != "elbo" or kl != "mc"):
        return [Refusal(field, "stl", "applies to the elbo objective with kl='mc'")]
    if gradient_estimator == "dreg" and objective != "iwae":
        return [Refusal(field, "dreg", "applies to the iwae objective")]
    return []


def refusals(c: Combination, *, upper_latent_dims: tuple[int, ...] = ()) -> list[Refusal]:
    """Every reason ``c`` is undefined, most basic first; empty when it works.

    ``upper_latent_dims`` only words the messages of a hierarchy (its layers' sizes; one
    unit each when not given).
    """
    found = model_refusals(c.prior, c.posterior, c.num_layers)
    found += estimator_refusals(c.objective, c.kl, c.gradient_estimator)
    q = posterior_capabilities(c.posterior, c.num_layers)
    p = prior_capabilities(c.prior, c.num_layers)
    lacking = _lacking(c, q, upper_latent_dims)
    which = "{" + lacking[0] + "}"
    if c.objective == "elbo" and c.kl == "analytic" and not closed_form_kl(q, p):
        found.append(
            Refusal(
                "objective.kl",
                "analytic",
                f"has no closed form for {which}; set {{field}}='mc'",
                (lacking,),
            )
        )
    if c.free_bits > 0 and not kl_per_dimension(q, p):
        found.append(
            Refusal(
                "objective.free_bits",
                c.free_bits,
                f"needs a KL per latent dimension, which {which} does not have; set it to 0.0",
                (lacking,),
            )
        )
    if c.gradient_estimator in ("stl", "dreg") and not q.density_everywhere:
        found.append(
            Refusal(
                "objective.gradient_estimator",
                c.gradient_estimator,
                "needs q's density at any z, which {model.posterior} does not have; use "
                "'reparameterization'",
                (("model.posterior", c.posterior),),
            )
        )
    return found


def all_combinations(num_upper_layers: int = 1):
    """Every combination of the parts' names (hierarchies with ``num_upper_layers`` layers
    above ``z_1``), free bits off (0) and on (0.5), allowed or not."""
    layer_choices = [(1, "bottom_up")] + [
        (1 + num_upper_layers, inference) for inference in hierarchy.INFERENCE
    ]
    for prior, posterior, (layers, inference), arch, objective, kl, estimator, bits in (
        itertools.product(
            priors.PRIORS, posteriors.POSTERIORS, layer_choices, ARCHITECTURES, OBJECTIVES,
            KL_ESTIMATORS, GRADIENT_ESTIMATORS, (0.0, 0.5),
        )
    ):  # fmt: skip
        if objective == "iwae" and (kl != "mc" or bits):
            continue  # the IWAE bound has no KL term: one entry, kl and free bits unused
        yield Combination(prior, posterior, layers, inference, arch, objective, kl, estimator, bits)


def allowed(num_upper_layers: int = 1) -> list[Combination]:
    """The combinations that work."""
    return [c for c in all_combinations(num_upper_layers) if not refusals(c)]
