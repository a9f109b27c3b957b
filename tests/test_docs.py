"""The docs are part of the product: the site builds with ``mkdocs build --strict``, and every ``bash`` block in
docs/*.md and README.md carries a marker saying how it is tested, on the line before the fence:

- ``<!-- docs-test: run OVERRIDES -->``: every command runs (from the repository root), with OVERRIDES appended to each
  Hydra command (``train.py ...`` / ``compresslab train ...``); slow.
- ``<!-- docs-test: check -->``: every Hydra command composes with our config (sweeps at their first value) and every
  ``compresslab <command>`` line parses with the CLI's own parser; shell lines (pip, sbatch, bash) are skipped.
- ``<!-- docs-test: skip REASON -->``: not runnable here, with the reason (a cluster, a user's own folder).

So a documented command whose override, group or flag no longer exists fails CI.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

PAGES = sorted((REPO / "docs").glob("*.md")) + [REPO / "README.md"]
FENCE = re.compile(r"^(?:<!-- docs-test: (?P<kind>run|check|skip)(?P<arg>[^>]*?)\s*-->\n)?```bash\n(?P<body>.*?)^```",
                   re.M | re.S)


def blocks() -> list[tuple[str, str, str, str]]:
    out = []
    for page in PAGES:
        text = page.read_text()
        for i, m in enumerate(FENCE.finditer(text)):
            out.append((f"{page.name}#{i + 1}", m.group("kind") or "", (m.group("arg") or "").strip(), m.group("body")))
    return out


def commands(body: str) -> list[list[str]]:
    """The block's commands as argument lists: comments dropped, continuations joined, split at && ; | (a line
    that is prose with `|` between alternatives gives pieces that are not commands; those are ignored)."""
    body = re.sub(r"\\\n", " ", body)
    out = []
    for line in body.splitlines():
        lex = shlex.shlex(line, posix=True, punctuation_chars="&|;")  # not < >: <run> is a placeholder
        lex.whitespace_split, lex.commenters = True, "#"
        cmd: list[str] = []
        for tok in list(lex) + [";"]:
            if tok in ("&&", "||", "|", ";", "&"):
                if cmd:
                    out.append(cmd)
                cmd = []
            elif cmd or not re.match(r"^[A-Z_][A-Z0-9_]*=", tok):  # VAR=value before a command is its environment
                cmd.append(tok)
    return out


def hydra_overrides(cmd: list[str]) -> list[str] | None:
    """The overrides of a Hydra command (``python train.py ...``, ``compresslab train ...``), else None."""
    exe = [Path(c).name for c in cmd[:2]]
    if exe[:1] in (["python"], ["python3"]) and len(cmd) > 1 and Path(cmd[1]).name == "train.py":
        args = cmd[2:]
    elif exe[:1] == ["compresslab"] and cmd[1:2] == ["train"]:
        args = cmd[2:]
    else:
        return None
    return [a for a in args if a not in ("-m", "--multirun", "...") and not a.endswith("=...")]


def cli_args(cmd: list[str]) -> list[str] | None:
    if cmd and Path(cmd[0]).name == "compresslab" and cmd[1:2] != ["train"]:
        return cmd[1:]
    return None


def test_every_bash_block_says_how_it_is_tested():
    unmarked = [where for where, kind, _, _ in blocks() if not kind]
    assert not unmarked, f"bash blocks without a <!-- docs-test: run|check|skip --> marker: {unmarked}"
    unexplained = [where for where, kind, arg, _ in blocks() if kind == "skip" and len(arg) < 10]
    assert not unexplained, f"skipped blocks must say why: {unexplained}"


def _compose(overrides: list[str]):
    from hydra import compose, initialize_config_dir
    from hydra.core.override_parser.overrides_parser import OverridesParser

    import compresslab.config  # noqa: F401  (the ${model_min_crop:} resolver)
    from compresslab.conf import CONF_DIR

    first = []
    for o in OverridesParser.create().parse_overrides(overrides):  # a sweep composes at its first value
        first.append(f"{o.get_key_element()}={next(o.sweep_string_iterator())}" if o.is_sweep_override()
                     else o.input_line)
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        return compose(config_name="train", overrides=first, return_hydra_config=True)


CHECKED = [b for b in blocks() if b[1] in ("check", "run")]


def problems(where: str, body: str) -> tuple[int, list[str]]:
    """(commands checked, what is wrong with them): Hydra commands compose, compresslab commands parse."""
    from compresslab.cli import build_parser

    seen, bad = 0, []
    for cmd in commands(body):
        overrides = hydra_overrides(cmd)
        if overrides is not None:
            seen += 1
            try:
                _compose(overrides)
            except Exception as e:  # noqa: BLE001 - the message names the broken override
                bad.append(f"{where}: `{shlex.join(cmd)}` does not compose: {type(e).__name__}: {e}")
            continue
        args = cli_args(cmd)
        if args is not None:
            seen += 1
            try:
                build_parser().parse_args(args)
                if args[0] == "pipeline":  # its own flags, and the recipe must exist
                    from compresslab.drivers import pipeline

                    pipeline.load_recipe(pipeline.build_parser().parse_args(args[1:]).recipe)
            except SystemExit:
                bad.append(f"{where}: `{shlex.join(cmd)}` is refused by the CLI's parser")
            except Exception as e:  # noqa: BLE001 - a recipe that does not load, named
                bad.append(f"{where}: `{shlex.join(cmd)}`: {type(e).__name__}: {e}")
    return seen, bad


@pytest.mark.parametrize("where,kind,arg,body", CHECKED, ids=[b[0] for b in CHECKED])
def test_documented_commands_compose_and_parse(where, kind, arg, body):
    seen, bad = problems(where, body)
    assert seen, f"{where}: a checked block with no train.py or compresslab command; mark it skip with a reason"
    assert not bad, "\n".join(bad)


def test_the_check_catches_a_stale_override_and_a_stale_flag(capsys):
    seen, bad = problems("example", "python train.py model=no_such_model lambda=0.01  # a removed model\n"
                                    "compresslab rd a.json --no-such-flag && echo done\n"
                                    "COMPRESSLAB_DATA=/d compresslab evaluate last.ckpt --out e.json\n")
    assert seen == 3 and len(bad) == 2, bad
    assert "model=no_such_model" in bad[0] and "--no-such-flag" in bad[1]


RUN = [b for b in blocks() if b[1] == "run"]


@pytest.mark.slow
@pytest.mark.parametrize("where,kind,arg,body", RUN, ids=[b[0] for b in RUN])
def test_documented_commands_run_at_smoke_scale(where, kind, arg, body, data_root, tmp_path):
    env = {**os.environ, "WANDB_MODE": "offline", "PYTHONWARNINGS": "ignore"}
    for i, cmd in enumerate(commands(body)):
        if hydra_overrides(cmd) is not None:
            cmd = cmd + shlex.split(arg) + [f"hydra.run.dir={tmp_path / f'run{i}'}", f"paths.output_dir={tmp_path}"]
        if cmd[0] == "python" or cmd[0].endswith("/python"):
            cmd = [sys.executable, *cmd[1:]]
        elif cmd[0].startswith(".venv/bin/"):
            cmd = [str(Path(sys.executable).with_name(Path(cmd[0]).name)), *cmd[1:]]
        r = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
        assert r.returncode == 0, f"{where}: `{shlex.join(cmd)}` failed:\n{(r.stdout + r.stderr)[-3000:]}"


def test_the_site_builds_strict(tmp_path):
    mkdocs = Path(sys.executable).with_name("mkdocs")
    if not mkdocs.exists() and not shutil.which("mkdocs"):
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("mkdocs is not installed: pip install -e '.[docs]'")
        pytest.skip("mkdocs is not installed: pip install -e '.[docs]'")
    r = subprocess.run([str(mkdocs if mkdocs.exists() else "mkdocs"), "build", "--strict", "-q", "-d",
                        str(tmp_path / "site")], cwd=REPO, capture_output=True, text=True, timeout=600,
                       env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "CompressLabModel" in (tmp_path / "site" / "api" / "index.html").read_text()  # the API page rendered
