"""RPN proposal selection over all FPN levels together (the authors' ProposalLayer, mrcnn/model.py:288-342) against
its formula on a tiny case, and through torchvision's RegionProposalNetwork.filter_proposals seam."""

import re

import torch
from torchvision.ops import box_iou

from edgercnn.config import Config, load_config
from edgercnn.config.recipes import load_recipe
from edgercnn.model.matterport import GLOBAL_PRE_NMS, MatterportRPN, select_proposals_globally
from edgercnn.builders.model import build_model


def greedy_nms(boxes, scores, thresh):
    """The formula: visit boxes by falling score, keep one unless it overlaps a kept one by more than thresh."""
    kept = []
    for i in sorted(range(len(scores)), key=lambda i: -float(scores[i])):
        if all(box_iou(boxes[i:i + 1], boxes[j:j + 1]).item() <= thresh for j in kept):
            kept.append(i)
    return kept


def expected(boxes, logits, shape, pre, thresh, post):
    order = sorted(range(len(logits)), key=lambda i: -float(logits[i]))[:pre]  # best over every level together
    b = boxes[order].clone()
    b[:, 0::2] = b[:, 0::2].clamp(0, shape[1])
    b[:, 1::2] = b[:, 1::2].clamp(0, shape[0])
    s = torch.sigmoid(logits[order])
    real = ((b[:, 2] - b[:, 0]) >= 1e-3) & ((b[:, 3] - b[:, 1]) >= 1e-3)  # clipped to nothing: torchvision's filter
    b, s = b[real], s[real]
    keep = greedy_nms(b, s, thresh)[:post]
    return b[keep], s[keep]


def test_global_selection_matches_the_formula_and_differs_from_per_level():
    # level 0: three anchors, level 1: three; the 3 best logits are all on level 0, two of them overlapping
    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30],
                          [40, 40, 60, 60], [0, 30, 12, 45], [44, 0, 60, 15]], dtype=torch.float)
    logits = torch.tensor([5.0, 4.5, 4.0, 1.0, 0.5, 3.0])
    shape = (64, 64)
    got_boxes, got_scores = select_proposals_globally(boxes[None], logits[None], [shape], 3, 0.5, 10)
    want_boxes, want_scores = expected(boxes, logits, shape, 3, 0.5, 10)
    assert torch.equal(got_boxes[0], want_boxes) and torch.allclose(got_scores[0], want_scores)
    assert len(got_boxes[0]) == 2  # box 1 suppressed by box 0; no level-1 anchor among the 3 best
    # torchvision's per-level top-2 would have kept level 1's best (logit 3.0): the seam picks by the key
    rpn = build_model(Config(backbone="small", num_classes=1, canvas=[64, 64], proposal_selection="global")).rpn
    assert isinstance(rpn, MatterportRPN) and rpn.proposal_selection == "global"
    rpn.eval()
    glob = rpn.filter_proposals(boxes[None], logits[:, None].clone(), [shape], [3, 3])[0][0]
    assert torch.equal(glob, select_proposals_globally(boxes[None], logits[None], [shape], GLOBAL_PRE_NMS,
                                                       rpn.nms_thresh, rpn.post_nms_top_n())[0][0])
    rpn.proposal_selection = "per_level"
    rpn._pre_nms_top_n = {"training": 2, "testing": 2}
    per_level = rpn.filter_proposals(boxes[None], logits[:, None].clone(), [shape], [3, 3])[0][0]
    assert any(torch.equal(b, boxes[5]) for b in per_level) and not any(torch.equal(b, boxes[5]) for b in
                                                                         select_proposals_globally(
                                                                             boxes[None], logits[None], [shape], 2,
                                                                             rpn.nms_thresh, 10)[0][0])


def test_random_case_matches_the_formula():
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(2, 300, 2, generator=g) * 100
    boxes = torch.cat([xy, xy + 5 + torch.rand(2, 300, 2, generator=g) * 40], dim=2)
    logits = torch.randn(2, 300, generator=g)
    got_b, got_s = select_proposals_globally(boxes, logits, [(110, 120), (90, 100)], 50, 0.7, 20)
    for i, shape in enumerate([(110, 120), (90, 100)]):
        want_b, want_s = expected(boxes[i], logits[i], shape, 50, 0.7, 20)
        assert torch.allclose(got_b[i], want_b) and torch.allclose(got_s[i], want_s)


def test_authors_recipes_select_globally_and_every_source_names_file_and_line():
    for name in ("authors-coco", "authors-cityscapes"):
        assert load_config(None, {"recipe": name}).proposal_selection == "global"
        unnamed = [key for key, entry in load_recipe(name)["keys"].items()
                   if not re.search(r"[a-z_/]+\.py:\d+", str(entry["source"]))]
        assert unnamed == [], name
    assert Config().proposal_selection == "per_level"
