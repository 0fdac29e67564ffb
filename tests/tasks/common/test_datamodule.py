"""The data base: each task's format registry, the format type derived from it, arguments read from hparams."""

from __future__ import annotations

import inspect
import re
import typing
from typing import Any

import pytest

from tasks.classify.data.module import ClassificationDataModule
from tasks.common.datamodule import TaskDataModule
from tasks.common.formats import DataFormat, FormatRegistry
from tasks.detect.data.module import DetectionDataModule
from tasks.segment.data.module import SegmentationDataModule

# data module -> the formats its formats/ package holds, one module each
EXPECTED_FORMATS: dict[type[TaskDataModule], tuple[str, ...]] = {
    DetectionDataModule: ("coco", "synthetic", "voc"),
    SegmentationDataModule: ("coco", "masks", "synthetic", "voc"),
    ClassificationDataModule: ("imagefolder", "synthetic"),
}
MODULES = pytest.mark.parametrize("module", list(EXPECTED_FORMATS), ids=lambda m: m.__name__)


@MODULES
def test_registry_lists_the_formats(module: type[TaskDataModule]) -> None:
    registry = module.formats
    assert registry.names() == EXPECTED_FORMATS[module]
    for name in registry.names():
        data_format = registry.get(name)
        assert isinstance(data_format, DataFormat) and data_format.name == name
        assert callable(data_format.build) and callable(data_format.class_names)


@MODULES
def test_format_argument_type_is_the_registry(module: type[TaskDataModule]) -> None:
    """The CLI's choices for --data.format are the registered names, in the Literal of the argument."""
    hint = typing.get_type_hints(module.__init__, vars(inspect.getmodule(module)))["format"]
    assert typing.get_origin(hint) is typing.Literal
    assert typing.get_args(hint) == module.formats.names()
    assert inspect.signature(module).parameters["format"].default in module.formats.names()


@MODULES
def test_unknown_format_lists_the_registered_names(module: type[TaskDataModule]) -> None:
    names = re.escape(str(list(EXPECTED_FORMATS[module])))
    with pytest.raises(ValueError, match=rf"format='yolo' is not a registered \w+ format; valid formats: {names}"):
        module.formats.get("yolo")
    with pytest.raises(ValueError, match=rf"format='yolo'.*valid formats: {names}"):
        module(format="yolo", root="/data")  # type: ignore[arg-type]


@MODULES
def test_every_task_has_the_bad_sample_policy(module: type[TaskDataModule]) -> None:
    parameter = inspect.signature(module).parameters["skip_bad_samples"]
    assert parameter.default is False and parameter.annotation in (bool, "bool")


@MODULES
def test_arguments_are_read_from_hparams_not_copied(module: type[TaskDataModule], tmp_path: Any) -> None:
    data = module(batch_size=3, cache_dir=str(tmp_path), skip_bad_samples=True)
    arguments = set(inspect.signature(module).parameters)
    assert set(data.hparams) == arguments
    assert not arguments & set(vars(data))  # one copy: hparams
    assert (data.batch_size, data.cache_dir, data.skip_bad_samples, data.format) == (
        3,
        str(tmp_path),
        True,
        "synthetic",
    )
    with pytest.raises(AttributeError, match="no attribute 'no_such_argument'"):
        _ = data.no_such_argument


def test_registry_rejects_a_second_format_of_one_name() -> None:
    registry: FormatRegistry[DataFormat] = FormatRegistry("test", "tasks.detect.data.formats")
    first = DataFormat(name="a", build=lambda *args: None, class_names=lambda data: [])  # type: ignore[arg-type,return-value]
    assert registry.register(first) is first
    with pytest.raises(ValueError, match="test format 'a' is registered twice"):
        registry.register(first)
