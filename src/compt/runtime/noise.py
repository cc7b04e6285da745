"""Library noise kept out of run logs: warnings and log lines that say nothing about the run.

Used by training (:mod:`compt.training.fit`) and by ``compt evaluate`` (:mod:`compt.inference.rerun`); it imports
nothing of the run driver.
"""

from __future__ import annotations

import logging
import warnings


class _DropAdverts(logging.Filter):
    """Drops Lightning's "💡 Tip: ... try installing litlogger" line, printed at every Trainer start."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("💡 Tip")


#: warnings that say nothing about the run (regular expressions matched at the start of the message)
KNOWN_NOISE = (
    # torchmetrics: evaluation sets are bounded (eval.max_samples), the buffer is small
    r"Metric `(Spearman|Pearson)Corrcoef` will save all targets and predictions",
    # torchmetrics: constant predictions; compt scores such a correlation as 0 (see README, metrics)
    r"The variance of predictions or target is close to zero",
    # Lightning 2.6 calling a torch.utils._pytree API that torch 2.13 deprecates
    r"`isinstance\(treespec, LeafSpec\)` is deprecated",
    # Lightning on resuming from a mid-epoch checkpoint (a stop signal's): compt's ResumeState re-positions the
    # training stream exactly (the stream is a function of seed and epoch), which Lightning cannot see
    r"You're resuming from a checkpoint that ended before the epoch ended",
    # Lightning, when an epoch has fewer batches than trainer.log_every_n_steps (few-shot: k=8 x 8 tasks / 32 =
    # 2 batches): it logs every log_every_n_steps *global* steps all the same, across epochs
    r"The number of training batches \(\d+\) is smaller than the logging interval",
)


def quiet_known_noise() -> None:
    """Keep run logs to what the run did: drop Lightning's advert and :data:`KNOWN_NOISE` (idempotent)."""
    log = logging.getLogger("pytorch_lightning.utilities.rank_zero")
    if not any(isinstance(f, _DropAdverts) for f in log.filters):
        log.addFilter(_DropAdverts())
    for message in KNOWN_NOISE:
        warnings.filterwarnings("ignore", message=message)
