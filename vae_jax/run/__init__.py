"""What runs need and the model does not.

The run directory (``files``: every file name, JSON I/O, data fingerprints; ``directory``:
``RunDirectory``; ``lock``; ``checkpointing``; ``metrics_log`` and TensorBoard events;
``reports``: the training part of report.json; ``loading``: ``load_run``), the run
``manifest``, ``runtime`` settings, the entry points' ``cli`` helpers, ``progress`` and the
devices (``parallel``).

Training writes the run directory and evaluation, reproduction and sweeps read it; nothing
here decides training policy (when to save, what is non-finite).
"""
