"""Each benchmark's latest printed output, kept as `benchmarks/results/<script>.md` for the docs to include.

A script wraps what it prints in `recorded(__file__, argv)`: the lines still go to the terminal, and when the block
ends without an error they also replace the script's results file, under one header line that names the command,
the CPU (its model and which of the instruction sets that decide int8 and training rounding it has) and the date.
A run that fails leaves the previous file as it was.
"""

from __future__ import annotations

import contextlib
import datetime
import io
import shlex
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TextIO

RESULTS = Path(__file__).resolve().parent / "results"
# int8 pays off only with VNNI (or AMX); seeded training rounds differently on AVX2 and AVX-512
CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "amx_tile")


def cpu_fields() -> tuple[str, set[str]]:
    """(model name, flags) from `lscpu`, or from /proc/cpuinfo where lscpu is missing; ("unknown CPU", {}) else."""
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=True, timeout=10).stdout
        fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
        return fields.get("Model name", "unknown CPU").strip(), set(fields.get("Flags", "").split())
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown CPU", set()
    fields = dict((k.strip(), v.strip()) for k, _, v in (line.partition(":") for line in text.splitlines()))
    return fields.get("model name", "unknown CPU"), set(fields.get("flags", "").split())


def cpu_description() -> str:
    """`<model name> (avx2 yes, avx512f no, ...)`: the flags of CPU_FLAGS this CPU has and has not."""
    model, flags = cpu_fields()
    marks = ", ".join(f"{flag} {'yes' if flag in flags else 'no'}" for flag in CPU_FLAGS)
    return f"{model} ({marks})"


def results_markdown(command: str, cpu: str, day: str, output: str) -> str:
    """The results file: one header line, then the printed output verbatim in a `text` block."""
    return f"`{command}` on {cpu}, {day}:\n\n```text\n{output.rstrip()}\n```\n"


class _Tee(io.TextIOBase):
    """Writes to the terminal and keeps a copy."""

    def __init__(self, terminal: TextIO) -> None:
        self.terminal, self.copy = terminal, io.StringIO()

    def write(self, text: str) -> int:
        self.copy.write(text)
        return self.terminal.write(text)

    def flush(self) -> None:
        self.terminal.flush()


@contextlib.contextmanager
def recorded(script: str, argv: Sequence[str] | None, folder: Path = RESULTS) -> Iterator[None]:
    """Tee what the block prints into `folder/<script stem>.md` (written when the block ends without an error).

    `script`: the benchmark's `__file__`; `argv`: its `main(argv)` argument (None: the command line's)."""
    name = Path(script).stem
    arguments = list(sys.argv[1:] if argv is None else argv)
    command = shlex.join(["python", "-m", f"benchmarks.{name}", *arguments])
    tee = _Tee(sys.stdout)
    with contextlib.redirect_stdout(tee):
        yield
    folder.mkdir(parents=True, exist_ok=True)
    text = results_markdown(command, cpu_description(), datetime.date.today().isoformat(), tee.copy.getvalue())
    (folder / f"{name}.md").write_text(text)
