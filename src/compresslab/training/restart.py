"""A correction to Lightning's restore of a checkpoint written at the last batch of an epoch (our stop on a signal
saves in ``on_train_batch_end``, and at an epoch's end that is the last batch).

Lightning 2.6's ``_FitLoop.reset`` counts the restored epoch as processed and completed, as it should, but leaves the
loop's restart stage at "mid-epoch" for the first iteration, which is already the next epoch: ``on_advance_start``
then neither counts that epoch as started nor calls ``on_train_epoch_start``. The epoch counters lag by one from
there on, and a second stop at an epoch's end writes a checkpoint whose counters say "no epoch in progress" although
its batch counter says "last batch": restored, Lightning runs an extra, empty epoch (its end-of-epoch work, e.g. a
validation that draws random numbers) and every later loss differs from the uninterrupted run's."""

from __future__ import annotations

from lightning.pytorch.callbacks import Callback


class EpochEndRestart(Callback):
    """Ends the "mid-epoch" restart stage when the restored epoch was complete, so the first epoch of the continued
    run starts like any other (counted, with its hooks). Runs in ``on_train_start``: after the loops' ``reset``,
    before the first epoch starts."""

    def on_train_start(self, trainer, pl_module) -> None:
        loop = trainer.fit_loop
        epoch_loop = loop.epoch_loop
        if (getattr(loop, "restarted_mid_epoch", False) and getattr(epoch_loop, "restarted_on_train_batch_end", False)
                and epoch_loop.batch_progress.is_last_batch):
            loop.reset_restart_stage()
