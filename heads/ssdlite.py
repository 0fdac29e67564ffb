"""SSDLite (MobileNetV2 paper, section 6.3; MobileNetV3 paper, section 6.2).

Six feature maps: the backbone's C4 expansion (stride 16) and last map (stride 32), plus four extra blocks
(1x1, 3x3 depthwise stride 2, 1x1). Every level gets depthwise-separable class and box predictors.
Default boxes, box coding, matching and NMS are torchvision's (`DefaultBoxGenerator`, `BoxCoder`,
`SSDMatcher`, `batched_nms`), so a torchvision SSDLite checkpoint gives the same detections.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.detection import _utils as det_utils
from torchvision.models.detection.anchor_utils import DefaultBoxGenerator
from torchvision.models.detection.image_list import ImageList
from torchvision.ops import box_iou, clip_boxes_to_image

from backbones.builder import MobileNetBackbone
from backbones.layers import MEMORY_FORMAT, ConvNormAct
from heads.detection_postprocess import DetectionPostprocess, unpadded

EXTRA_WIDTHS = (512, 256, 256, 128)
MIN_EXTRA_WIDTH = 16
NORM = {"norm_eps": 1e-3}  # torchvision's eps; the momentum is the tasks' (`tasks.common.task.NORM_MOMENTUM`)
BOX_CODER_WEIGHTS = (10.0, 10.0, 5.0, 5.0)


def normal_init(module: nn.Module, std: float = 0.03) -> None:
    """torchvision's SSDLite initialisation: of the layers it adds, and of a backbone trained from scratch."""
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d):
            nn.init.normal_(layer.weight, mean=0.0, std=std)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)


def extra_block(in_channels: int, out_channels: int) -> nn.Sequential:
    """1x1 to half width, 3x3 depthwise stride 2, 1x1 to full width; all BN + ReLU6."""
    mid = out_channels // 2
    return nn.Sequential(
        ConvNormAct(in_channels, mid, 1, activation="relu6", **NORM),
        ConvNormAct(mid, mid, 3, stride=2, groups=mid, activation="relu6", **NORM),
        ConvNormAct(mid, out_channels, 1, activation="relu6", **NORM),
    )


def prediction_block(in_channels: int, out_channels: int) -> nn.Sequential:
    """3x3 depthwise + BN + ReLU6, then a 1x1 conv (with bias) to the predictions."""
    return nn.Sequential(
        ConvNormAct(in_channels, in_channels, 3, groups=in_channels, activation="relu6", **NORM),
        nn.Conv2d(in_channels, out_channels, 1),
    )


class SSDLiteHead(nn.Module):
    """Extra feature blocks and the class/box predictors, sized from the backbone's two tap channels."""

    # the layers whose output size is the class count (each level's last 1x1 class conv): fine-tuning weights of
    # another class count replaces them (`backbones.weights.load_task_weights`), keeping `normal_init`'s values
    class_layers: tuple[str, ...] = tuple(f"classification.{level}.1" for level in range(2 + len(EXTRA_WIDTHS)))

    def __init__(self, in_channels: Sequence[int], num_classes: int, num_anchors: Sequence[int], width: float = 1.0):
        super().__init__()
        if len(in_channels) != 2:
            raise ValueError(f"SSDLite takes two backbone maps (C4 expansion, last), got channels {list(in_channels)}")
        widths = [max(MIN_EXTRA_WIDTH, int(w * width)) for w in EXTRA_WIDTHS]
        inputs = [in_channels[1], *widths[:-1]]
        self.extra = nn.ModuleList(extra_block(c_in, c_out) for c_in, c_out in zip(inputs, widths, strict=True))
        level_channels = [*in_channels, *widths]
        if len(num_anchors) != len(level_channels):
            raise ValueError(f"{len(num_anchors)} anchor settings for {len(level_channels)} feature levels")
        self.classification = nn.ModuleList(
            prediction_block(c, num_classes * a) for c, a in zip(level_channels, num_anchors, strict=True)
        )
        self.regression = nn.ModuleList(
            prediction_block(c, 4 * a) for c, a in zip(level_channels, num_anchors, strict=True)
        )
        self.num_classes = num_classes
        normal_init(self)

    def forward(self, features: list[Tensor]) -> tuple[Tensor, Tensor]:
        """(N, HWA, num_classes) class logits and (N, HWA, 4) box codes over all six levels."""
        x = features[-1]
        for block in self.extra:
            x = block(x)
            features = [*features, x]
        logits = [_flatten(p(f), self.num_classes) for p, f in zip(self.classification, features, strict=True)]
        codes = [_flatten(p(f), 4) for p, f in zip(self.regression, features, strict=True)]
        return torch.cat(logits, dim=1), torch.cat(codes, dim=1)


def _flatten(x: Tensor, columns: int) -> Tensor:
    # (N, A*K, H, W) -> (N, H*W*A, K); a free view for channels-last maps
    return x.permute(0, 2, 3, 1).reshape(x.shape[0], -1, columns)


