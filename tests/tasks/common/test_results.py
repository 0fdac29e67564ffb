"""What a short `fit` shows: the metrics table after each validation, the summary, results.png, TensorBoard."""

import re
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pytorch_lightning.loggers import CSVLogger

from benchmarks.default_runs import best_figure, speed_lines
from tasks.classify.task import main
from tasks.common import cli as cli_module
from tasks.common.results import CURVES, best_checkpoint

EPOCHS = 2


def fit(tmp_path: Path, images: int, *extra: str):
    """A short classification fit on `images` generated training images (half as many for validation)."""
    data = {"cache_dir": tmp_path / "cache", "synthetic_train_images": images, "synthetic_val_images": images // 2}
    options = {"backbone": "v3_small", "width": 0.5, "resolution": 32, "data.batch_size": 4, "data.num_workers": 0}
    options |= {f"data.{k}": v for k, v in data.items()} | {"data.synthetic_image_size": 40}
    options |= {"trainer.accelerator": "cpu", "trainer.enable_progress_bar": "false", "trainer.max_epochs": EPOCHS}
    options["trainer.default_root_dir"] = tmp_path
    return main(["fit", *(item for k, v in options.items() for item in (f"--{k}", str(v))), *extra])


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    return fit(tmp_path_factory.mktemp("results"), 16, "--trainer.log_every_n_steps", "2")


def test_fit_prints_the_table_after_each_validation_and_a_summary(tmp_path, capsys):
    cli = fit(tmp_path, 8, "--trainer.logger", "false")
    out = capsys.readouterr().out
    for epoch in range(2):
        assert f"epoch {epoch} val (4 images)\ntop1 " in out
    assert out.index("epoch 0 val") < out.index("epoch 1 val") < out.index("fit done in")
    summary = out[out.index("fit done in") :]
    assert "best epoch " in summary and "val/top1 " in summary and "\ntop1 " in summary
    best = best_checkpoint(cli.trainer, "val/top1").best_model_path
    assert f"best checkpoint: {best}" in summary and Path(best).is_file()
    assert "last checkpoint: " in summary and "last.ckpt" in summary
    # the run's speed, comparable across machines: 8 images in steps of 4 for 2 epochs; 4 validation images twice
    assert re.search(r"\ntraining: 4 steps in \d+ s, [\d.]+ steps/s, [\d.]+ images/s\n", summary)
    assert re.search(r"\nvalidation: 2 passes, 8 images in \d+ s, [\d.]+ images/s\n", summary)
    assert re.search(r"\nplots: [\d.]+ s \([\d.]+% of the run\)", summary)
    # what benchmarks/default_runs.py reads of it
    assert best_figure(out, "top1") == re.search(r"^top1\s+([\d.]+)", summary, flags=re.MULTILINE).group(1)
    assert [line.split(":")[0] for line in speed_lines(out)] == ["training", "validation", "plots"]
    assert (tmp_path / f"{CURVES}.png").is_file()  # no logger: the run folder is the root


def test_results_png_is_a_real_plot(fitted):
    path = Path(fitted.trainer.log_dir) / f"{CURVES}.png"
    with Image.open(path) as image:
        pixels = np.asarray(image.convert("L"), dtype=np.float32)
    assert pixels.shape[0] > 100 and pixels.shape[1] > 100
    assert pixels.std() > 5  # lines and text on white, not a blank page


def test_csv_and_tensorboard_share_the_run_folder(fitted):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    folder = Path(fitted.trainer.log_dir)
    assert (folder / "metrics.csv").is_file()
    events = list(folder.glob("events.out.tfevents.*"))
    assert events, f"no TensorBoard event file in {sorted(p.name for p in folder.iterdir())}"
    accumulator = EventAccumulator(str(folder), size_guidance={"images": 0, "scalars": 0})
    accumulator.Reload()
    tags = accumulator.Tags()
    assert {"val/top1", "val/top5", "train/loss"} <= set(tags["scalars"])
    assert len(accumulator.Scalars("val/top1")) == EPOCHS
    assert f"plots/{CURVES}" in tags["images"]
    # drawing keeps within PLOT_SHARE of the fit: a validation that follows the last drawing too soon is not drawn
    # then, but the fit's last validation always is (at its end at the latest), so the last plots show the end
    steps = [event.step for event in accumulator.Images(f"plots/{CURVES}")]
    assert steps == [fitted.trainer.global_step // EPOCHS, fitted.trainer.global_step]


def test_csv_alone_without_tensorboard(tmp_path, monkeypatch):
    monkeypatch.setattr(cli_module, "_TENSORBOARD_AVAILABLE", False)
    (logger,) = cli_module.default_loggers(str(tmp_path))
    assert type(logger) is CSVLogger and Path(logger.log_dir) == tmp_path / "lightning_logs" / "version_0"


def test_library_notices_are_filtered_unless_the_user_set_warning_options(monkeypatch):
    leafspec = "`isinstance(treespec, LeafSpec)` is deprecated, use ... instead."
    module = "pytorch_lightning.utilities._pytree"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        monkeypatch.setenv("PYTHONWARNINGS", "always")
        cli_module.quiet_library_notices()
        warnings.warn_explicit(leafspec, FutureWarning, "_pytree.py", 21, module=module)
        assert len(caught) == 1  # the user's PYTHONWARNINGS: nothing filtered
        monkeypatch.delenv("PYTHONWARNINGS")
        cli_module.quiet_library_notices()
        warnings.warn_explicit(leafspec, FutureWarning, "_pytree.py", 21, module=module)
        warnings.warn_explicit(leafspec, FutureWarning, "mine.py", 1, module="my_project")
        assert [w.filename for w in caught] == ["_pytree.py", "mine.py"]  # only at its source
