"""`predict_video` and `stream_video` of every task's predictor: one result per frame (its index and time added to
what `predict` gives for that frame), with or without the annotated video."""

from __future__ import annotations

from typing import Any

import cv2
import pytest
import torch
from torch import Tensor

from tasks.registry import get_task
from tests.helpers import predictor_checkpoint, read_video, write_video

FRAMES, FPS, SIZE = 5, 5.0, (64, 64)


@pytest.fixture(scope="module", params=["detect", "segment", "classify"])
def predictor(request, tmp_path_factory) -> Any:
    task = request.param
    checkpoint, _ = predictor_checkpoint(task, tmp_path_factory.mktemp(task))
    return get_task(task).predictor.from_checkpoint(checkpoint)


def assert_same_result(have: dict[str, Any], want: dict[str, Any]) -> None:
    assert have.keys() == want.keys()
    for key, value in want.items():
        assert torch.equal(have[key], value) if isinstance(value, Tensor) else have[key] == value, key


def test_frame_results_equal_predict_on_the_same_frames(predictor, tmp_path):
    source = write_video(tmp_path / "in.mp4", frames=FRAMES, size=SIZE, fps=FPS)
    frames = [cv2.cvtColor(frame, cv2.COLOR_BGR2RGB) for frame in read_video(source)]  # as decoded (mp4v is lossy)
    expected = predictor.predict(frames, batch_size=2)

    video = predictor.predict_video(source, tmp_path / "out" / "annotated.avi", batch_size=2)
    assert video.frames == len(video.results) == len(frames) == FRAMES
    assert video.fps == FPS and video.size == SIZE and video.output == tmp_path / "out" / "annotated.avi"
    assert len(read_video(video.output)) == FRAMES
    for index, (have, want) in enumerate(zip(video.results, expected, strict=True)):
        assert have["frame"] == index and have["time"] == pytest.approx(index / FPS)
        assert_same_result({k: v for k, v in have.items() if k not in ("frame", "time")}, want)

    # results only: nothing written; the stream gives the same results one at a time
    alone = predictor.predict_video(source, batch_size=2)
    assert alone.output is None and alone.frames == FRAMES
    stream = predictor.stream_video(source, batch_size=2)
    first = next(stream)
    assert_same_result(first, video.results[0])
    assert [r["frame"] for r in stream] == list(range(1, FRAMES))


def test_video_arguments_are_checked_before_any_frame_is_read(predictor, tmp_path):
    with pytest.raises(ValueError, match=r"the video suffix must be one of"):
        predictor.stream_video(tmp_path / "in.mp4", tmp_path / "out.gif")
    with pytest.raises(FileNotFoundError, match=r"video .*missing\.mp4: no such file"):
        predictor.stream_video(tmp_path / "missing.mp4")
    with pytest.raises(ValueError, match=r"batch_size must be >= 1, got 0"):
        predictor.predict_video(tmp_path / "missing.mp4", batch_size=0)
