"""Process-level settings a config asks for, applied before JAX starts computing."""

from __future__ import annotations

import os

import jax
from absl import logging

DETERMINISTIC_GPU_FLAG = "--xla_gpu_deterministic_ops=true"


def apply_runtime_config(config) -> None:
    """Sets JAX's float32 matmul precision (``runtime.matmul_precision``) and ``XLA_FLAGS``
    for deterministic GPU ops when ``runtime.deterministic_gpu_ops``.

    XLA reads its flags when the backend starts (the first computation), so entry points
    call this before anything else touches JAX. The manifest records both.
    """
    jax.config.update("jax_default_matmul_precision", config.runtime.matmul_precision)
    if config.runtime.deterministic_gpu_ops:
        flags = os.environ.get("XLA_FLAGS", "")
        if DETERMINISTIC_GPU_FLAG not in flags.split():
            os.environ["XLA_FLAGS"] = f"{flags} {DETERMINISTIC_GPU_FLAG}".strip()
            logging.info("XLA_FLAGS=%s", os.environ["XLA_FLAGS"])
