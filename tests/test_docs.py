"""Every Python and shell block of README.md and docs/**/*.md runs: one test per block, with the id `<file>:<line>`.

The rules:
- Fences tagged `python`, `bash` or `shell` run; any other tag does not (`text` for printed output, `yaml`, ...).
- Each block runs in a fresh process in its own temporary working directory: a python block as `python block.py`,
  a shell block with `bash -e`, with the repository first on PYTHONPATH and this interpreter's folder first on PATH.
- Stand-ins: a block that names one of the STAND_INS files (a checkpoint `fit` wrote, `photos/`, a dataset under
  `data/`, ...) finds a tiny one of them in its working directory, written with the test fixtures; the docs use
  these names for what a reader has made or brought before. A block that makes its own files names other paths.
- Installing: a `pip install ...` command is not run; it must equal the pip command of `.ci/run` (less its `-q`), and
  what follows it after `&&` runs. `python -m pytest ...` is not run either (it is this suite): it must equal the
  pytest command of `.ci/run`, or add only `-m "not slow"`.
- Tiers: every block runs in the `slow` tier: each is a fresh process that spends about 5 s importing torch and
  Lightning, which 25 blocks would add to the fast tier's 3-minute budget. The rules below run in the fast tier.
- Training: every `python -m tasks.<task> fit` gets SHORT_SCHEDULE["fit"] appended, at most 1 epoch of 2 steps and one
  validation batch. `validate` and `test` evaluate one batch (SHORT_SCHEDULE), `predict` and `export` run as
  written.
- Downloads: a block preceded by the line `<!-- docs-test: downloads -->` fetches the published weights of
  PUBLISHED. It runs against a loopback publisher (`publisher`): the source's own model of each entry, randomly
  initialised, saved under the entry's file name and served by `http.server` on 127.0.0.1, and the entry re-pointed
  at it with that file's sha256 (a `sitecustomize.py` first on the block's PYTHONPATH registers the replacements in
  every Python process the block starts). The block downloads over HTTP into its own TORCH_HOME, hash checked: the
  code path a user's first download takes, without the internet.

Besides the blocks: every test a page names as `tests/<file>.py::<test>` exists, the generated tables render, the
benchmark scripts record their output where the docs include it, and the README stays a short front door.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

import tasks  # noqa: F401  (registers the task models' weights entries, which PUBLISHED names)
from backbones.weights import get_weights
from tests.backbones.test_weights_registry import Server, sha256, source_model

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
RUN_LANGUAGES = {"python", "bash", "shell"}
SHORT_SCHEDULE = {
    "fit": "--trainer.max_epochs 1 --trainer.max_steps 2 --trainer.limit_val_batches 1",
    "validate": "--trainer.limit_val_batches 1",
    "test": "--trainer.limit_test_batches 1",
}
FIT = re.compile(r"-m tasks\.\w+ fit\b")
SUBCOMMAND = re.compile(r"-m tasks\.\w+ (?P<subcommand>\w+)\b")
DOWNLOADS = "<!-- docs-test: downloads -->"
# the published entries the download blocks fetch (name, tag)
PUBLISHED = (("v3_large", "imagenet"), ("ssdlite320_v3_large", "coco"), ("lraspp_v3_large", "coco_voc"))
SITECUSTOMIZE = """# written by tests/test_docs.py: the published entries re-pointed at the test's loopback publisher
import tasks  # registers the task models' entries
from backbones.weights import get_weights, register_weights

for _name, _tag, _url, _sha256 in {replacements!r}:
    _entry = get_weights(_name, _tag)
    register_weights(
        _name, _entry.tag, url=_url, sha256=_sha256, mean=_entry.mean, std=_entry.std, image_size=_entry.image_size,
        resize_size=_entry.resize_size, interpolation=_entry.interpolation, categories=_entry.categories,
        metrics=_entry.metrics, metrics_source=_entry.metrics_source, source=_entry.source,
        file_name=_entry.cache_name, aliases=_entry.aliases, build_options=_entry.build_options, note=_entry.note,
        replace=True,
    )