class SSDLite(nn.Module):
    """Backbone + SSDLite head. Train mode: `(images, targets) -> losses`; eval: `images -> detections`.

    Images are a normalised (N, 3, H, W) batch; target and detection boxes are x1, y1, x2, y2 in its pixels;
    labels count from 1 (0 is background), as in torchvision's detectors.
    """

    def __init__(
        self,
        backbone: MobileNetBackbone,
        num_classes: int,
        *,
        width: float = 1.0,
        aspect_ratios: Sequence[Sequence[int]] = ((2, 3),) * 6,
        min_ratio: float = 0.2,
        max_ratio: float = 0.95,
        iou_threshold: float = 0.5,
        negative_to_positive: int = 3,
        score_threshold: float = 0.001,
        nms_threshold: float = 0.55,
        topk_candidates: int = 300,
        detections_per_image: int = 300,
    ) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"num_classes counts the background too and must be >= 2, got {num_classes}")
        self.backbone = backbone
        self.anchor_generator = DefaultBoxGenerator([list(r) for r in aspect_ratios], min_ratio, max_ratio)
        self.head = SSDLiteHead(
            backbone.feature_info.channels(),
            num_classes,
            self.anchor_generator.num_anchors_per_location(),
            width,
        ).to(memory_format=MEMORY_FORMAT)
        self.box_coder = det_utils.BoxCoder(weights=BOX_CODER_WEIGHTS)
        self.matcher = det_utils.SSDMatcher(iou_threshold)
        self.negative_to_positive = negative_to_positive
        self.detection_postprocess = DetectionPostprocess(
            score_threshold, nms_threshold, topk_candidates, detections_per_image
        )
        self.num_classes = num_classes
        self._anchor_cache: tuple[tuple, Tensor] | None = None

    def forward(self, images: Tensor, targets: list[dict[str, Tensor]] | None = None):
        features = self.backbone(images)
        logits, codes = self.head(features)
        anchors = self.anchors(images, features)
        if self.training:
            if targets is None:
                raise ValueError("SSDLite in train mode needs targets (a list of dicts with boxes and labels)")
            return self.loss(logits, codes, anchors, targets)
        return self.postprocess(logits, codes, anchors, images.shape[-2:])

    def anchors(self, images: Tensor, features: list[Tensor]) -> Tensor:
        """Default boxes (HWA, 4) in input pixels, computed once per input size."""
        key = (tuple(images.shape[-2:]), images.device, images.dtype)
        if self._anchor_cache is None or self._anchor_cache[0] != key:
            levels = [features[0], features[1]]
            x = features[-1]
            with torch.no_grad():  # only the shapes of the extra levels matter
                for size in _extra_sizes(x.shape[-2:], len(self.head.extra)):
                    levels.append(x.new_empty(1, 1, *size))
            image_list = ImageList(images[:1], [tuple(images.shape[-2:])])
            self._anchor_cache = (key, self.anchor_generator(image_list, levels)[0])
        return self._anchor_cache[1]

    def loss(self, logits: Tensor, codes: Tensor, anchors: Tensor, targets: list[dict[str, Tensor]]):
        """Smooth-L1 box loss and cross-entropy with 3:1 hard negative mining, both over the positives."""
        class_targets = torch.zeros(logits.shape[:2], dtype=torch.int64, device=logits.device)
        positive_codes, matched_boxes, positive_anchors = [], [], []
        for index, target in enumerate(targets):
            boxes = target["boxes"]
            if boxes.numel() == 0:
                continue
            matches = self.matcher(box_iou(boxes, anchors))
            foreground = torch.where(matches >= 0)[0]
            class_targets[index, foreground] = target["labels"][matches[foreground]]
            positive_codes.append(codes[index, foreground])
            matched_boxes.append(boxes[matches[foreground]])
            positive_anchors.append(anchors[foreground])
        num_positive = max(1, sum(len(c) for c in positive_codes))
        if positive_codes:
            regression_targets = self.box_coder.encode_single(torch.cat(matched_boxes), torch.cat(positive_anchors))
            box_loss = F.smooth_l1_loss(torch.cat(positive_codes), regression_targets, reduction="sum")
        else:
            box_loss = codes.sum() * 0.0
        class_loss = F.cross_entropy(logits.flatten(0, 1), class_targets.flatten(), reduction="none")
        class_loss = class_loss.view_as(class_targets)
        foreground = class_targets > 0
        num_negative = self.negative_to_positive * foreground.sum(1, keepdim=True)
        negative_loss = class_loss.detach().masked_fill(foreground, -float("inf"))
        order = negative_loss.argsort(1, descending=True)
        hard_negative = order.argsort(1) < num_negative
        return {
            "bbox_regression": box_loss / num_positive,
            "classification": (class_loss[foreground].sum() + class_loss[hard_negative].sum()) / num_positive,
        }

    @torch.no_grad()
    def postprocess(self, logits: Tensor, codes: Tensor, anchors: Tensor, image_size) -> list[dict[str, Tensor]]:
        """Per image: decode, clip, per-class score threshold and top-k, class-wise NMS, keep the best
        (`DetectionPostprocess`, the program an end-to-end export runs)."""
        scores, boxes = decode(self.box_coder, logits, codes, anchors, image_size)
        return unpadded(*self.detection_postprocess(scores, boxes))


def decode(
    box_coder: det_utils.BoxCoder, logits: Tensor, codes: Tensor, anchors: Tensor, image_size: Sequence[int]
) -> tuple[Tensor, Tensor]:
    """Softmax class scores [N, A, K] and the boxes [N, A, 4] that `codes` give from the default boxes `anchors`
    [A, 4], clipped to the image."""
    boxes = box_coder.decode_single(codes.reshape(-1, 4), anchors.expand_as(codes).reshape(-1, 4))
    return F.softmax(logits, dim=-1), clip_boxes_to_image(boxes.reshape(codes.shape), tuple(image_size))


def _extra_sizes(size, count: int) -> list[tuple[int, int]]:
    """Spatial sizes after each stride-2, padding-1, 3x3 extra block."""
    sizes, (h, w) = [], size
    for _ in range(count):
        h, w = (h - 1) // 2 + 1, (w - 1) // 2 + 1
        sizes.append((h, w))
    return sizes
