"""The documentation cannot rot: the site builds with warnings as errors, and every genlab
command shown in README.md and docs/*.md is parsed and composed with the real configs (an
unknown option fails, naming the command and its page); the code blocks marked
`<!-- test: run -->` run end to end at tiny budgets as real subprocesses.

Marker (an HTML comment on the line before a code block): `<!-- test: run -->` runs the
block's commands (tiny budgets appended) and checks the result. There is no way to exempt a
command from composing: one that needs the reader's own config files (hydra.searchpath)
composes against the files the page itself shows, written by the `tiny` fixture.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import CONF, FAST, REPO, make_cfg, run_cli
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf, open_dict

import genlab.compare
from genlab.train import train

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
# the entry points: Hydra CLIs (a module with a primary config conf/<name>.yaml) and compare
HYDRA_CLIS = sorted(p.stem for p in (REPO / "src" / "genlab" / "conf").glob("*.yaml"))
ENTRY_POINTS = (*HYDRA_CLIS, "compare")
FENCE = re.compile(r"^(\s*)(```|~~~)")
MARKER = re.compile(r"^<!--\s*test:\s*(run)\s*-->\s*$")
# a command at the start of a line, or alone in an inline code span of the prose
COMMAND = re.compile(r"^(python -m genlab\.\w+|genlab-\w+|make train)\b")
INLINE = re.compile(r"`((?:python -m genlab\.\w+|genlab-\w+|make train)(?:\s[^`]*)?)`")

# Placeholders the pages use, and what each becomes. Anything else that looks like a
# placeholder (<...>, an ellipsis, an upper-case word as a path) fails the test.
CKPT_VALUE = re.compile(
    r"^(logs/train/runs/<run>/checkpoints/last\.ckpt|(RUN|RUN_DIR)/checkpoints/last\.ckpt|"
    r"\.\.\.|PATH|<\w+_run>|GAN\.ckpt|CLF\.ckpt|CLF_RUN/checkpoints/best-\.\.\.\.ckpt|"
    r"<classifier_run>/checkpoints/last\.ckpt)$"
)
RUN_VALUE = re.compile(r"^(logs/train/runs/<run>|RUN|RUN_DIR)$")
SWEEP_VALUE = re.compile(r"^(logs/train/multiruns/<time>|logs/train/runs/<run>|RUN|RUN_DIR)$")
LEFTOVER = re.compile(r"<[^>]*>|\.\.\.|\b(RUN|RUN_DIR|CLF|PATH)\b|/path/to/")
# fields whose value is a path the command reads (the rest, e.g. data.path, is only a string)
CKPT_KEYS = ("ckpt_path", "classifier_ckpt")
OWN_CONF = "/path/to/my_conf"

# appended to the commands that run: a few batches, one epoch, the CSV logger only
TINY = [
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
    "logger=csv",
    "~callbacks.rich_progress_bar",
]


@dataclass
class Command:
    """One genlab command shown in a page: where, what, and how the docs mark it."""

    page: str
    line: int
    text: str
    module: str
    args: list[str]
    marker: str | None = None
    multirun: bool = False
    flags: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return f"{self.page}:{self.line}: `{self.text}`"


def parse_command(text: str, page: str, line: int, marker=None) -> Command:
    """`python -m genlab.x ...`, `genlab-x ...` or `make train ARGS="..."` -> Command."""
    # `<cvae run>` is one placeholder, not two words
    words = shlex.split(
        re.sub(r"<[^>]*>", lambda m: m.group().replace(" ", "_"), text), comments=True
    )
    if words[:2] == ["make", "train"]:
        args = []
        for word in words[2:]:
            name, _, value = word.partition("=")
            assert name == "ARGS", f"{page}:{line}: `make train` takes only ARGS=..., got {word!r}"
            args += shlex.split(value)
        module = "train"
    elif words[0] == "python":
        assert words[1] == "-m", f"{page}:{line}: {text!r}"
        module, args = words[2].removeprefix("genlab."), words[3:]
    else:
        module, args = words[0].removeprefix("genlab-"), words[1:]
    assert module in ENTRY_POINTS, (
        f"{page}:{line}: `{text}` names no genlab entry point (one of {ENTRY_POINTS})"
    )
    cmd = Command(page, line, text, module, [], marker)
    it = iter(args)
    for arg in it:
        if arg in ("-m", "--multirun"):
            cmd.multirun = True
        elif arg == "--cfg":
            cmd.flags += [arg, next(it)]
        elif arg.startswith("-") and module != "compare":
            raise AssertionError(f"{cmd}: unknown flag {arg!r}")
        else:
            cmd.args.append(arg)
    return cmd


def commands_of(page: Path) -> list[Command]:
    """Every genlab command in the page's code blocks and inline code spans, with markers."""
    name = str(page.relative_to(REPO))
    lines = page.read_text().splitlines()
    found: list[Command] = []
    i = 0
    while i < len(lines):
        fence = FENCE.match(lines[i])
        if not fence:
            for span in INLINE.findall(lines[i]):
                cmd = parse_command(span, name, i + 1)
                if cmd.args or cmd.multirun:  # a bare name in the prose is not a command
                    found.append(cmd)
            i += 1
            continue
        before = [ln for ln in lines[max(0, i - 2) : i] if ln.strip()]
        marked = MARKER.match(before[-1]) if before else None
        marker = marked.group(1) if marked else None
        start, i = i, i + 1
        block: list[tuple[int, str]] = []
        while i < len(lines) and not lines[i].lstrip().startswith(fence.group(2)):
            block.append((i + 1, lines[i]))
            i += 1
        i += 1
        joined: list[tuple[int, str]] = []
        for lineno, text in block:
            if joined and joined[-1][1].endswith("\\"):
                joined[-1] = (joined[-1][0], joined[-1][1][:-1] + " " + text.strip())
            else:
                joined.append((lineno, text.strip()))
        cmds = [
            parse_command(text, name, lineno, marker)
            for lineno, text in joined
            if COMMAND.match(text)
        ]
        assert cmds or marker is None, f"{name}:{start}: marker on a block without commands"
        found += cmds
    return found


