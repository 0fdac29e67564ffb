"""`torch.compile` of every model without a graph break, `--model.compile true` on each task's CLI, `compile=True`
predictors, and `--trainer.precision bf16-mixed` on each task. Inductor's C++ builds take minutes on a small CPU,
so the CLI tests compile with a backend that counts dynamo's graphs and runs them as traced: what they check is
what gets compiled, once, and that checkpoints stay those of the eager network."""

from __future__ import annotations

import functools
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from tasks.common.cli import run_cli
from tasks.common.compile import DYNAMO_SETTINGS, compiled
from tasks.models import get_model, list_models, model_entry
from tasks.registry import get_task
from tests.helpers import QUIET_CPU_TRAINER, last_checkpoint_path

# each task's smallest CLI run: one training step and one validation batch per epoch, on tiny synthetic data
TINY = {
    "detect": {"data.image_size": 64, "data.synthetic_image_size": 64, "data.batch_size": 2},
    "segment": {"data.crop_size": 64, "data.base_size": 64, "data.synthetic_image_size": 64, "data.batch_size": 2},
    "classify": {
        "resolution": 32, "data.synthetic_image_size": 40, "data.batch_size": 2, "data.synthetic_train_images": 8,
    },
}  # fmt: skip
INPUT = {"detect": 64, "segment": 64, "classify": 32}
TASKS = list(TINY)
# compiling is checked in the slow tier: the fast tier is at its 3 minutes
SLOW = pytest.mark.slow


def tiny_fit(task: str, tmp_path: Path, *args: str):
    options = {
        "backbone": "v3_small", "width": 0.25, "data.num_workers": 0, "data.cache_dir": tmp_path / "cache",
        "data.synthetic_train_images": 2, "data.synthetic_val_images": 2, "trainer.limit_train_batches": 1,
        "trainer.limit_val_batches": 1, "trainer.num_sanity_val_steps": 0,
        "trainer.default_root_dir": tmp_path, **TINY[task],
    }  # fmt: skip
    arguments = [item for key, value in options.items() for item in (f"--{key}", str(value))]
    return run_cli(task, ["fit", *arguments, *QUIET_CPU_TRAINER, *args])


class CountingBackend:
    """A torch.compile backend that counts the graphs dynamo hands it and runs them as traced."""

    def __init__(self) -> None:
        self.graphs = 0

    def __call__(self, graph: torch.fx.GraphModule, example_inputs: list) -> object:
        self.graphs += 1
        return graph.forward


@pytest.fixture
def backend(monkeypatch: pytest.MonkeyPatch) -> CountingBackend:
    counting = CountingBackend()
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend=counting))
    torch._dynamo.reset()
    yield counting
    torch._dynamo.reset()


# Every head on every backbone but the larger V4s, which are conv_small's and hybrid_medium's blocks (UIB, fused IB,
# Mobile MQA) in longer tables: a graph break is a property of the blocks' code, not of how many there are.
EXPLAINED_MODELS = [
    name
    for name in list_models()
    if model_entry(name).arguments["backbone"] not in ("v4_conv_medium", "v4_conv_large", "v4_hybrid_large")
]


@pytest.mark.parametrize(
    "name",
    [pytest.param(name, marks=SLOW) for name in EXPLAINED_MODELS],
)
def test_every_model_compiles_without_a_graph_break(name):
    """Eval forward, the detector's post-processing included, as one graph (`torch._dynamo.explain`)."""
    model = get_model(name, width=0.25).eval()
    size = INPUT[model_entry(name).task]
    torch._dynamo.reset()
    with torch.no_grad(), torch._dynamo.config.patch(**DYNAMO_SETTINGS):
        explanation = torch._dynamo.explain(model)(torch.randn(2, 3, size, size))
    assert explanation.graph_break_count == 0, explanation.break_reasons
    assert explanation.graph_count == 1


@SLOW
@pytest.mark.parametrize("task", ["detect"])  # the wiring is TaskModule's, the same for every task
def test_compiled_fit_compiles_each_network_once_and_checkpoints_the_eager_one(task, tmp_path, backend, monkeypatch):
    compiled_models = []

    def recording(model):
        compiled_models.append(model)
        return compiled(model)

    monkeypatch.setattr("tasks.common.task.compiled", recording)
    cli = tiny_fit(task, tmp_path, "--model.compile", "true", "--trainer.max_epochs", "2")
    # the trainable network in training, one fused copy in both validations
    assert [model.training for model in compiled_models] == [True, False]
    assert backend.graphs >= 2
    assert "compile" not in cli.model.hparams
    module = get_task(task).module
    eager = module.load_from_checkpoint(last_checkpoint_path(cli.trainer))
    assert not eager.compile_networks
    assert list(eager.state_dict()) == list(cli.model.state_dict())
    assert list(eager.state_dict()) == list(module(**eager.hparams).state_dict())


# the fast tier runs the detector, the task whose post-processing and loss have the most to go wrong in bf16;
# the other tasks run in the slow tier
FAST_TASK_FIRST = [task if task == "detect" else pytest.param(task, marks=SLOW) for task in TASKS]


@pytest.mark.parametrize("task", FAST_TASK_FIRST)
def test_bf16_mixed_fit_gives_a_finite_loss(task, tmp_path):
    cli = tiny_fit(task, tmp_path, "--trainer.precision", "bf16-mixed", "--trainer.max_epochs", "1")
    loss = cli.trainer.callback_metrics["train/loss"]
    assert math.isfinite(float(loss))
    assert cli.trainer.precision == "bf16-mixed"


@SLOW
@pytest.mark.parametrize("task", ["detect"])  # the wiring is the Predictor base's, the same for every task
def test_compiled_predictor_gives_the_eager_predictors_results(task, backend):
    spec = get_task(task)
    module = spec.module(backbone="v3_small", width=0.25, num_classes=3).eval()
    preprocessing = {"detect": {"image_size": 64}, "classify": {"resolution": 32}}.get(task, {})
    image = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    eager = spec.predictor(module, preprocessing).predict(image)
    compiled_results = spec.predictor(module, preprocessing, compile=True).predict(image)
    assert backend.graphs == 1
    for want, found in zip(eager, compiled_results, strict=True):
        assert want.keys() == found.keys()
        for key, value in want.items():
            if isinstance(value, np.ndarray | torch.Tensor):
                np.testing.assert_array_equal(np.asarray(found[key]), np.asarray(value))
            else:
                assert found[key] == value, key
