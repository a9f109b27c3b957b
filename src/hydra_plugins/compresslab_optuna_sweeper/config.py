"""Structured configs of the sweeper, its samplers and its pruners, registered in Hydra's ConfigStore when Hydra
imports this ``hydra_plugins`` package. The keys are those of hydra-optuna-sweeper 1.3 (sampler, direction,
storage, study_name, n_trials, n_jobs, max_failure_rate, params, custom_search_space), so existing recipes compose
unchanged; pruner, heartbeat_interval, grace_period and max_retry are new."""


from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


@dataclass
class SamplerConfig:
    _target_: str = MISSING


@dataclass
class TPESamplerConfig(SamplerConfig):
    _target_: str = "optuna.samplers.TPESampler"
    seed: Optional[int] = None
    n_startup_trials: int = 10
    n_ei_candidates: int = 24
    multivariate: bool = False


@dataclass
class RandomSamplerConfig(SamplerConfig):
    _target_: str = "optuna.samplers.RandomSampler"
    seed: Optional[int] = None


@dataclass
class GPSamplerConfig(SamplerConfig):
    _target_: str = "optuna.samplers.GPSampler"
    seed: Optional[int] = None
    n_startup_trials: int = 10
    deterministic_objective: bool = False


@dataclass
class NSGAIISamplerConfig(SamplerConfig):
    _target_: str = "optuna.samplers.NSGAIISampler"
    seed: Optional[int] = None
    population_size: int = 50
    mutation_prob: Optional[float] = None
    crossover_prob: float = 0.9
    swapping_prob: float = 0.5


@dataclass
class GridSamplerConfig(SamplerConfig):
    """The grid is built from ``params`` at sweep time (choice, and range with a step)."""

    _target_: str = "optuna.samplers.GridSampler"
    seed: Optional[int] = None


@dataclass
class PrunerConfig:
    _target_: str = MISSING


@dataclass
class MedianPrunerConfig(PrunerConfig):
    _target_: str = "optuna.pruners.MedianPruner"
    n_startup_trials: int = 5      # trials that finish before any is pruned
    n_warmup_steps: int = 0        # steps of a trial before it can be pruned
    interval_steps: int = 1
    n_min_trials: int = 1


@dataclass
class SuccessiveHalvingPrunerConfig(PrunerConfig):
    _target_: str = "optuna.pruners.SuccessiveHalvingPruner"
    min_resource: Any = "auto"
    reduction_factor: int = 4
    min_early_stopping_rate: int = 0
    bootstrap_count: int = 0


@dataclass
class HyperbandPrunerConfig(PrunerConfig):
    _target_: str = "optuna.pruners.HyperbandPruner"
    min_resource: int = 1
    max_resource: Any = "auto"
    reduction_factor: int = 3
    bootstrap_count: int = 0


@dataclass
class OptunaSweeperConf:
    _target_: str = "hydra_plugins.compresslab_optuna_sweeper.sweeper.OptunaSweeper"
    _recursive_: bool = False          # the sweeper builds its sampler (once per trial) and passes the pruner on
    defaults: List[Any] = field(default_factory=lambda: ["_self_", {"sampler": "tpe"}, {"pruner": None}])
    sampler: Any = MISSING
    direction: Any = "minimize"        # or a list, e.g. [minimize, maximize] for (bpp, PSNR)
    storage: Optional[Any] = None      # sqlite:///<sweep dir>/optuna.db, postgresql://user@host/db, ...
    study_name: Optional[str] = None
    n_trials: int = 20                 # the study's target: finished (complete or pruned) trials, over all workers
    n_jobs: int = 1                    # trials asked and launched together (a parallel launcher runs them at once)
    max_failure_rate: float = 0.0
    params: Optional[Dict[str, str]] = None
    custom_search_space: Optional[str] = None  # "module.fn": fn(cfg, trial) suggests more parameters
    pruner: Any = None                 # hydra/sweeper/pruner=median | successive_halving | hyperband
    heartbeat_interval: int = 10       # seconds between a running trial's heartbeats (RDB storages)
    grace_period: int = 60             # a RUNNING trial without a heartbeat for this long is failed and retried
    max_retry: int = 3                 # retries of a trial whose worker died
    poll_interval: float = 5.0         # seconds between looks at a study whose last trials other workers run


cs = ConfigStore.instance()
cs.store(group="hydra/sweeper", name="optuna", node=OptunaSweeperConf, provider="compresslab_optuna_sweeper")
for name, node in {"tpe": TPESamplerConfig, "random": RandomSamplerConfig, "gp": GPSamplerConfig,
                   "nsgaii": NSGAIISamplerConfig, "grid": GridSamplerConfig}.items():
    cs.store(group="hydra/sweeper/sampler", name=name, node=node, provider="compresslab_optuna_sweeper")
for name, node in {"median": MedianPrunerConfig, "successive_halving": SuccessiveHalvingPrunerConfig,
                   "hyperband": HyperbandPrunerConfig}.items():
    cs.store(group="hydra/sweeper/pruner", name=name, node=node, provider="compresslab_optuna_sweeper")