ALL = [cmd for page in PAGES for cmd in commands_of(page)]


def unique(cmds: list[Command]) -> list[Command]:
    """One of each distinct command (the same command on several pages is composed once)."""
    seen: dict[tuple, Command] = {}
    for cmd in cmds:
        seen.setdefault((cmd.module, cmd.multirun, tuple(cmd.args), cmd.marker), cmd)
    return list(seen.values())


def test_every_page_is_read_and_has_commands():
    """The parser finds the commands (a broken parser must not make the checks vacuous)."""
    pages = {cmd.page for cmd in ALL}
    assert {"README.md", "docs/getting-started.md", "docs/gans.md", "docs/vaes.md"} <= pages
    assert {cmd.module for cmd in ALL} >= {"train", "eval", "sample", "latent", "compare"}
    assert sum(cmd.marker == "run" for cmd in ALL) >= 2
    assert any(cmd.marker == "run" and cmd.module == "eval" for cmd in ALL)
    assert any(cmd.marker == "run" and cmd.module == "train" and not cmd.args for cmd in ALL)


def documented_yaml(contains: str, page: str = "docs/architecture.md") -> str:
    """The one ```yaml block of `page` that contains `contains`."""
    blocks = re.findall(r"^```yaml\n(.*?)^```", (REPO / page).read_text(), re.M | re.S)
    (block,) = [b for b in blocks if contains in b]
    return block


# --- a real tiny run: what <run>, RUN, PATH, ... stand for --------------------------------------
@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, Path]:
    """One real training run of the default model (a few batches), its checkpoint, a sweep-like
    folder holding it, and a config directory of the reader's own (hydra.searchpath)."""
    root = tmp_path_factory.mktemp("docs_run")
    cfg = make_cfg(root, *FAST, "trainer.max_epochs=1", "test=false")
    summary = train(cfg)
    assert summary["status"] == "completed"
    assert (root / "run" / "checkpoints" / "last.ckpt").is_file()
    own = root / "my_conf" / "experiment"
    own.mkdir(parents=True)
    (own / "my_recipe.yaml").write_text(
        "# @package _global_\ndefaults:\n  - override /model: vae\nmodel:\n  latent_dim: 3\n"
    )
    # the new model family's config exactly as docs/architecture.md shows it, so that page's
    # `model=tiny` command composes against it (its classes are only named, not imported)
    (root / "my_conf" / "model").mkdir()
    (root / "my_conf" / "model" / "tiny.yaml").write_text(documented_yaml("TinyModel"))
    return {
        "run": root / "run",
        "ckpt": root / "run" / "checkpoints" / "last.ckpt",
        "sweep": root,
        "conf": root / "my_conf",
    }


def substitute(cmd: Command, tiny: dict[str, Path]) -> list[str]:
    """The command's overrides with every placeholder replaced by the tiny run's files."""
    out = []
    for arg in cmd.args:
        key, eq, value = arg.partition("=")
        if eq and key.split(".")[-1] in CKPT_KEYS and CKPT_VALUE.match(value):
            value = str(tiny["ckpt"])
        elif eq and key == "resume" and RUN_VALUE.match(value):
            value = str(tiny["run"])
        elif eq and key == "hydra.searchpath":
            value = value.replace(f"file://{OWN_CONF}", f"file://{tiny['conf']}")
        elif not eq and cmd.module == "compare" and SWEEP_VALUE.match(arg):
            key, value = str(tiny["sweep"]), ""
        leftover = LEFTOVER.search(value if eq else key)
        if leftover and not value.startswith("/path/to/"):
            raise AssertionError(
                f"{cmd}: placeholder {leftover.group()!r} in {arg!r} has no stand-in in "
                "tests/test_docs.py: use one of the placeholders other pages use."
            )
        out.append(f"{key}={value}" if eq else key)
    return out


