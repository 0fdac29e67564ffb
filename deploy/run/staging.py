"""All or nothing: a CLI run writes into a hidden temporary folder beside its output folder, whose files move into
the output folder (replacing same-named ones) only once every input has been run; on any error the temporary
folder is removed and the output folder is left as it was."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from deploy.run.errors import InputError


@contextmanager
def staged(out: Path) -> Iterator[Path]:
    """A temporary folder beside `out` to write into; its files are published into `out` when the block succeeds."""
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file, not a folder; name a folder to write into")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    except OSError as error:
        raise InputError(f"--out {out}: cannot write there ({error}); name a writable folder") from error
    try:
        yield staging
        publish(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def publish(staging: Path, out: Path) -> None:
    """Move every file of `staging` to the same place under `out`."""
    for path in sorted(staging.rglob("*")):
        if path.is_file():
            target = out / path.relative_to(staging)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, target)
