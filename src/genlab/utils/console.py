"""What a run prints: the frameworks' lines that say nothing about the user's run are filtered
one by one, each by its module and its words, so every other warning still reaches the user.

Each filter names the release it was seen with; tests/test_console.py runs the real CLI and
fails when one of these lines comes back (or when a warning that matters goes missing).
"""

from __future__ import annotations

import logging
import re
import warnings

# Lightning 2.6's advertisements for its cloud products (litlogger, litmodels), logged at INFO
# by rank_zero_info whenever a Trainer is built without them.
TIP_LOGGER = "lightning.pytorch.utilities.rank_zero"
TIP_PREFIX = "💡 Tip: For seamless cloud"


class _DropTips(logging.Filter):
    """Drops Lightning's product tips from its rank-zero logger; keeps everything else."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(TIP_PREFIX)


_TIPS = _DropTips()


def quiet_framework_noise() -> None:
    """Filter the lines Lightning and torch print on every run that concern no run (idempotent):

    - torch 2.10+ deprecates `LeafSpec`, which Lightning 2.6's `utilities/_pytree.py` still
      builds on every batch transfer: a FutureWarning addressed to Lightning, not to the user;
    - Lightning's litlogger/litmodels tips.
    """
    warnings.filterwarnings(
        "ignore",
        message=re.escape("`isinstance(treespec, LeafSpec)` is deprecated"),
        category=FutureWarning,
        module=r"lightning\.pytorch\.utilities\._pytree\Z",
    )
    tips = logging.getLogger(TIP_LOGGER)
    if _TIPS not in tips.filters:
        tips.addFilter(_TIPS)


def expect_own_checkpoints(dirpath: str) -> None:
    """A continued run writes its checkpoints into its own, non-empty checkpoints folder on
    purpose: drop Lightning's ModelCheckpoint warning for that one folder (it still warns about
    any other non-empty folder a checkpoint callback is pointed at)."""
    warnings.filterwarnings(
        "ignore",
        message=re.escape(f"Checkpoint directory {dirpath} exists and is not empty."),
        category=UserWarning,
    )
