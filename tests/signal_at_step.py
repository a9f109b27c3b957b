"""A test callback that sends this process a real signal in the middle of a training step (inside backward's
preparation, where a pre-emption warning may land), at the step named by $SIGNAL_AT_STEP (unset: never)."""

import os
import signal

from lightning.pytorch.callbacks import Callback


class SignalAt(Callback):
    def __init__(self, name: str = "SIGINT"):
        self.sig = getattr(signal, name)
        self.sent = False

    def on_before_backward(self, trainer, pl_module, loss) -> None:
        at = os.environ.get("SIGNAL_AT_STEP")
        rank = os.environ.get("SIGNAL_RANK")  # only this rank receives it (DDP: the others learn it by agreement)
        if rank is not None and trainer.global_rank != int(rank):
            return
        if at and not self.sent and trainer.global_step == int(at):
            self.sent = True
            os.kill(os.getpid(), self.sig)
