"""Early stopping on the validation ELBO, with the rule of the VampPrior code.

After every epoch ``e`` (from 1): if the validation ELBO beats the best so far, the epoch
becomes the best and the count of epochs since it restarts at 0; otherwise the count
grows by one, except during the KL warm-up (``e < kl_warmup_epochs``), where it stays 0.
Training stops once the count exceeds ``patience`` (``e > args.early_stopping_epochs`` in
``experiment.py`` / ``density_estimation.py``). The state is a function of the metrics
records alone (``replay``), so a resumed run continues the count where it was: nothing
about it is stored beside the records.
"""

from __future__ import annotations

import dataclasses
import math

IMPROVED, WAITING, STOP = "improved", "waiting", "stop"


@dataclasses.dataclass
class EarlyStopping:
    """The count of one run. ``patience`` 0 switches it off (``update`` never stops)."""

    patience: int
    kl_warmup_epochs: int = 0
    best_epoch: int = 0
    best_step: int = 0
    best_elbo: float = -math.inf
    since_best: int = 0

    @property
    def enabled(self) -> bool:
        return self.patience > 0

    @property
    def stopped(self) -> bool:
        return self.enabled and self.since_best > self.patience

    def update(self, epoch: int, validation_elbo: float, step: int = 0) -> str:
        """Takes the validation ELBO of epoch ``epoch`` (ending at global ``step``);
        returns IMPROVED, WAITING or STOP."""
        if validation_elbo > self.best_elbo:
            self.best_epoch, self.best_step = epoch, step
            self.best_elbo, self.since_best = validation_elbo, 0
            return IMPROVED
        self.since_best += 1
        if epoch < self.kl_warmup_epochs:
            self.since_best = 0
        return STOP if self.stopped else WAITING

    def summary(self) -> dict:
        """What the report records."""
        return {
            "patience": self.patience,
            "best_epoch": self.best_epoch,
            "best_step": self.best_step,
            "best_validation_elbo": self.best_elbo,
            "epochs_since_best": self.since_best,
            "stopped_early": self.stopped,
        }

    @classmethod
    def replay(cls, records: list[dict], *, patience: int, kl_warmup_epochs: int = 0):
        """The state after the epochs of ``records`` (a run's metrics, in order)."""
        state = cls(patience, kl_warmup_epochs)
        for record in records:
            if "validation/elbo" in record:
                state.update(
                    int(record["epoch"]), float(record["validation/elbo"]), int(record["step"])
                )
        return state
