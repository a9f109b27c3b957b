"""The study's storage and its invariants: a storage URL checked (and a driver-less ``postgresql://`` pointed at
the installed driver) before anything opens it, the study opened with the workers' race retried, a search space
that cannot change under an existing study, and RUNNING trials that no live process holds failed and re-queued.
Every refusal is one line (a ``CompactHydraException``: Hydra prints its message without a traceback)."""

from __future__ import annotations

import logging
import time
import warnings
from datetime import datetime, timedelta
from typing import Any, List, Optional

import optuna
from hydra.errors import CompactHydraException
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState

log = logging.getLogger(__name__)


class SweepError(CompactHydraException, ValueError):
    """A sweep that cannot start as asked; Hydra prints the message alone."""


def masked(url: Optional[str]) -> str:
    if url is None:
        return "in memory"
    try:
        from sqlalchemy.engine import make_url

        return make_url(str(url)).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - not a SQLAlchemy URL
        return str(url)


def _importable(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def checked_url(url: str) -> str:
    """The URL the storage will open: malformed or driver-less URLs refused in one line; ``postgresql://`` (which
    SQLAlchemy 2.x maps to psycopg 3) rewritten to ``postgresql+psycopg2://`` where only psycopg2, the ``postgres``
    extra's driver, is installed."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    scheme = url.split(":", 1)[0]
    hint = ("PostgreSQL is postgresql://; " if scheme == "postgres" else "") + \
        "e.g. sqlite:///<sweep dir>/optuna.db or postgresql+psycopg2://user@host/db"
    try:
        parsed = make_url(url)
        dialect = parsed.get_dialect()
    except ArgumentError:
        raise SweepError(f"hydra.sweeper.storage={masked(url)!r} is not a database URL ({hint})") from None
    except NoSuchModuleError:
        raise SweepError(f"hydra.sweeper.storage={masked(url)!r}: {scheme!r} is no database SQLAlchemy knows "
                         f"({hint})") from None
    try:
        dialect.import_dbapi()
        return url
    except ImportError as e:
        missing = getattr(e, "name", None) or str(e)
    if parsed.drivername == "postgresql" and _importable("psycopg2"):
        fixed = parsed.set(drivername="postgresql+psycopg2").render_as_string(hide_password=False)
        log.warning("hydra.sweeper.storage: postgresql:// means the driver psycopg (3) to SQLAlchemy %s, which is "
                    "not installed; using psycopg2 (what the postgres extra installs): %s", _sqlalchemy_version(),
                    masked(fixed))
        return fixed
    raise SweepError(f"hydra.sweeper.storage={masked(url)!r} needs the Python driver {missing!r}, which is not "
                     f"installed (PostgreSQL: pip install -e '.[postgres]', then postgresql+psycopg2://...)")


def _sqlalchemy_version() -> str:
    import sqlalchemy

    return sqlalchemy.__version__


def open_study(url: Optional[str], study_name: Optional[str], sampler, directions: List[str],
               heartbeat_interval: int, grace_period: int, max_retry: int):
    """(storage, study). Workers that start together race to create the tables and the study: the loser retries
    and loads; a storage that stays unreachable is one line naming it."""
    if url is None:
        return None, optuna.create_study(study_name=study_name, sampler=sampler, directions=directions)
    for attempt in range(5):
        try:
            with warnings.catch_warnings():  # heartbeat and its callback carry Optuna's "experimental" mark
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                storage = optuna.storages.RDBStorage(
                    url, heartbeat_interval=heartbeat_interval, grace_period=grace_period,
                    heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=max_retry))
            return storage, optuna.create_study(study_name=study_name, storage=storage, sampler=sampler,
                                                directions=directions, load_if_exists=True)
        except ValueError as e:  # optuna's own refusals (e.g. directions that differ from the stored study's)
            raise SweepError(f"study {study_name} in {masked(url)}: {str(e).splitlines()[0]}") from None
        except Exception as e:  # noqa: BLE001 - sqlalchemy's IntegrityError/OperationalError of the race
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
            if attempt == 4:
                raise SweepError(f"cannot open study {study_name} in {masked(url)} after 5 tries: "
                                 f"{type(e).__name__}: {first}") from None
            log.warning("opening the study failed (%s: %s); retrying", type(e).__name__, first)
            time.sleep(1 + attempt)
    raise AssertionError("unreachable")


# -- RUNNING trials that no live process holds ----------------------------------------------------------------------

def fail_stale_trials(study: optuna.Study, storage, grace_period: int) -> None:
    """Optuna's fail_stale_trials, plus RUNNING trials that never had a heartbeat (a process that died between
    ``ask`` and its first beat, or a study written by an older sweeper) and started more than the grace period ago:
    failed and re-queued with their parameters, like a stale one."""
    optuna.storages.fail_stale_trials(study)
    if storage is None:
        return
    cutoff = datetime.now() - timedelta(seconds=grace_period)
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if t.datetime_start is None or t.datetime_start > cutoff or _has_heartbeat(storage, t._trial_id):
            continue
        try:
            if storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL):
                log.warning("trial %d was RUNNING without a heartbeat since %s: failed and re-queued", t.number,
                            t.datetime_start)
                RetryHeartbeatStaleTrialCallback(max_retry=_max_retry(storage))(study, storage.get_trial(t._trial_id))
        except Exception as e:  # noqa: BLE001 - another worker failed it first (UpdateFinishedTrialError)
            log.info("trial %d: %s", t.number, e)


def _max_retry(storage) -> Optional[int]:
    cb = storage.get_heartbeat_stale_trial_callback()
    return getattr(cb, "_max_retry", None)


def _has_heartbeat(storage, trial_id: int) -> bool:
    """Whether the trial has a heartbeat row (Optuna's RDB model; no public accessor)."""
    try:
        from optuna.storages._rdb import models

        session = storage.scoped_session()
        try:
            return models.TrialHeartbeatModel.where_trial_id(trial_id, session) is not None
        finally:
            session.close()
    except Exception:  # noqa: BLE001 - another storage: its own stale detection is all there is
        return True


def fail_and_requeue(study: optuna.Study, storage, trials: List[Any], why: str) -> None:
    """Trials this process asked for and could not finish (an error before or while launching): failed with the
    reason and re-queued at once, instead of sitting RUNNING until their heartbeat goes stale."""
    for t in trials:
        try:
            frozen = storage.get_trial(t._trial_id) if storage is not None else None
            if frozen is None or frozen.state != TrialState.RUNNING:
                continue
            t.set_user_attr("fail_reason", why[:500])  # on the failed trial; its retry starts without it
            if storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL):
                RetryHeartbeatStaleTrialCallback(max_retry=_max_retry(storage))(study, frozen)
                log.warning("trial %d failed before its job ran (%s): re-queued", t.number, why[:200])
        except Exception as e:  # noqa: BLE001 - the storage itself may be what failed; the heartbeat then ends it
            log.warning("trial %d could not be failed (%s); its heartbeat will fail it", t.number, e)
