"""Validation, test and predict run a copy of the network with batch norm folded; the checkpoints keep the norms."""

from pathlib import Path

import torch
from pytorch_lightning.callbacks import Callback
from torch import nn

from tasks.classify.task import main
from tasks.common.results import best_checkpoint


class CountNorms(Callback):
    """The batch norms of the network each evaluation or predict batch ran on, and of the trainable one beside it."""

    def __init__(self) -> None:
        self.counts: list[tuple[int, int]] = []

    def _count(self, pl_module) -> None:
        norms = [
            sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
            for model in (pl_module.inference_model, pl_module.model)
        ]
        self.counts.append(tuple(norms))

    def on_validation_batch_start(self, trainer, pl_module, *args) -> None:
        self._count(pl_module)

    def on_test_batch_start(self, trainer, pl_module, *args) -> None:
        self._count(pl_module)


def test_evaluation_runs_the_fused_network_and_checkpoints_keep_the_norms(tmp_path: Path) -> None:
    options = {
        "backbone": "v3_small", "width": 0.5, "resolution": 32, "data.batch_size": 4, "data.num_workers": 0,
        "data.cache_dir": tmp_path / "cache", "data.synthetic_train_images": 8, "data.synthetic_val_images": 4,
        "data.synthetic_image_size": 40, "trainer.max_epochs": 1, "trainer.logger": "false",
        "trainer.enable_progress_bar": "false", "trainer.default_root_dir": tmp_path,
        "trainer.callbacks+": "tests.tasks.common.test_inference_model.CountNorms",
    }  # fmt: skip
    cli = main(["fit", *(item for k, v in options.items() for item in (f"--{k}", str(v)))])
    counter = next(c for c in cli.trainer.callbacks if isinstance(c, CountNorms))
    cli.trainer.test(cli.model, datamodule=cli.datamodule)
    assert len(counter.counts) == 2  # one validation batch, one test batch
    for fused, trainable in counter.counts:
        assert fused == 0 and trainable > 10
    state = torch.load(best_checkpoint(cli.trainer, "val/top1").best_model_path, weights_only=True)["state_dict"]
    assert sum(key.endswith("running_mean") for key in state) == counter.counts[0][1]
