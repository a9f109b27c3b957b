"""The Hydra application: ``compresslab train …`` (and the repository's ``train.py``, a thin wrapper over this).

Configs come from the package (``pkg://compresslab.conf``), so an installed wheel runs from any folder, with outputs
under the current one. A user's own config folders (``hydra.searchpath=[file:///my/conf]`` on the command line, or
``$COMPRESSLAB_CONF_PATH``) are searched *before* the built-in ones, so a user file named like a built-in
(``model/factorized.yaml``) is the one used; the run says so (``hydra_plugins.compresslab_searchpath``)."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

import compresslab.config  # noqa: F401  (registers ${model_min_crop:} before Hydra resolves the config)
from compresslab.conf import CONFIG_MODULE

CONF_PATH_ENV = "COMPRESSLAB_CONF_PATH"

if "SLURM_JOB_ID" in os.environ:
    # A SLURM job (submitit) imports this module when it unpickles its task, seconds before training can save: a
    # pre-emption warning in between would end the job by USR1's default action (FAILED, not requeued). Recorded from
    # here on, it is honoured once the run can act on it (compresslab.training.signals / .stopping).
    from compresslab.training.signals import DEFAULT_SIGNALS as _SIGNALS, install as _install

    _install(_SIGNALS)
log = logging.getLogger("compresslab.app")


@hydra.main(version_base="1.3", config_path=f"pkg://{CONFIG_MODULE}", config_name="train")
def _main(cfg: DictConfig):
    from compresslab.io.checkpoints import CheckpointError
    from compresslab.errors import ConfigError
    from compresslab.data.images import DataLayoutError

    for line in shadowed_configs():
        log.info(line)
    try:
        check_added_keys(cfg)
        # imported here so `--help` and config errors come back fast, and inside the try: importing the models
        # loads $COMPRESSLAB_PLUGINS, whose broken model is one line (ModelContractError is a ConfigError)
        from compresslab.training.run import run

        result = run(cfg)
    except (ConfigError, CheckpointError, DataLayoutError) as e:
        # config: an impossible combination, caught before any work; checkpoint: init_from / ckpt_path /
        # model.base_ckpt missing, corrupt, unsafe or of another model, or a checkpoint write that failed (full
        # disk: the previous one is intact); data: the dataset's layout is missing. One line, no traceback.
        kind = "config" if isinstance(e, ConfigError) else "data" if isinstance(e, DataLayoutError) else "checkpoint"
        line = f"{kind} error: {e}"
        if _in_multirun():  # sys.exit would end the whole sweep; a failed job is recorded and the others go on
            print(line, file=sys.stderr, flush=True)
            raise RuntimeError(line) from None
        _remove_unstarted_folder()
        sys.exit(line)
    if result.get("interrupted"):
        if _in_multirun():  # a failed job of the sweep (recorded, the others go on); the same command continues it
            raise RuntimeError(f"interrupted at step {result['global_step']} by {', '.join(result['signals'])}: the "
                               f"same command continues it from {result['last_ckpt']}")
        sys.exit(130)  # the shell's code for a run ended by a signal; the resume command is printed above
    print(f"\nrun directory: {result['run_dir']}\nlast checkpoint: {result['last_ckpt']}")
    return result["objective"]  # what a sweeper (hparams_search=...) optimises; None without cfg.objective


def check_added_keys(cfg: DictConfig, overrides: list[str] | None = None) -> None:
    """``+key=value`` adds a key the config lacks; outside the namespaces declared for additions (``additions:`` in
    conf/train.yaml) that is almost always a typo (+lamda=0.01 trains at the default lambda), so it is refused,
    naming the nearest known key."""
    import difflib

    from omegaconf import OmegaConf

    from compresslab.errors import ConfigError

    if overrides is None:
        from hydra.core.hydra_config import HydraConfig

        overrides = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
    allowed = [str(a) for a in (cfg.get("additions") or [])]
    added = [o.lstrip("+").split("=", 1)[0] for o in overrides if o.startswith("+") and "=" in o]
    added = [k for k in added if "/" not in k and not any(k == a or k.startswith(a + ".") for a in allowed)]
    if not added:
        return
    plain = OmegaConf.to_container(cfg, resolve=False)

    def keys(node, prefix=""):
        for k, v in (node.items() if isinstance(node, dict) else ()):
            yield f"{prefix}{k}"
            yield from keys(v, f"{prefix}{k}.")

    known = [k for k in keys(plain) if not any(k == a or k.startswith(a + ".") for a in added)]
    key = added[0]
    near = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    hint = f" (did you mean {near[0]}={overrides_value(overrides, key)}?)" if near else ""
    raise ConfigError(f"+{key}: the config has no key {key!r}{hint}; set an existing key without '+', or put keys of "
                      f"your own under {', '.join(a + '.*' for a in allowed if a != 'hydra')}")


def overrides_value(overrides: list[str], key: str) -> str:
    for o in overrides:
        if o.lstrip("+").split("=", 1)[0] == key:
            return o.split("=", 1)[1]
    return "..."


def _remove_unstarted_folder() -> None:
    """A start refused before the run began (a bad key, a missing dataset) leaves no folder: Hydra made it and wrote
    only its own record (.hydra/, train.log) into it. A folder holding a run's files is never touched here."""
    import shutil

    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    if run_dir.is_dir() and {p.name for p in run_dir.iterdir()} <= {".hydra", "train.log"}:
        shutil.rmtree(run_dir, ignore_errors=True)


