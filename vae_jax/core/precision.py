"""Numerical precision of the networks' matrix products (mixed precision).

``compute_dtype="bfloat16"`` runs every dense and convolution product of the encoder and
decoder on bfloat16 operands with float32 accumulation and a float32 result: the
parameters, the optimizer state, biases, activations between layers and every
log-probability, KL, log-sum-exp and reduction over pixels stay float32 (the usual mixed
precision of accelerator training; Micikevicius et al., 2018). ``"float32"`` leaves the
layers exactly as Flax builds them.

``MATMUL_PRECISIONS`` are the values of ``runtime.matmul_precision``, JAX's
``jax_default_matmul_precision`` for float32 products: ``"highest"`` is true float32
everywhere; ``"default"`` lets the backend choose (one bfloat16 pass on TPUs, TF32 on recent
NVIDIA GPUs; full float32 on CPUs).
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp

COMPUTE_DTYPES = ("float32", "bfloat16")
MATMUL_PRECISIONS = ("highest", "high", "default")


def check_compute_dtype(compute_dtype: str) -> str:
    if compute_dtype not in COMPUTE_DTYPES:
        raise ValueError(f"compute_dtype={compute_dtype!r}; choose one of {COMPUTE_DTYPES}")
    return compute_dtype


def _cast_operands(compute_dtype, inputs, kernel, bias=None, dtype=None):
    """Flax's ``promote_dtype`` hook: inputs and kernel to the compute dtype, the bias kept
    float32 (it is added to the float32 accumulator)."""
    del dtype
    return inputs.astype(compute_dtype), kernel.astype(compute_dtype), bias


def _product(a, b, subscripts):
    return jnp.einsum(subscripts, a, b, preferred_element_type=jnp.float32)


@functools.cache
def mixed_matmul(compute_dtype: str):
    """``x @ w`` (``x``: ``(..., in)``, ``w``: ``(in, out)``, both float32) computed from
    ``compute_dtype`` operands into float32, with a VJP whose two products (input and weight
    gradients) also take ``compute_dtype`` operands, the cotangent rounded like the
    activations, and return float32. (JAX's own transpose would multiply the float32
    cotangent by the low-precision operand, i.e. the backward pass in float32.)"""
    dtype = jnp.dtype(compute_dtype)

    @jax.custom_vjp
    def matmul(x, w):
        return _product(x.astype(dtype), w.astype(dtype), "...i,io->...o")

    def forward(x, w):
        x_low, w_low = x.astype(dtype), w.astype(dtype)
        return _product(x_low, w_low, "...i,io->...o"), (x_low, w_low)

    def backward(residuals, g):
        x_low, w_low = residuals
        g_low = g.astype(dtype)
        return _product(g_low, w_low, "...o,io->...i"), _product(x_low, g_low, "...i,...o->io")

    matmul.defvjp(forward, backward)
    return matmul


def _dense_dot_general(compute_dtype, lhs, rhs, dimension_numbers, precision=None, **unused):
    """``dot_general`` of ``nn.Dense`` (contracting the last axis of the inputs with the
    first of the kernel) through ``mixed_matmul``."""
    del precision, unused
    (lhs_contracting, rhs_contracting), batch = dimension_numbers
    if tuple(lhs_contracting) != (lhs.ndim - 1,) or tuple(rhs_contracting) != (0,) or any(batch):
        raise ValueError(f"not a dense layer's product: {dimension_numbers}")
    return mixed_matmul(compute_dtype)(lhs, rhs)


def layer_options(compute_dtype: str) -> dict[str, dict[str, Any]]:
    """Keyword arguments of ``nn.Dense``, ``nn.Conv`` and ``nn.ConvTranspose`` for a
    compute dtype, keyed by layer kind; empty for float32 (Flax's own layers).

    Dense layers run all three products of their forward and backward pass in the compute
    dtype (``mixed_matmul``). Convolutions take compute-dtype operands forward; their
    backward products are JAX's transposes, which multiply the float32 cotangent by the
    rounded operands (float32 arithmetic).
    """
    check_compute_dtype(compute_dtype)
    if compute_dtype == "float32":
        return {"dense": {}, "conv": {}, "conv_transpose": {}}
    promote = functools.partial(_cast_operands, jnp.dtype(compute_dtype))
    # Operands are already low precision: the product's precision is the backend's native
    # one for them, whatever runtime.matmul_precision says about float32 products.
    native = jax.lax.Precision.DEFAULT
    return {
        "dense": {"dot_general": functools.partial(_dense_dot_general, compute_dtype)},
        "conv": {
            "promote_dtype": promote,
            "conv_general_dilated": functools.partial(
                jax.lax.conv_general_dilated, preferred_element_type=jnp.float32
            ),
            "precision": native,
        },
        "conv_transpose": {
            "promote_dtype": promote,
            "preferred_element_type": jnp.float32,
            "precision": native,
        },
    }
