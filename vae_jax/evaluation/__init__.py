"""Evaluation: per-example bounds over whole splits, diagnostics, figures, reports."""
