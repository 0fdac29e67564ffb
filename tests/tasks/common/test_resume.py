"""Resumption: seeded sample order, atomic checkpoint writes, and a real SIGKILL mid-run resumed exactly."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tasks.common.checkpointing import AtomicCheckpointIO, find_last_checkpoint
from tasks.common.resume import ResumableSampler, sample_seed

REPO = Path(__file__).parents[3]


def test_sampler_order_is_seeded_per_epoch_and_resumes_mid_epoch():
    full = list(ResumableSampler(10, position=lambda: (3, 0), seed=7))
    assert sorted(index for index, _ in full) == list(range(10))
    assert full == list(ResumableSampler(10, position=lambda: (3, 0), seed=7))  # same seed, epoch: same keys
    assert full != list(ResumableSampler(10, position=lambda: (4, 0), seed=7))
    assert list(ResumableSampler(10, position=lambda: (3, 4), seed=7)) == full[4:]  # 4 samples already done
    assert [seed for _, seed in full] == [sample_seed(7, 3, index) for index, _ in full]
    # an epoch-end checkpoint (everything done) continues with the next epoch from its start
    next_epoch = list(ResumableSampler(10, position=lambda: (4, 0), seed=7))
    assert list(ResumableSampler(10, position=lambda: (3, 8), seed=7, epoch_samples=8)) == next_epoch


def test_a_failed_write_leaves_the_previous_checkpoint_readable(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"step": 1}, path)

    def interrupted(obj, file):
        file.write(b"partial")
        raise KeyboardInterrupt  # a kill in the middle of torch.save

    monkeypatch.setattr(torch, "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        io.save_checkpoint({"step": 2}, path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=True) == {"step": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no staging file left behind


def fit_command(root: Path, cache: Path) -> list[str]:
    return [
        *(sys.executable, "-m", "tasks.classify", "fit", "--backbone", "v3_small", "--width", "0.5"),
        *("--resolution", "32", "--seed_everything", "0", "--trainer.deterministic", "true"),
        *("--trainer.max_epochs", "4", "--trainer.enable_progress_bar", "false", "--trainer.logger", "false"),
        *("--trainer.default_root_dir", str(root), "--last_checkpoint.every_n_train_steps", "5"),
        *("--data.cache_dir", str(cache), "--data.synthetic_train_images", "96", "--data.synthetic_val_images", "8"),
        *("--data.synthetic_image_size", "40", "--data.batch_size", "4", "--data.num_workers", "1"),
    ]


@pytest.mark.slow
def test_kill_and_resume_ends_with_the_uninterrupted_weights(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    cache = tmp_path / "cache"
    # the uninterrupted run beside the killed one, one thread each, with its own copy of the (seeded) data
    reference = subprocess.Popen(
        fit_command(tmp_path / "whole", tmp_path / "reference_cache"),
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    killed_root = tmp_path / "killed"
    process = subprocess.Popen(
        fit_command(killed_root, cache), cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    killed_at = None
    deadline = time.monotonic() + 300
    while killed_at is None and process.poll() is None and time.monotonic() < deadline:
        last = find_last_checkpoint(killed_root)
        if last is not None:
            step = torch.load(last, map_location="cpu", weights_only=True)["global_step"]
            if step >= 30 and step % 24:  # mid-epoch (24 steps per epoch), well into the run
                process.send_signal(signal.SIGKILL)
                killed_at = step
        time.sleep(0.02)
    process.wait()
    assert killed_at is not None, "the run ended before it could be killed mid-epoch"
    assert process.returncode == -signal.SIGKILL

    command = fit_command(killed_root, cache) + ["--ckpt_path", "last"]
    resumed = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    _, reference_errors = reference.communicate()
    assert reference.returncode == 0, reference_errors[-3000:]
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from" in resumed.stdout

    whole = torch.load(find_last_checkpoint(tmp_path / "whole"), map_location="cpu", weights_only=True)
    again = torch.load(find_last_checkpoint(killed_root), map_location="cpu", weights_only=True)
    assert again["global_step"] == whole["global_step"] == 96
    assert again["state_dict"].keys() == whole["state_dict"].keys()
    for name, value in whole["state_dict"].items():  # the same steps on the same batches: the same bits
        assert torch.equal(again["state_dict"][name], value), name