def first_job(overrides: list[str]) -> list[str]:
    """A multirun's overrides for its first job (`seed=1,2,3` -> `seed=1`)."""
    parsed = OverridesParser.create().parse_overrides(overrides)
    out = []
    for text, override in zip(overrides, parsed, strict=True):
        if override.is_sweep_override():
            key = text.split("=", 1)[0]
            text = f"{key}={next(override.sweep_string_iterator())}"
        out.append(text)
    return out


def compose_like_cli(root: Path, overrides: list[str], config_name: str, multirun: bool) -> None:
    """Compose and resolve the config as `python -m genlab.<config_name>` would for its (first)
    job: the job's config without the hydra node, and the run or sweep directory, whose
    resolvers read the checkpoint or run directory the command names."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF)):
        cfg = compose(
            config_name,
            overrides=[f"paths.root_dir={root}", *overrides],
            return_hydra_config=True,
        )
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(root / "run")
        cfg.hydra.runtime.cwd = str(root)
        cfg.hydra.job.num = 0
    # as hydra's run_job: the hydra node stays reachable from HydraConfig, the job gets a copy
    # without it
    HydraConfig.instance().set_config(cfg)
    job = copy.deepcopy(cfg)
    with open_dict(job):
        del job["hydra"]
    OmegaConf.to_container(job, resolve=True, throw_on_missing=True)
    hydra_cfg = HydraConfig.get()
    assert hydra_cfg.sweep.dir if multirun else hydra_cfg.run.dir


@pytest.mark.parametrize(
    "cmd", unique([c for c in ALL if c.module != "compare"]), ids=lambda c: f"{c.page}:{c.line}"
)
def test_command_composes(cmd: Command, tiny, tmp_path):
    """Compose the real config with the command's overrides, as the CLI would, and resolve it:
    an option or group option the configs do not have, or a broken interpolation, fails here."""
    overrides = substitute(cmd, tiny)
    if cmd.multirun:
        overrides = first_job(overrides)
    try:
        compose_like_cli(tmp_path, overrides, cmd.module, cmd.multirun)
    except Exception as exc:
        raise AssertionError(f"{cmd} does not compose: {type(exc).__name__}: {exc}") from exc


@pytest.mark.parametrize(
    "cmd", unique([c for c in ALL if c.module == "compare"]), ids=lambda c: f"{c.page}:{c.line}"
)
def test_compare_command_runs(cmd: Command, tiny, tmp_path, capsys):
    """`python -m genlab.compare ...` on a real run: a table naming the run's status."""
    args = substitute(cmd, tiny)
    assert genlab.compare.main([*args, "--out", str(tmp_path / "cmp")]) == 0, cmd
    table = (tmp_path / "cmp.md").read_text()
    assert "completed" in table and "val/loss" in table, table


# --- the marked blocks, end to end -------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize(
    "cmd", [c for c in ALL if c.marker == "run"], ids=lambda c: f"{c.page}:{c.line}"
)
def test_marked_command_runs(cmd: Command, tiny, tmp_path):
    """Run the command as a new user would (a subprocess in a fresh directory), at a tiny
    budget, and check what it promises: a completed run directory / an evaluation."""
    args = substitute(cmd, tiny)
    if cmd.module == "train":
        run_cli(*args, *TINY, cwd=tmp_path, module="genlab.train", timeout=300)
        (run,) = (tmp_path / "logs" / "train" / "runs").iterdir()
        summary = json.loads((run / "summary.json").read_text())
        assert summary["status"] == "completed", summary
        assert Path(summary["last_ckpt"]).is_file() and "test/loss" in summary["metrics"]
    elif cmd.module == "eval":
        run_cli(*args, "trainer.limit_test_batches=2", cwd=tmp_path, module="genlab.eval")
        results = sorted((tiny["run"] / "eval").glob("*/metrics.json"))
        data = json.loads(results[-1].read_text())
        assert {"test", "report"} <= set(data), data
        assert (results[-1].parent / "report" / "report.md").is_file()
    else:
        run_cli(*args, cwd=tmp_path, module=f"genlab.{cmd.module}")


# --- the site ---------------------------------------------------------------------------------
def test_site_builds_strict(tmp_path):
    """`mkdocs build --strict`: a broken link, a missing anchor or a page outside the nav fails.
    (Not -q: mkdocs counts warnings through its log, and -q would hide them from --strict.)"""
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for page in ("index", "getting-started", "configuration", "gans", "evaluation"):
        assert (
            (tmp_path / "site" / (page if page == "index" else f"{page}/index"))
            .with_suffix(".html")
            .is_file()
        )


def test_readme_starts_with_the_two_commands():
    """The first lines a new user sees are `make train` and `make test`."""
    lines = [ln for ln in (REPO / "README.md").read_text().splitlines() if ln.strip()]
    assert lines[1] == "```bash"
    assert lines[2].startswith("make train") and lines[3].startswith("make test")


def test_readme_links_resolve():
    """README links to the docs pages by relative path (they work on GitHub)."""
    readme = (REPO / "README.md").read_text()
    links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", readme)
    local = [link for link in links if not link.startswith("http")]
    assert len(local) >= 10
    missing = [link for link in local if not (REPO / link).exists()]
    assert not missing, missing
