"""`python -m genlab.compare`: the columns of a real sweep (only the option that differs),
families in tables of their own, sorting, the HTML page with the runs' grids, and run
directories someone may have sent (hostile summary.json and config.yaml files) skipped with a
message instead of a hang or a traceback. Real tiny runs through the real CLIs."""

from __future__ import annotations

import csv
import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import pytest
import yaml
from conftest import FAST, run_cli, run_dirs

import genlab.compare
from genlab.analysis.comparison import compare, sort_rows
from genlab.utils.errors import GenlabError

TINY = [
    *(o for o in FAST if not o.startswith("trainer.max_epochs")),
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
]
LATENTS = (2, 4, 8)
# the sample-grid files genlab names <kind>_e<epoch>.png / <kind>_s<step>.png
GRID = re.compile(r"^([a-z_]+?)_([es])(\d+)\.png$")


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """A sweep of three autoencoders that differ in model.latent_dim only (one multirun), and
    one VAE run elsewhere."""
    root = tmp_path_factory.mktemp("compare")
    sweep = root / "sweep"
    latents = ",".join(str(n) for n in LATENTS)
    run_cli("-m", *TINY, f"model.latent_dim={latents}", f"hydra.sweep.dir={sweep}", cwd=root)
    vae_home = root / "vae_home"
    vae_home.mkdir()
    run_cli(*TINY, "model=vae", cwd=vae_home)
    (vae,) = run_dirs(vae_home)
    return {"root": root, "sweep": sweep, "vae": vae}


def summary_of(run: Path) -> dict:
    return json.loads((run / "summary.json").read_text())


def job_dirs(sweep: Path) -> list[Path]:
    return sorted(p for p in sweep.iterdir() if (p / "summary.json").is_file())


def copy_run(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("checkpoints"))
    return dst


def test_a_sweep_shows_only_the_option_that_differs(runs, tmp_path):
    """Three runs that differ in model.latent_dim: the table is status, steps, wall time, the
    best value of the model's declared metric, the test metrics, and model.latent_dim; not the
    config values derived from it (encoder.out_dim, decoder.in_dim: named under the table),
    nor paths, directories or names, which differ between any two runs. Each value is the
    run's own record. Broken variants checked: without the merge of same-valued options the
    derived keys become columns; with `run_specific` always False trainer.default_root_dir and
    the callbacks' dirpaths do."""
    sweep = runs["sweep"]
    proc = run_cli(
        str(sweep), "--out", str(tmp_path / "cmp"), cwd=tmp_path, module="genlab.compare"
    )
    with open(tmp_path / "cmp.csv") as f:
        header = next(csv.reader(f))
    with open(tmp_path / "cmp.csv") as f:
        rows = list(csv.DictReader(f))
    tests = ["test/loss", "test/psnr", "test/ssim"]
    assert header == [
        "run", "family", "status", "steps", "wall_s", "best val/loss", *tests, "model.latent_dim"
    ]  # fmt: skip
    by_job = {r["run"]: r for r in rows}
    assert sorted(by_job) == [p.name for p in job_dirs(sweep)]
    for job in job_dirs(sweep):
        row, summary = by_job[job.name], summary_of(job)
        config = yaml.safe_load((job / "config.yaml").read_text())
        assert int(row["model.latent_dim"]) == config["model"]["latent_dim"]
        assert row["status"] == "completed" and row["family"] == "AutoEncoder"
        assert int(row["steps"]) == summary["global_step"]
        assert float(row["best val/loss"]) == pytest.approx(summary["best_score"])
        assert float(row["test/loss"]) == pytest.approx(summary["metrics"]["test/loss"])
        wall = summary["ended"] - summary["started"]
        assert float(row["wall_s"]) == pytest.approx(wall, abs=0.051)
    assert sorted(int(r["model.latent_dim"]) for r in rows) == list(LATENTS)
    # sorted by the declared metric, lowest first (its monitor_mode is min)
    scores = [float(r["best val/loss"]) for r in rows]
    assert scores == sorted(scores)
    markdown = (tmp_path / "cmp.md").read_text()
    assert markdown.startswith("## AutoEncoder: 3 runs\n\n| run | status | steps | wall_s |")
    assert (
        "`model.latent_dim` stands also for `model.decoder.in_dim`, `model.encoder.out_dim`"
        in (markdown)
    )
    assert markdown.strip() in proc.stdout  # printed too
    assert "written:" in proc.stderr and (tmp_path / "cmp.html").is_file()


def test_all_shows_every_metric_and_every_differing_value(runs):
    group = compare([runs["sweep"]], all_columns=True, warn=False).groups[0]
    columns = set(group.columns)
    # the last values of every metric and the derived and run-specific config values
    assert {"val/loss", "val/psnr", "best_score", "monitor", "epoch"} <= columns
    assert {"model.encoder.out_dim", "model.decoder.in_dim", "model.latent_dim"} <= columns
    assert "trainer.default_root_dir" in columns  # each job's own directory
    assert "data.batch_size" not in columns  # equal in every run: never a column


