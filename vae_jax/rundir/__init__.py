"""A run's directory: its file names, JSON files, metrics log, checkpoints and loading.

Training writes these files and evaluation, reproduction and sweeps read them; nothing
here decides training policy (when to save, what is non-finite).
"""
