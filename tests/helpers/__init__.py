"""What tests share beside the fixtures of ``tests/conftest.py``.

``repo`` (the checkout, the environment of a subprocess), ``idx_data`` (generated IDX
files, damaged ones, a config reading them), ``runs`` (running entry points, killing them,
comparing runs, TensorBoard events), ``tiny`` (the ``tiny`` config with overrides, its
sizes, a padded batch, the objective from a config group), ``tiny_vae`` (the ``tiny`` VAE
built once per process, counting a jaxpr's draws), ``small_images`` (small image batches
for each likelihood), ``linear_gaussian`` (a VAE whose log-likelihood is known in closed
form), ``two_layer`` (a two-layer hierarchy whose log p(x) is a 2-d integral) and
``compositions`` (the combinations the compatibility table allows, built small).
"""
