"""The search space: Hydra's override syntax (``choice``, ``range``, ``interval``, ``tag(log, …)``) as Optuna
distributions, and the rule that a study's space is fixed by its trials (a changed space is refused before any
trial is asked, in one line naming the study and a new study name)."""

from __future__ import annotations

import json
from typing import Any, Dict, List, Optional, Tuple

import optuna
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override, Transformer
from optuna.distributions import (BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution,
                                  distribution_to_json)

from hydra_plugins.compresslab_optuna_sweeper.storage import SweepError, masked

SPACE_ATTR = "search_space"   # study user attribute: the space the study was created with (name -> description)


# -- the search space: Hydra's override syntax -> Optuna distributions ---------------------------------------------

def distribution_from_override(override: Override) -> Any:
    """choice(...) -> categorical; range(a, b[, step]) -> int/float with a step; interval(a, b) -> int/float,
    log-scaled under tag(log, ...). A plain value is a fixed parameter (returned as its string)."""
    if not override.is_sweep_override():
        return override.get_value_element_as_str()
    value = override.value()
    if override.is_choice_sweep() or (override.is_range_sweep() and value.shuffle):
        return CategoricalDistribution(list(override.sweep_iterator(transformer=Transformer.encode)))
    if override.is_range_sweep():
        if any(isinstance(x, float) for x in (value.start, value.stop, value.step)):
            # Hydra's range excludes its stop; Optuna's high is inclusive
            return FloatDistribution(float(value.start), float(value.stop) - float(value.step), step=float(value.step))
        return IntDistribution(int(value.start), int(value.stop) - int(value.step), step=int(value.step))
    if override.is_interval_sweep():
        log_scale = "log" in value.tags
        if isinstance(value.start, int) and isinstance(value.end, int):
            return IntDistribution(value.start, value.end, log=log_scale)
        return FloatDistribution(float(value.start), float(value.end), log=log_scale)
    raise NotImplementedError(f"{override.input_line}: not a search space the Optuna sweeper supports")


def search_space(arguments: List[str]) -> Tuple[Dict[str, BaseDistribution], Dict[str, str], List[str]]:
    """(distributions, fixed params, other overrides such as deletions) from ``key=value`` strings."""
    space: Dict[str, BaseDistribution] = {}
    fixed: Dict[str, str] = {}
    rest: List[str] = []
    for override in OverridesParser.create().parse_overrides(arguments):
        if override.is_delete():
            rest.append(override.input_line)
            continue
        value = distribution_from_override(override)
        key = override.get_key_element()
        if isinstance(value, BaseDistribution):
            space[key] = value
            fixed.pop(key, None)
        else:  # a command-line value fixes a parameter of the recipe's space
            fixed[key] = value
            space.pop(key, None)
    return space, fixed, rest


def grid_choices(dist: BaseDistribution) -> List[Any]:
    if isinstance(dist, CategoricalDistribution):
        return list(dist.choices)
    if isinstance(dist, (IntDistribution, FloatDistribution)) and dist.step is not None:
        n = int(round((dist.high - dist.low) / dist.step)) + 1
        return [dist.low + i * dist.step for i in range(n)]
    raise ValueError(f"the grid sampler needs choice(...) or range(...) parameters, not {dist}")


# -- the search space is the study's, fixed at its first trial ------------------------------------------------------

def describe(dist: BaseDistribution) -> str:
    """A distribution in the override syntax it came from (for messages)."""
    if isinstance(dist, CategoricalDistribution):
        return f"choice({', '.join(map(str, dist.choices))})"
    if isinstance(dist, (IntDistribution, FloatDistribution)):
        text = f"interval({dist.low}, {dist.high})" if dist.step is None else \
            f"range({dist.low}, {dist.high}, step={dist.step}, inclusive)"
        return f"tag(log, {text})" if dist.log else text
    return str(dist)


def space_record(space: Dict[str, BaseDistribution], fixed: Dict[str, str]) -> Dict[str, Dict[str, str]]:
    rec = {k: {"distribution": distribution_to_json(v), "as": describe(v)} for k, v in space.items()}
    rec.update({k: {"fixed": str(v), "as": str(v)} for k, v in fixed.items()})
    return rec


def _from_trials(study: optuna.Study) -> Dict[str, Dict[str, str]]:
    """The space of a study written before the space was recorded: each parameter's distribution in its trials."""
    rec: Dict[str, Dict[str, str]] = {}
    for t in study.get_trials(deepcopy=False):
        for k, v in t.distributions.items():
            rec[k] = {"distribution": distribution_to_json(v), "as": describe(v)}
    return rec


def check_space(study: optuna.Study, url: Optional[str], space: Dict[str, BaseDistribution],
                fixed: Dict[str, str], custom: bool) -> None:
    """Refuse (one line, before any trial is asked) a search space that differs from the one the study's trials
    were drawn from: Optuna would fail mid-trial on a changed choice() and TPE would mix two problems. A study
    without trials takes the new space."""
    new = space_record(space, fixed)
    trials = study.get_trials(deepcopy=False)
    old = study.user_attrs.get(SPACE_ATTR)
    if trials and old is None:  # an older study: compare only what its trials show
        old = _from_trials(study)
        if custom:  # custom_search_space suggests parameters the command does not name
            old = {k: v for k, v in old.items() if k in new}
        new_cmp = {k: v for k, v in new.items() if "fixed" not in v}
    else:
        new_cmp = new
    if trials and old is not None:
        def same(a, b):
            return a is not None and b is not None and json.loads(json.dumps(a)) == json.loads(json.dumps(b))

        changed = [k for k in sorted(set(old) | set(new_cmp))
                   if not same({x: y for x, y in (old.get(k) or {}).items() if x != "as"} or None,
                               {x: y for x, y in (new_cmp.get(k) or {}).items() if x != "as"} or None)]
        if changed:
            what = "; ".join(f"{k}: {(old.get(k) or {}).get('as', 'absent')} -> {(new_cmp.get(k) or {}).get('as', 'absent')}"
                             for k in changed)
            name = study.study_name
            raise SweepError(
                f"study {name} ({masked(url)}, {len(trials)} trials) has another search space ({what}); a study's "
                f"space is fixed by its trials: start a new study, e.g. hydra.sweeper.study_name={name}_2, or "
                f"drop the change to continue this one")
    if old != new and study._storage is not None:
        study.set_user_attr(SPACE_ATTR, new)
