"""`cli_settings` on plain dicts: what a checkpoint and named weights set in a task's parsed configuration, what an
explicit setting keeps, and the one-line error of an architecture flag that contradicts the checkpoint."""

from __future__ import annotations

from typing import Any

import pytest

from backbones.weights import get_weights
from tasks.common.cli_settings import Settings, TaskShape, checkpoint_path, cli_settings, given_flags
from tasks.models import model_entry

IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
# a detector's parser defaults (the parser leaves out link targets such as model.backbone, as Lightning's does)
DEFAULTS: dict[str, Any] = {
    "backbone": "v3_large",
    "width": 1.0,
    "model.weights": None,
    "model.backbone_weights": None,
    "model.reduced_tail": False,
    "model.lr": 0.002,
    "data.format": "synthetic",
    "data.root": None,
    "data.val_images": None,
    "data.image_size": 320,
    "data.batch_size": 16,
    "data.mean": IMAGENET_MEAN,
    "data.std": IMAGENET_STD,
    "data.class_names": None,
    "ckpt_path": None,
    "trainer.max_epochs": 2,
}
LINKED = {"model.backbone": "v3_large", "model.width": 1.0, "model.image_size": 320}
DETECT = TaskShape(
    task="detect",
    architecture=("backbone", "num_classes", "width", "reduced_tail"),
    links=(("data.image_size", "model.image_size"),),
    data_locators=("data.format", "data.root", "data.val_images"),
    weights_settings=lambda entry: {"data.image_size": entry.image_size},
)
CHECKPOINT = {
    "hyper_parameters": {
        "backbone": "v3_small",
        "width": 0.5,
        "reduced_tail": False,
        "weights": None,
        "backbone_weights": "imagenet",
        "lr": 0.01,
        "image_size": 96,
        "num_classes": 5,
        "class_names": ["background", "a", "b", "c", "d"],
        "_instantiator": "pytorch_lightning.cli.instantiate_module",
    },
    "datamodule_hyper_parameters": {"format": "synthetic", "image_size": 96, "batch_size": 2, "cache_dir": "/x"},
}


def settings(subcommand: str, *flags: tuple[str, Any], checkpoint: Any = None, shape: TaskShape = DETECT) -> Settings:
    """`cli_settings` for a command line that gave `flags` ((key, parsed value) pairs) over the defaults; with a
    checkpoint, `--ckpt_path run.ckpt`."""
    config = {**DEFAULTS, **LINKED, **dict(flags)}
    if "data.image_size" in dict(flags):
        config["model.image_size"] = config["data.image_size"]  # the parse-time link
    given = {key for key, _ in flags}
    if checkpoint is not None:
        config["ckpt_path"] = "run.ckpt"
        given.add("ckpt_path")
    return cli_settings(subcommand, config, DEFAULTS, given, checkpoint, shape)


def test_given_flags_are_the_keys_of_both_flag_forms():
    args = ["validate", "--ckpt_path", "a.ckpt", "--backbone=v3_small", "--data.mean", "[0.4,0.4,0.4]", "-c", "x.yaml"]
    assert given_flags(args) == {"ckpt_path", "backbone", "data.mean"}


def test_the_checkpoint_fills_every_key_not_given():
    updates = settings("validate", checkpoint=CHECKPOINT).updates
    assert updates["model.backbone"] == updates["backbone"] == "v3_small"
    assert updates["model.width"] == updates["width"] == 0.5
    assert updates["model.lr"] == 0.01 and updates["model.image_size"] == 96
    assert updates["data.image_size"] == 96 and updates["data.batch_size"] == 2
    assert "data.cache_dir" not in updates  # not a key of this parser
    assert not {"model.num_classes", "model.class_names", "model._instantiator"} & set(updates)  # through the data


