"""The test suite. Its packages mirror the code: ``tests/<package>/test_<module>.py`` holds
a module's own tests (``tests/test_<module>.py`` for a module directly under ``vae_jax/``),
``tests/promises/`` the cross-cutting ones, ``tests/helpers/`` what tests share besides the
fixtures of ``conftest.py``."""
