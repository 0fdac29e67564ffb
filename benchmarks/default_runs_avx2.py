"""The three default commands (`benchmarks.default_runs`) with torch's kernels held to AVX2, as a CPU without AVX-512
runs them.

`ATEN_CPU_CAPABILITY=avx2` holds ATen's vectorised kernels (norms, activations, losses) and `ONEDNN_MAX_CPU_ISA=AVX2`
oneDNN's (convolutions) to AVX2, in every process the runs start. The figures are then the ones an AVX2-only CPU
rounds to, and the wall times show what AVX-512 is worth here; they are this CPU's clock and caches with AVX2 code,
not another machine's time. The first line prints the capability a child process reports, so that a cap that did not
take shows.
Usage: python -m benchmarks.default_runs_avx2 [--tasks detect segment classify]
"""

from __future__ import annotations

import os
import subprocess
import sys

from benchmarks import default_runs
from benchmarks.results import recorded

AVX2_KERNELS = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
REPORTED = "import torch; print(torch.backends.cpu.get_cpu_capability())"


def reported_capability() -> str:
    """The CPU capability torch reports in a new process started under the current environment."""
    done = subprocess.run([sys.executable, "-c", REPORTED], capture_output=True, text=True, check=True)
    return done.stdout.strip()


def main(argv: list[str] | None = None) -> None:
    tasks = default_runs.task_arguments(argv, __doc__, ("detect", "segment", "classify"))
    os.environ.update(AVX2_KERNELS)  # the runs' processes inherit it
    settings = ", ".join(f"{key}={value}" for key, value in AVX2_KERNELS.items())
    with recorded(__file__, argv):
        print(f"kernels held to AVX2 ({settings}); torch in a new process reports: {reported_capability()}\n")
        default_runs.print_runs(tasks)


if __name__ == "__main__":
    main()