@pytest.mark.parametrize("subcommand", ["validate", "test", "predict"])
def test_each_evaluating_subcommand_takes_the_checkpoints_settings(subcommand):
    assert settings(subcommand, checkpoint=CHECKPOINT).updates["backbone"] == "v3_small"


def test_fit_resumes_with_lightnings_merge_and_takes_nothing_from_the_checkpoint():
    assert settings("fit", checkpoint=CHECKPOINT) == Settings()
    assert checkpoint_path("fit", {"ckpt_path": "run.ckpt"}) is None
    assert checkpoint_path("test", {"ckpt_path": "run.ckpt"}) == "run.ckpt"


def test_explicit_settings_win_over_the_checkpoint():
    updates = settings("validate", ("model.lr", 0.002), ("data.batch_size", 4), checkpoint=CHECKPOINT).updates
    assert "model.lr" not in updates  # given on the command line, even with its default value
    assert "data.batch_size" not in updates
    config = {**DEFAULTS, **LINKED, "model.lr": 0.5, "ckpt_path": "run.ckpt"}  # a config file's value, not given
    assert "model.lr" not in cli_settings("validate", config, DEFAULTS, {"ckpt_path"}, CHECKPOINT, DETECT).updates


def test_an_explicit_architecture_flag_that_contradicts_the_checkpoint_is_one_line():
    with pytest.raises(ValueError) as error:
        settings("validate", ("backbone", "v3_large"), checkpoint=CHECKPOINT)  # the default, but given
    assert str(error.value) == (
        "--backbone v3_large contradicts the checkpoint run.ckpt (trained with backbone='v3_small'); "
        "leave --backbone out to use the checkpoint's"
    )
    with pytest.raises(ValueError, match=r"^--model.reduced_tail True contradicts the checkpoint run.ckpt"):
        settings("test", ("model.reduced_tail", True), checkpoint=CHECKPOINT)


def test_an_explicit_architecture_flag_that_agrees_with_the_checkpoint_is_kept():
    updates = settings("predict", ("backbone", "v3_small"), ("width", 0.5), checkpoint=CHECKPOINT).updates
    assert not {"backbone", "model.backbone", "width", "model.width"} & set(updates)
    assert updates["model.lr"] == 0.01


def test_a_non_architecture_flag_may_differ_from_the_checkpoint():
    updates = settings("validate", ("data.image_size", 128), checkpoint=CHECKPOINT).updates
    assert "data.image_size" not in updates and updates["model.image_size"] == 96  # the data's is the user's


def test_the_checkpoints_state_dict_is_the_weights():
    updates = settings("validate", checkpoint=CHECKPOINT).updates
    assert updates["model.weights"] is None and updates["model.backbone_weights"] is None  # nothing to download
    explicit = settings("validate", ("model.backbone_weights", "imagenet"), checkpoint=CHECKPOINT).updates
    assert "model.backbone_weights" not in explicit


@pytest.mark.parametrize("locator", [("data.format", "coco"), ("data.root", "/data"), ("data.val_images", "/v")])
def test_another_dataset_takes_no_data_settings_from_the_checkpoint(locator):
    updates = settings("validate", locator, checkpoint=CHECKPOINT).updates
    assert not [key for key in updates if key.startswith("data.")]
    assert updates["model.image_size"] == 96  # the model's are still the checkpoint's


def test_a_data_setting_linked_from_an_explicit_flag_is_not_the_checkpoints():
    shape = TaskShape(task="classify", architecture=("backbone", "num_classes", "width"), top_level=("backbone",
        "width", "resolution"), links=(("resolution", "data.resolution"),))  # fmt: skip
    config = {**DEFAULTS, **LINKED, "resolution": 64, "model.resolution": 64, "data.resolution": 64}
    config["ckpt_path"] = "run.ckpt"
    defaults = {**DEFAULTS, "resolution": 224, "data.resolution": 224}
    checkpoint = {"hyper_parameters": {"resolution": 96}, "datamodule_hyper_parameters": {"resolution": 96}}
    updates = cli_settings("validate", config, defaults, {"ckpt_path", "resolution"}, checkpoint, shape).updates
    assert "data.resolution" not in updates and "resolution" not in updates
    unset = {**config, "resolution": 224, "model.resolution": 224, "data.resolution": 224}
    updates = cli_settings("validate", unset, defaults, {"ckpt_path"}, checkpoint, shape)
    assert updates.updates["resolution"] == updates.updates["data.resolution"] == 96


