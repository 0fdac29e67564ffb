"""A non-finite loss stops training with the step and batch named, after saving the last good state."""

import pytest
import pytorch_lightning as pl
import torch

from tasks.classify.data.module import ClassificationDataModule
from tasks.classify.task import ClassificationTask
from tasks.common.numerics import CHECKPOINT_NAME, NonFiniteLossError
from tests.tasks.classify.fixtures import write_image_folder


def test_nan_loss_stops_training_and_keeps_the_last_good_weights(tmp_path):
    root = write_image_folder(tmp_path / "images", {"train": {"a": 4, "b": 4}, "val": {"a": 1, "b": 1}})
    data = ClassificationDataModule(format="imagefolder", root=str(root), resolution=32, batch_size=2, num_workers=0)
    task = ClassificationTask(backbone="v3_small", width=0.5, num_classes=2, resolution=32)
    trained_step = task.training_step
    before_bad_step = {}

    def poisoned_step(batch, batch_idx):
        loss = trained_step(batch, batch_idx)
        if batch_idx == 2:
            before_bad_step.update({k: p.detach().clone() for k, p in task.named_parameters()})
            return loss * float("nan")
        return loss

    task.training_step = poisoned_step
    trainer = pl.Trainer(
        max_epochs=1,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_checkpointing=False,
        default_root_dir=tmp_path,
    )
    expected = r"non-finite training loss \(nan\) at global step 2, epoch 0, batch 2; the last good state is saved to "
    with pytest.raises(NonFiniteLossError, match=expected + r".*" + CHECKPOINT_NAME):
        trainer.fit(task, data)
    checkpoint = torch.load(tmp_path / CHECKPOINT_NAME, map_location="cpu", weights_only=True)
    assert checkpoint["global_step"] == 2
    for name, value in before_bad_step.items():  # the two good steps' weights, untouched by the bad one
        assert torch.equal(checkpoint["state_dict"][name], value) and torch.isfinite(value).all()