"""
TIMEOUT_S = 900


# -- the blocks -----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Block:
    page: Path
    line: int  # of the opening fence, 1-based
    language: str
    code: str
    downloads: bool

    @property
    def id(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^\n`]*)$")


def fenced_blocks(page: Path) -> list[Block]:
    """Every fenced block of `page` (indented ones too, as in admonitions), with its language and line."""
    lines = page.read_text().splitlines()
    blocks, index = [], 0
    while index < len(lines):
        match = FENCE.match(lines[index])
        if not match:
            index += 1
            continue
        indent, fence = match["indent"], match["fence"]
        language = (match["info"].split() or [""])[0].lstrip(".").lower()
        end = index + 1
        while end < len(lines) and lines[end].strip() != fence:
            end += 1
        body = [line[len(indent) :] if line.startswith(indent) else line.lstrip() for line in lines[index + 1 : end]]
        downloads = index > 0 and lines[index - 1].strip() == DOWNLOADS
        blocks.append(Block(page, index + 1, language, "\n".join(body) + "\n", downloads))
        index = end + 1
    return blocks


def runnable_blocks() -> list[Block]:
    """The blocks that run; a block repeated on another page (the Quick start) runs once, at its first place."""
    blocks: dict[str, Block] = {}
    for page in PAGES:
        for block in fenced_blocks(page):
            if block.language in RUN_LANGUAGES:
                blocks.setdefault(block.code, block)
    return list(blocks.values())


def block_params() -> list:
    return [pytest.param(block, id=block.id, marks=pytest.mark.slow) for block in runnable_blocks()]


# -- .ci/run's commands, which the docs' install and test commands must equal -----------------------------------------
def ci_command(prefix: str) -> str:
    """The command of `.ci/run` that starts with `prefix`, without pip's `-q` (the docs show pip's progress)."""
    for line in (ROOT / ".ci" / "run").read_text().splitlines():
        words = shlex.split(line)
        if shlex.join(words[: len(prefix.split())]) == prefix:
            return shlex.join(word for word in words if not (prefix == "pip install" and word == "-q"))
    raise AssertionError(f".ci/run has no `{prefix} ...` line")


def split_comment(line: str) -> tuple[str, str]:
    """(command, trailing `# comment`) of one shell line; a `#` inside quotes or a word is not a comment."""
    quote = None
    for index, char in enumerate(line):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (index == 0 or line[index - 1].isspace()):
            return line[:index].rstrip(), line[index:]
    return line.rstrip(), ""


def logical_lines(code: str) -> list[str]:
    """Shell lines with backslash continuations joined."""
    lines, current = [], ""
    for line in code.splitlines():
        command, comment = split_comment(line)
        if command.endswith("\\") and not comment:
            current += (command.lstrip() if current else command)[:-1].rstrip() + " "
            continue
        lines.append(current + (line.lstrip() if current else line))
        current = ""
    if current:
        lines.append(current)
    return lines


def runnable_shell(code: str) -> str:
    """The block as it runs: install and test-suite commands checked against .ci/run and left out, `fit` commands
    and the evaluations with SHORT_SCHEDULE appended."""
    out = []
    for line in logical_lines(code):
        command, comment = split_comment(line)
        kept = []
        for part in (part.strip() for part in command.split("&&")):
            words = shlex.split(part) if part else []
            if words[:2] == ["pip", "install"]:
                assert shlex.join(words) == ci_command("pip install"), f"`{part}` is not .ci/run's install command"
                continue
            if words[:3] == ["python", "-m", "pytest"]:
                suite = ci_command("python -m pytest")
                assert shlex.join(words) in (suite, f"{suite} -m 'not slow'"), f"`{part}` is not .ci/run's tests"
                continue
            match = SUBCOMMAND.search(part)
            short = SHORT_SCHEDULE.get(match["subcommand"]) if match else None
            kept.append(f"{part} {short}" if short else part)
        if kept:
            out.append(" && ".join(kept) + (f"  {comment}" if comment else ""))
        elif not command and comment:
            out.append(comment)
    return "\n".join(out) + "\n"


# -- stand-ins: what a reader has before a block runs -------------------------------------------------------------
def _checkpoint(task: str) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        from tests.helpers import tiny_task, write_checkpoint

        module, data = tiny_task(task, path.parent / "cache")
        write_checkpoint(path, module, data)

    return write


def _end_to_end_detector(path: Path) -> None:
    from tasks.common.export import export_checkpoint

    checkpoint = path.with_suffix(".ckpt")
    if not checkpoint.exists():
        _checkpoint("detect")(checkpoint)
    export_checkpoint("detect", checkpoint, output=path, dynamic_batch=True)


def _photos(folder: Path) -> None:
    from tests.helpers import write_noise_images

    write_noise_images(folder, [(48, 64), (60, 40), (32, 32)])


def _video(path: Path) -> None:
    from tests.helpers import write_video

    write_video(path)


def _coco_2017(root: Path) -> None:
    from tests.tasks.detect.data.layouts import coco_2017

    coco_2017(root)


def _cvat_export(root: Path) -> None:
    from tests.tasks.detect.data.layouts import cvat_single

    cvat_single(root)


def _voc(root: Path) -> None:
    """A VOCdevkit with detection (VOC2007, VOC2012) and segmentation (VOC2012) data, images of one size."""
    from tests.tasks.detect.fixtures import write_voc_dataset
    from tests.tasks.segment.fixtures import write_voc_segmentation

    write_voc_dataset(root, image_size=64, years=("VOC2007", "VOC2012"))
    write_voc_segmentation(root, image_size=64)


def _image_folder(root: Path) -> None:
    from tests.tasks.classify.fixtures import write_image_folder

    write_image_folder(root, {"train": {"ant": 3, "bee": 3}, "val": {"ant": 2, "bee": 2}})


def _masks(root: Path) -> None:
    """images/{train,val}/*.png and masks/{train,val}/*.png: a road (1) and a lane (2) on background (0)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, count in (("train", 4), ("val", 2)):
        for index in range(count):
            mask = np.zeros((48, 64), dtype=np.uint8)
            mask[24:, :] = 1
            mask[30:40, 28 + index : 36 + index] = 2
            image = rng.integers(0, 40, (48, 64, 3)) + np.array([[60, 60, 60], [120, 120, 120], [230, 230, 90]])[mask]
            for kind, pixels in (("images", image.astype(np.uint8)), ("masks", mask)):
                (root / kind / split).mkdir(parents=True, exist_ok=True)
                Image.fromarray(pixels).save(root / kind / split / f"{index}.png")


STAND_INS: dict[str, Callable[[Path], None]] = {
    "detector.ckpt": _checkpoint("detect"),
    "segmenter.ckpt": _checkpoint("segment"),
    "classifier.ckpt": _checkpoint("classify"),
    "detector.onnx": _end_to_end_detector,  # `export` of detector.ckpt
    "photos": _photos,
    "clip.mp4": _video,
    "data/coco": _coco_2017,
    "data/VOCdevkit": _voc,
    "data/imagenet": _image_folder,
    "data/roads": _masks,
    "exports/parts": _cvat_export,
}


def write_stand_ins(code: str, folder: Path) -> list[str]:
    """The STAND_INS the block names (as a path of its own: not part of a longer name), written under `folder`."""
    written = []
    for name, write in STAND_INS.items():
        if re.search(rf"(?<![\w./-]){re.escape(name)}(?![\w.-])", code):
            path = folder / name
            path.parent.mkdir(parents=True, exist_ok=True)
            write(path)
            written.append(name)
    return written


# -- running ------------------------------------------------------------------------------------------------------
def environment() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["MPLBACKEND"] = "Agg"
    return env


@pytest.fixture(scope="module")
def publisher(tmp_path_factory: pytest.TempPathFactory):
    """The folder holding a `sitecustomize.py` that re-points PUBLISHED at files served on 127.0.0.1 (see the module
    docstring), and the server, which counts the requests."""
    folder = tmp_path_factory.mktemp("publisher")
    served = folder / "served"
    served.mkdir()
    server = Server(served)
    replacements = []
    for name, tag in PUBLISHED:
        entry = get_weights(name, tag)
        path = served / entry.cache_name
        torch.save(source_model(entry).state_dict(), path)
        replacements.append((name, tag, f"{server.base}/{entry.cache_name}", sha256(path)))
    (folder / "sitecustomize.py").write_text(SITECUSTOMIZE.format(replacements=replacements))
    yield folder, server
    server.stop()


def run_block(block: Block, folder: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    folder.mkdir(parents=True, exist_ok=True)
    write_stand_ins(block.code, folder)
    if block.language == "python":
        script = folder / "block.py"
        script.write_text(block.code)
        command = [sys.executable, str(script)]
    else:
        script = folder / "block.sh"
        script.write_text(runnable_shell(block.code))
        command = ["bash", "-e", str(script)]
    return subprocess.run(
        command, cwd=folder, env=env or environment(), capture_output=True, text=True, timeout=TIMEOUT_S, check=False
    )


@pytest.mark.parametrize("block", block_params())
def test_block_runs(block: Block, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    env = environment()
    if block.downloads:
        folder, server = request.getfixturevalue("publisher")
        env["PYTHONPATH"] = os.pathsep.join([str(folder), env["PYTHONPATH"]])
        env["TORCH_HOME"] = str(tmp_path / "torch_home")
        env.pop("MOBILENET_SUITE_WEIGHTS_MIRROR", None)
        before = len(server.requests)
    result = run_block(block, tmp_path / "work", env)
    assert result.returncode == 0, (
        f"{block.id} ({block.language}) failed with exit code {result.returncode}\n--- stdout\n"
        f"{result.stdout[-6000:]}\n--- stderr\n{result.stderr[-6000:]}"
    )
    if block.downloads:  # the block fetched its weights from the publisher, into its own empty cache
        assert len(server.requests) > before, f"{block.id} is marked as downloading but fetched nothing"


# -- the rules themselves ---------------------------------------------------------------------------------------------
def test_the_shell_rules() -> None:
    quick_start = 'pip install -e ".[dev]" && python -m tasks.detect fit --backbone v3_large  # trains\n'
    fit = SHORT_SCHEDULE["fit"]
    assert runnable_shell(quick_start) == f"python -m tasks.detect fit --backbone v3_large {fit}  # trains\n"
    continued = "python -m tasks.segment fit --head lraspp \\\n    --data.root 'a # b'\necho done\n"
    expected = f"python -m tasks.segment fit --head lraspp --data.root 'a # b' {fit}\necho done\n"
    assert runnable_shell(continued) == expected
    with pytest.raises(AssertionError, match="install command"):
        runnable_shell("pip install mobilenet-suite\n")
    assert runnable_shell("python -m pytest -q\n") == "\n"
    validate, predict = (f"python -m tasks.detect {sub} --ckpt_path a.ckpt" for sub in ("validate", "predict"))
    assert runnable_shell(validate + "\n") == f"{validate} {SHORT_SCHEDULE['validate']}\n"
    assert runnable_shell(predict + "\n") == f"{predict}\n"
    assert write_stand_ins("Detector.from_checkpoint('runs/detector.ckpt')", Path("/nonexistent")) == []


def test_every_test_the_docs_name_exists() -> None:
    """A guarantee in the docs names the test that proves it as `tests/<path>.py::<test>`; each must exist."""
    named = {
        (page.relative_to(ROOT), match[1], match[2])
        for page in PAGES
        for match in re.finditer(r"(tests/[\w/]+\.py)::(\w+)", page.read_text())
    }
    assert named, "the docs name no tests"
    missing = [
        f"{page}: {path}::{test}"
        for page, path, test in sorted(named)
        if not (ROOT / path).is_file() or not re.search(rf"^\s*def {test}\(", (ROOT / path).read_text(), re.M)
    ]
    assert not missing, "the docs name tests that do not exist:\n" + "\n".join(missing)


def test_generated_tables_render() -> None:
    sys.path.insert(0, str(ROOT / "docs"))
    try:
        import hooks
    finally:
        sys.path.remove(str(ROOT / "docs"))
    markers = {match["name"] for page in PAGES for match in hooks.MARKER.finditer(page.read_text())}
    assert markers == set(hooks.GENERATORS), "every generator is used by a page, and every marker is known"
    for name in sorted(markers):
        table = hooks.generated(name)
        assert table.startswith("| ") and table.count("\n") >= 3, name


def test_benchmark_results_are_recorded_with_command_cpu_and_date(tmp_path: Path) -> None:
    from benchmarks.results import CPU_FLAGS, recorded

    with recorded(str(ROOT / "benchmarks" / "backbone_speed.py"), ["--rounds", "2"], folder=tmp_path):
        print("backbone  ms\nv1        1.0")
    header, _, body = (tmp_path / "backbone_speed.md").read_text().partition("\n\n")
    assert header.startswith("`python -m benchmarks.backbone_speed --rounds 2` on ")
    assert all(f"{flag} yes" in header or f"{flag} no" in header for flag in CPU_FLAGS)
    assert re.search(r", \d{4}-\d\d-\d\d:$", header)
    assert body == "```text\nbackbone  ms\nv1        1.0\n```\n"
    with pytest.raises(RuntimeError), recorded("backbone_speed.py", [], folder=tmp_path):
        print("half a table")
        raise RuntimeError("interrupted")
    assert "v1        1.0" in (tmp_path / "backbone_speed.md").read_text()  # a failed run keeps the last file


def test_every_benchmark_records_its_output_and_the_docs_include_it() -> None:
    scripts = [p for p in sorted((ROOT / "benchmarks").glob("*.py")) if "def main(" in p.read_text()]
    pages = "\n".join(page.read_text() for page in sorted((ROOT / "docs").glob("*.md")))
    for script in scripts:
        assert "with recorded(__file__, argv):" in script.read_text(), script.name
        assert (ROOT / "benchmarks" / "results" / f"{script.stem}.md").is_file(), script.name
        assert f'--8<-- "{script.stem}.md"' in pages, script.name


def test_the_readme_is_a_short_front_door() -> None:
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 200
    quick_start = ['pip install -e ".[dev]" && python -m tasks.detect fit --backbone v3_large', "python -m pytest -q"]
    assert "```bash\n" + "\n".join(quick_start) + "\n```" in text, "the Quick start is these two commands"
    history = re.compile(r"before issue|previous commit|before the restructure|re-measured|previous code", re.I)
    for page in PAGES:
        assert not history.search(page.read_text()), f"{page.relative_to(ROOT)} tells history"
