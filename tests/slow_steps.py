"""A callback that makes training steps slow without using the CPU, for tests that must signal
a real training process while a step is in progress: added as
`+callbacks.slow._target_=slow_steps.SlowSteps` (tests/ on PYTHONPATH)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import lightning as L


class SlowSteps(L.Callback):
    """At the start of every training batch, writes the number of finished steps
    (`trainer.global_step`) to `out`, then, from step `from_step` on, sleeps `seconds`: a
    signal sent after `out` shows step s lands while step s is in progress."""

    def __init__(self, out: str, seconds: float, from_step: int = 0) -> None:
        self.out, self.seconds, self.from_step = Path(out), float(seconds), int(from_step)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        tmp = self.out.with_suffix(".tmp")
        tmp.write_text(str(trainer.global_step))
        os.replace(tmp, self.out)
        if trainer.global_step >= self.from_step:
            time.sleep(self.seconds)


class SelfSignal(L.Callback):
    """Sends this very process `signals` (signal numbers, in order, 0.1 s apart) at the start of
    training step `step`, so an in-process run is interrupted at a known point."""

    def __init__(self, step: int, signals: list[int]) -> None:
        self.step, self.signals, self.sent = int(step), [int(s) for s in signals], False

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.step and not self.sent:
            self.sent = True
            for signum in self.signals:
                os.kill(os.getpid(), signum)
                time.sleep(0.1)  # Python runs the handler before the next signal