def _in_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def shadowed_configs(choices: dict[str, str] | None = None, user_paths: list[str] | None = None) -> list[str]:
    """One line per config group option that a user folder provides under a built-in's name: which file was used."""
    from compresslab.conf import CONF_DIR

    if choices is None:
        from hydra.core.hydra_config import HydraConfig

        choices = dict(HydraConfig.get().runtime.choices) if HydraConfig.initialized() else {}
    if user_paths is None:
        user_paths = [p for p in os.environ.get(CONF_PATH_ENV, "").split(os.pathsep) if p]
    lines = []
    for group, option in choices.items():
        if not option or group.startswith("hydra/") or group == "hydra":
            continue
        built_in = CONF_DIR / group / f"{option}.yaml"
        for folder in user_paths:
            mine = Path(folder.removeprefix("file://")).expanduser() / group / f"{option}.yaml"
            if mine.is_file():
                lines.append(f"config {group}={option}: using {mine}" + (
                    f" (yours; it shadows the built-in {built_in.relative_to(CONF_DIR.parent)})" if built_in.is_file()
                    else ""))
                break
    return lines


def user_conf_paths(argv: list[str]) -> list[str]:
    """The folders of a ``hydra.searchpath=[...]`` command-line override, in order (Hydra's own override parser)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    for arg in argv:
        if arg.lstrip("+~").startswith("hydra.searchpath="):
            value = OverridesParser.create().parse_override(arg).value()
            return [str(v) for v in (value if isinstance(value, list) else [value])]
    return []


def main(argv: list[str] | None = None) -> None:
    """Run the Hydra app on ``argv`` (default: the process's own arguments)."""
    args = sys.argv[1:] if argv is None else list(argv)
    if not any(a in ("-h", "--help", "--cfg", "-c", "--info", "-i") or a.startswith("--cfg") for a in args):
        # before Hydra, torch and Lightning load (seconds): a SLURM warning or Ctrl-C during start-up is recorded
        # and honoured once training can save (compresslab.training.signals); the run installs the configured set
        from compresslab.training.signals import DEFAULT_SIGNALS, install

        install(DEFAULT_SIGNALS)
    # Hydra appends hydra.searchpath after the built-in configs, so a user's model/factorized.yaml would lose to ours;
    # the search-path plugin puts these folders first (the override stays on the command line, so it is recorded).
    paths = user_conf_paths(args)
    if paths:
        known = [p for p in os.environ.get(CONF_PATH_ENV, "").split(os.pathsep) if p]
        os.environ[CONF_PATH_ENV] = os.pathsep.join(dict.fromkeys(paths + known))
    sys.argv = [sys.argv[0] if argv is None else "compresslab train", *args]
    _main()
