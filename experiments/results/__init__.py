"""The results table of the VAE family (python -m experiments.results): one seed sweep per
model, each the default experiment with one part changed, written to docs/results.md."""