def test_a_file_without_hyper_parameters_is_not_a_task_checkpoint():
    with pytest.raises(ValueError, match=r"^--ckpt_path run.ckpt holds no hyper_parameters: not a checkpoint of a"):
        settings("validate", checkpoint={"state_dict": {}})


def test_named_weights_bring_their_preprocessing_and_the_tasks_settings():
    entry = get_weights("ssdlite320_v3_large", "coco")
    result = settings("validate", ("model.weights", "coco"), ("model.reduced_tail", True), ("data.image_size", 320))
    assert result.updates["data.mean"] == list(entry.mean) == [0.5] * 3 and result.updates["data.std"] == [0.5] * 3
    assert "data.interpolation" not in result.updates  # not a key of the detector's data
    assert "data.image_size" not in result.updates  # given: the same size, so no warning either
    assert result.warnings == []
    assert settings("validate", ("model.weights", "coco")).updates["model.image_size"] == 320  # and its link


def test_an_explicit_setting_that_contradicts_the_weights_is_kept_with_a_warning():
    result = settings("validate", ("model.weights", "coco"), ("data.mean", (0.4, 0.4, 0.4)))
    assert "data.mean" not in result.updates and result.updates["data.std"] == [0.5] * 3
    assert result.warnings == [
        "--data.mean (0.4, 0.4, 0.4) contradicts the weights 'coco' of ssdlite320_v3_large (mean [0.5, 0.5, 0.5]); "
        "keeping --data.mean"
    ]


def test_backbone_weights_bring_their_preprocessing_but_not_the_task_models_size():
    entry = get_weights("v3_large", "imagenet")
    updates = settings("fit", ("model.backbone_weights", "imagenet"), ("data.mean", (0.5, 0.5, 0.5))).updates
    assert updates == {"data.std": list(entry.std)}  # the mean given; the ImageNet size is not the detector's
    assert entry.image_size != DEFAULTS["data.image_size"]


def test_predicting_with_model_weights_alone_names_the_classes_by_their_categories():
    categories = list(get_weights("ssdlite320_v3_large", "coco").categories)
    assert settings("predict", ("model.weights", "coco")).updates["data.class_names"] == categories
    assert "data.class_names" not in settings("validate", ("model.weights", "coco")).updates
    assert "data.class_names" not in settings("predict", ("model.weights", "coco"), ("data.class_names", ["a"])).updates


def test_no_named_weights_and_no_checkpoint_change_nothing():
    assert settings("fit", ("backbone", "v3_small"), ("model.backbone", "v3_small")) == Settings()
    assert settings("fit", ("model.weights", "no_such_tag")) == Settings()


def test_a_models_own_fit_defaults_fill_the_keys_not_given_with_a_note():
    v4 = (("backbone", "v4_conv_small"), ("model.backbone", "v4_conv_small"))
    own = dict(model_entry("ssdlite320_v4_conv_small").fit_defaults)
    assert own == {"trainer.max_epochs": 4}
    result = settings("fit", *v4)
    assert result.updates == own
    assert result.notes == [
        "ssdlite320_v4_conv_small trains with its own defaults: --trainer.max_epochs 4 "
        "(a flag given on the command line wins)"
    ]
    assert settings("fit", *v4, ("trainer.max_epochs", 2)) == Settings()  # given, though equal to the task's default
    assert settings("validate", *v4) == Settings()  # fit only
    assert settings("fit") == Settings()  # V3-Large has none
