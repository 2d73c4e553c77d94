"""torchvision's v2 Mask R-CNN at test size and one fixed image for it, shared by the tests of the edge-loss and
mask-loss seams on torchvision's own model."""

import torch

SIZE = 64
#: torchvision's v2 model at test size, with settings off torchvision's defaults (to see that they are kept)
V2_SMALL = dict(min_size=SIZE, max_size=SIZE, rpn_pre_nms_top_n_train=100, rpn_post_nms_top_n_train=50,
                rpn_pre_nms_top_n_test=50, rpn_post_nms_top_n_test=25, box_batch_size_per_image=32,
                box_positive_fraction=0.5, box_fg_iou_thresh=0.6, box_score_thresh=0.01, box_detections_per_img=20)


def one_image():
    """One fixed 64×64 image with two rectangles and its torchvision target."""
    image = torch.rand(3, SIZE, SIZE, generator=torch.Generator().manual_seed(0)) * 0.3
    masks = torch.zeros(2, SIZE, SIZE, dtype=torch.uint8)
    masks[0, 8:36, 10:40] = 1
    masks[1, 30:58, 34:60] = 1
    image[:, masks.any(0).bool()] += 0.5
    boxes = torch.tensor([[10.0, 8, 40, 36], [34, 30, 60, 58]])
    return [image], [{"boxes": boxes, "labels": torch.tensor([1, 1]), "masks": masks}]
