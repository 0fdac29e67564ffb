"""SSDLite on every backbone, and parity with torchvision's ssdlite320_mobilenet_v3_large."""

import pytest
import torch
import torchvision

from backbones import list_backbones
from heads.ssdlite import SSDLiteHead
from tasks.detect.model import build_detector

NUM_CLASSES = 5


def targets_for(batch: int, size: int) -> list[dict[str, torch.Tensor]]:
    boxes = torch.tensor([[4.0, 6.0, 40.0, 50.0], [30.0, 20.0, size - 2.0, size - 8.0]])
    empty = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}
    return [{"boxes": boxes, "labels": torch.tensor([1, 4])} if i % 2 == 0 else empty for i in range(batch)]


@pytest.mark.parametrize("width", [0.5, 1.0])
@pytest.mark.parametrize("name", list_backbones())
def test_shapes_losses_and_detections_on_every_backbone(name, width):
    model = build_detector(name, NUM_CLASSES, width=width)
    size = 128
    images = torch.randn(2, 3, size, size)
    losses = model.train()(images, targets_for(2, size))
    assert set(losses) == {"bbox_regression", "classification"}
    total = sum(losses.values())
    assert torch.isfinite(total) and total > 0
    total.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    with torch.no_grad():
        detections = model.eval()(images)
        features = model.backbone(images)
        logits, codes = model.head(features)
    assert len(detections) == 2
    anchors = model.anchors(images, features)
    assert logits.shape == (2, anchors.shape[0], NUM_CLASSES) and codes.shape == (2, anchors.shape[0], 4)
    # six levels: stride 16, 32 and four extra blocks, 6 default boxes per location (ratios 1, 1', 2, 1/2, 3, 1/3)
    sizes = [size // 16, size // 32, 2, 1, 1, 1]
    assert anchors.shape[0] == 6 * sum(s * s for s in sizes)
    for d in detections:
        assert d["boxes"].shape[1] == 4 and (d["labels"] >= 1).all() and (d["labels"] < NUM_CLASSES).all()
        assert (d["boxes"] >= 0).all() and (d["boxes"] <= size).all()


def test_head_sizes_itself_from_channels():
    head = SSDLiteHead([96, 320], num_classes=3, num_anchors=[6] * 6, width=0.5)
    assert [b[0].conv.in_channels for b in head.classification] == [96, 320, 256, 128, 128, 64]
    with pytest.raises(ValueError, match="two backbone maps"):
        SSDLiteHead([16, 96, 320], num_classes=3, num_anchors=[6] * 6)


def test_reduced_tail_is_a_v3_option():
    with pytest.raises(TypeError, match="unknown option.*reduced_tail"):
        build_detector("v2", 3, reduced_tail=True)


def calibrated_torchvision_ssdlite() -> torch.nn.Module:
    """torchvision's SSDLite with batch-norm statistics from a few random batches (realistic activations)."""
    model = torchvision.models.detection.ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = None  # cumulative average
    model.train()
    with torch.no_grad():
        for _ in range(2):
            features = model.backbone(torch.rand(4, 3, 320, 320) * 2 - 1)
            model.head(list(features.values()))
    return model.eval()


def test_torchvision_ssdlite_checkpoint_gives_the_same_detections(tmp_path):
    reference = calibrated_torchvision_ssdlite()
    path = tmp_path / "ssdlite320_mobilenet_v3_large.pth"
    torch.save(reference.state_dict(), path)
    ours = build_detector("v3_large", 91, reduced_tail=True, weights=path).eval()
    images = torch.rand(2, 3, 320, 320)
    normalised = (images - 0.5) / 0.5  # torchvision's SSDLite normalisation, done by our data module
    with torch.no_grad():
        expected_head = reference.head(list(reference.backbone(normalised).values()))
        logits, codes = ours.head(ours.backbone(normalised))
        expected, detections = reference(list(images)), ours(normalised)
    assert (logits - expected_head["cls_logits"]).abs().max() <= 1e-3 * expected_head["cls_logits"].abs().max()
    assert (codes - expected_head["bbox_regression"]).abs().max() <= 1e-4 * 320
    for theirs, mine in zip(expected, detections, strict=True):
        top = 100  # the best detections; further down, scores tie within float noise and NMS order may differ
        assert torch.equal(mine["labels"][:top], theirs["labels"][:top])
        assert (mine["scores"][:top] - theirs["scores"][:top]).abs().max() <= 1e-4
        assert (mine["boxes"][:top] - theirs["boxes"][:top]).abs().max() / 320 <= 1e-4


def test_postprocess_equals_torchvision_on_the_same_head_outputs():
    reference = calibrated_torchvision_ssdlite()
    ours = build_detector("v3_large", 91, reduced_tail=True).eval()
    images = torch.rand(1, 3, 320, 320) * 2 - 1
    with torch.no_grad():
        features = list(reference.backbone(images).values())
        head = reference.head(features)
        image_list = torchvision.models.detection.image_list.ImageList(images, [(320, 320)])
        anchors = reference.anchor_generator(image_list, features)
        (expected,) = reference.postprocess_detections(head, anchors, image_list.image_sizes)
        (mine,) = ours.postprocess(head["cls_logits"], head["bbox_regression"], anchors[0], (320, 320))
    assert torch.equal(mine["labels"], expected["labels"])
    assert torch.equal(mine["scores"], expected["scores"]) and torch.equal(mine["boxes"], expected["boxes"])