def test_sorting_by_any_column(runs, tmp_path, capsys):
    """--sort COLUMN (numbers by value, ascending; --desc reverses), and a column the table
    has not got is refused with the columns it has. Values missing in some rows go last,
    whatever the direction."""
    sweep = runs["sweep"]
    out = str(tmp_path / "cmp")
    run_cli(
        str(sweep), "--out", out, "--sort", "model.latent_dim", "--desc", cwd=tmp_path,
        module="genlab.compare",
    )  # fmt: skip
    with open(f"{out}.csv") as f:
        latents = [int(r["model.latent_dim"]) for r in csv.DictReader(f)]
    assert latents == sorted(LATENTS, reverse=True)
    (group,) = compare([sweep], sort="test/psnr", warn=False).groups
    psnr = [r["test/psnr"] for r in group.rows]
    assert psnr == sorted(psnr) and len(set(psnr)) == 3
    with pytest.raises(SystemExit) as exit_:
        genlab.compare.main([str(sweep), "--out", out, "--sort", "val/los"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "Traceback" not in err
    assert "--sort 'val/los' is not a column" in err and "best val/loss" in err
    group.rows[0]["test/psnr"] = None
    for descending in (False, True):
        rows, _ = sort_rows(group.rows, group.runs, "test/psnr", descending)
        assert rows[-1]["test/psnr"] is None
        values = [r["test/psnr"] for r in rows[:-1]]
        assert values == sorted(values, reverse=descending)


def test_families_get_a_table_each_with_their_own_metric(runs, tmp_path):
    """An autoencoder sweep and a VAE: two tables, each with the best value of its own
    declared metric (val/loss, val/nelbo_nats) and its own test metrics; no column of one
    family in the other's table."""
    comparison = compare([runs["sweep"], runs["vae"]], warn=False)
    ae, vae = comparison.groups
    assert (ae.family, vae.family) == ("AutoEncoder", "VAE")
    assert [r["run"] for r in vae.rows] == [runs["vae"].name]
    assert "best val/nelbo_nats" in vae.columns and "best val/nelbo_nats" not in ae.columns
    assert "best val/loss" in ae.columns and "test/kl_nats" in vae.columns
    assert [c for c in ae.columns if c.startswith("test/")] == [
        "test/loss",
        "test/psnr",
        "test/ssim",
    ]
    # one run of a family: nothing differs within it
    assert not [c for c in vae.columns if "." in c]
    assert vae.rows[0]["best val/nelbo_nats"] == pytest.approx(
        summary_of(runs["vae"])["best_score"]
    )


class Images(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.sources: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "img":
            self.sources.append(dict(attrs)["src"] or "")


def latest_grids(run: Path) -> set[Path]:
    """The latest grid of each kind in RUN/images/, from the file names."""
    latest: dict[str, tuple[tuple[str, int], Path]] = {}
    for path in (run / "images").iterdir():
        m = GRID.match(path.name)
        if m:
            key = (m[2], int(m[3]))
            if m[1] not in latest or key > latest[m[1]][0]:
                latest[m[1]] = (key, path)
    return {p.resolve() for _, p in latest.values()}


def test_html_page_shows_each_runs_latest_grids(runs, tmp_path):
    """The page links (relative to itself) exactly the latest grid of each kind of every run,
    the VAE's samples among them, and escapes what it shows: a run directory named like HTML
    stays text."""
    folder = tmp_path / "runs"
    jobs = [copy_run(j, folder / j.name) for j in job_dirs(runs["sweep"])]
    vae = copy_run(runs["vae"], folder / "<i>vae")
    # an older grid of the VAE, which the page must not show
    (vae / "images" / "samples_e0000.png").rename(vae / "images" / "samples_e0003.png")
    shutil.copy(vae / "images" / "samples_e0003.png", vae / "images" / "samples_e0001.png")
    out = tmp_path / "pages" / "cmp"
    run_cli(str(folder), "--out", str(out), cwd=tmp_path, module="genlab.compare")
    page = out.with_suffix(".html").read_text()
    parser = Images()
    parser.feed(page)
    linked = {(out.parent / unquote(src)).resolve() for src in parser.sources}
    assert len(linked) == len(parser.sources)  # each grid once
    want = set().union(*(latest_grids(r) for r in [*jobs, vae]))
    assert linked == want and all(p.is_file() for p in linked)
    assert (vae / "images" / "samples_e0003.png").resolve() in linked
    assert "&lt;i&gt;vae" in page and "<i>vae" not in page


# --- run directories someone may have sent ----------------------------------------------------

# a 370-byte YAML of nested aliases: expanded, 9**9 (387 million) strings ("billion laughs")
ALIAS_BOMB = "a: &a [x,x,x,x,x,x,x,x,x]\n" + "".join(
    f"{b}: &{b} [{', '.join([f'*{a}'] * 9)}]\n"
    for a, b in zip("abcdefgh", "bcdefghi", strict=True)
)


def alias_bomb(run: Path) -> tuple[Path, str]:
    (run / "config.yaml").write_text(ALIAS_BOMB)
    return run / "config.yaml", "YAML anchors (&name) are not accepted"


def list_summary(run: Path) -> tuple[Path, str]:
    (run / "summary.json").write_text("[1, 2, 3]")
    return run / "summary.json", "holds a JSON list, not an object"


def deep_summary(run: Path) -> tuple[Path, str]:
    (run / "summary.json").write_text("[" * 100_000 + "]" * 100_000)
    return run / "summary.json", "is not valid JSON (RecursionError)"


def text_heartbeat(run: Path) -> tuple[Path, str]:
    # a run sent from another machine: its status is told by its heartbeat
    summary = {**summary_of(run), "status": "running", "host": "elsewhere", "heartbeat": "soon"}
    (run / "summary.json").write_text(json.dumps(summary))
    return run / "summary.json", "has heartbeat='soon', not a number"


@pytest.mark.parametrize("damage", [alias_bomb, list_summary, deep_summary, text_heartbeat])
def test_a_hostile_run_is_skipped_with_its_file_named(runs, tmp_path, capsys, damage):
    """One bad run among good ones: a warning naming the file and why, the good runs compared,
    the bad one listed as unreadable (Markdown and CSV). Alone, it is genlab's one-paragraph
    error (exit 2), no traceback. Broken variants checked: reading config.yaml with
    OmegaConf.load (as compare did) had not finished the alias bomb after 60 s; json.loads
    without the type checks gave AttributeError ('list' object has no attribute 'get') and
    RecursionError tracebacks, and float('soon') a ValueError."""
    folder = tmp_path / "runs"
    good = [copy_run(j, folder / j.name) for j in job_dirs(runs["sweep"])[:2]]
    bad = copy_run(job_dirs(runs["sweep"])[2], folder / "sent")
    file, why = damage(bad)
    args = [str(folder), "--out", str(tmp_path / "cmp")]
    if damage is alias_bomb:  # a subprocess with a timeout: were it expanded, it would not end
        proc = run_cli(*args, cwd=tmp_path, module="genlab.compare", timeout=60)
        stdout, stderr = proc.stdout, proc.stderr
    else:  # genlab.compare's main in this process, to keep the test fast
        assert genlab.compare.main(args) == 0
        stdout, stderr = capsys.readouterr()
    assert "Traceback" not in stderr
    assert f"genlab: warning: skipped run {bad}: " in stderr
    assert str(file) in stderr and why in stderr
    table = stdout.split("## Unreadable runs (skipped)")
    assert len(table) == 2 and "| sent |" not in table[0]
    assert all(f"| {g.name} | completed |" in table[0] for g in good)
    assert "- `sent`: " in table[1] and why in table[1]
    with open(tmp_path / "cmp.csv") as f:
        rows = {r["run"]: r for r in csv.DictReader(f)}
    assert rows["sent"]["status"] == "unreadable" and why in rows["sent"]["problem"]
    # the only run: genlab's error naming the file (exit 2, one paragraph)
    alone = [str(bad), "--out", str(tmp_path / "alone")]
    if damage is alias_bomb:
        done = run_cli(*alone, cwd=tmp_path, module="genlab.compare", check=False, timeout=60)
        code, err = done.returncode, done.stderr
    else:
        with pytest.raises(SystemExit) as exit_:
            genlab.compare.main(alone)
        code, err = exit_.value.code, capsys.readouterr().err
        with pytest.raises(GenlabError, match=re.escape(why)):
            compare([bad])
    assert code == 2 and "Traceback" not in err
    assert "genlab: error:" in err and str(file) in err and why in err


def test_outputs_replace_a_planted_link_instead_of_writing_through_it(runs, tmp_path, capsys):
    """A sent sweep folder with comparison.md linking to a file elsewhere: compare replaces
    the link with its own file and the target is untouched. Broken variant checked: writing
    with open(path, "w") (as compare did) overwrote the target."""
    folder = tmp_path / "runs"
    copy_run(job_dirs(runs["sweep"])[0], folder / "0")
    target = tmp_path / "elsewhere.txt"
    target.write_text("keep me")
    for suffix in (".md", ".csv", ".html"):
        (folder / f"comparison{suffix}").symlink_to(target)
    assert genlab.compare.main([str(folder)]) == 0
    capsys.readouterr()
    assert target.read_text() == "keep me"
    for suffix in (".md", ".csv", ".html"):
        written = folder / f"comparison{suffix}"
        assert not written.is_symlink() and "completed" in written.read_text()
