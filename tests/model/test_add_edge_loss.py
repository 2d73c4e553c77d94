"""edgercnn.add_edge_loss: the edge loss in any torchvision MaskRCNN, in a plain torch training loop."""

import re

import pytest
import torch
from torchvision.models.detection import maskrcnn_resnet50_fpn_v2
from torchvision.models.detection.roi_heads import RoIHeads

import edgercnn
from edgercnn import add_edge_loss
from edgercnn.config import Config
from edgercnn.core.errors import EdgeRCNNError
from edgercnn.model.losses import EdgeLoss
from edgercnn.model.rcnn import EdgeRoIHeads
from edgercnn.builders.model import build_model
from tests.model.v2small import SIZE, V2_SMALL, one_image
from tests.paths import REPO

README = REPO / "README.md"


def v2(**kw):
    return maskrcnn_resnet50_fpn_v2(weights=None, weights_backbone=None, **V2_SMALL, **kw)


def settings(heads: RoIHeads) -> dict:
    m, s, c = heads.proposal_matcher, heads.fg_bg_sampler, heads.box_coder
    return dict(thresholds=(heads.score_thresh, heads.nms_thresh, heads.detections_per_img),
                matcher=(m, m.high_threshold, m.low_threshold, m.allow_low_quality_matches),
                sampler=(s, s.batch_size_per_image, s.positive_fraction), coder=(c, c.weights, c.bbox_xform_clip),
                modules=dict(heads.named_children()), training=heads.training)


def plain_twin(model) -> torch.nn.Module:
    """``model`` with torchvision's own RoIHeads (same parts and settings): the plain torchvision model."""
    rh = model.roi_heads
    plain = RoIHeads(rh.box_roi_pool, rh.box_head, rh.box_predictor, rh.proposal_matcher.high_threshold,
                     rh.proposal_matcher.low_threshold, rh.fg_bg_sampler.batch_size_per_image,
                     rh.fg_bg_sampler.positive_fraction, rh.box_coder.weights, rh.score_thresh, rh.nms_thresh,
                     rh.detections_per_img, mask_roi_pool=rh.mask_roi_pool, mask_head=rh.mask_head,
                     mask_predictor=rh.mask_predictor)
    model.roi_heads = plain
    return model


def test_export_is_lazy_and_public():
    assert edgercnn.add_edge_loss is add_edge_loss and "add_edge_loss" in edgercnn.__all__
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        edgercnn.nope  # noqa: B018


def test_v2_keeps_weights_settings_and_state_dict_and_adds_loss_edge():
    torch.manual_seed(0)
    model = v2()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    kept = settings(model.roi_heads)
    rpn, transform, backbone = model.rpn, model.transform, model.backbone
    assert add_edge_loss(model, filters=("sobel", "laplace"), p=1, alpha=2) is model
    assert type(model.roi_heads) is EdgeRoIHeads
    assert model.roi_heads.edge_loss == EdgeLoss(filters=("sobel", "laplace"), p=1, weight=2)
    assert settings(model.roi_heads) == kept
    assert (model.rpn, model.transform, model.backbone) == (rpn, transform, backbone)
    after = model.state_dict()
    assert list(after) == list(v2().state_dict()) == list(before)
    assert all(torch.equal(before[k], after[k]) for k in before)

    model.train()
    losses = model(*one_image())
    assert set(losses) == {"loss_classifier", "loss_box_reg", "loss_mask", "loss_objectness", "loss_rpn_box_reg",
                           "loss_edge"}
    assert torch.isfinite(losses["loss_edge"]) and losses["loss_edge"] > 0
    losses["loss_edge"].backward()
    grad = model.roi_heads.mask_predictor.mask_fcn_logits.weight.grad
    assert grad is not None and grad.abs().sum() > 0


def test_second_call_replaces_settings_and_keeps_the_heads():
    model = build_model(Config(backbone="small", num_classes=1, canvas=[SIZE, SIZE], filters=[],
                               postprocess="matterport", mask_targets="binary"))
    heads = model.roi_heads
    assert heads.edge_loss is None
    add_edge_loss(model)
    add_edge_loss(model)
    assert model.roi_heads is heads and heads.edge_loss == EdgeLoss()
    assert (heads.postprocess, heads.mask_targets) == ("matterport", "binary")  # our recipe options stay
    add_edge_loss(model, filters="prewitt", smooth="gt")
    assert heads.edge_loss == EdgeLoss(filters=("prewitt",), smooth="gt")


def test_refuses_what_it_cannot_convert():
    with pytest.raises(EdgeRCNNError, match="needs a torchvision MaskRCNN, got Linear") as err:
        add_edge_loss(torch.nn.Linear(2, 2))
    assert "\n" not in str(err.value)

    class CustomHeads(RoIHeads):
        pass

    model = build_model(Config(backbone="small", num_classes=1, canvas=[SIZE, SIZE], filters=[]))
    plain_twin(model).roi_heads.__class__ = CustomHeads
    with pytest.raises(EdgeRCNNError, match="CustomHeads, a subclass of torchvision's RoIHeads"):
        add_edge_loss(model)
    with pytest.raises(ValueError, match="filters: unknown"):
        add_edge_loss(plain_twin(model), filters=("canny",))


def test_small_model_plain_loop_edge_loss_decreases_and_loads_into_plain_torchvision(tmp_path):
    torch.manual_seed(0)
    cfg = Config(backbone="small", num_classes=1, canvas=[SIZE, SIZE], filters=[])
    model = add_edge_loss(build_model(cfg))
    images, targets = one_image()
    # the whole model runs forward and backward; only the mask branch steps, so that on one image the proposals
    # stay put and the curve shows the masks learning (a from-scratch RPN and box head make it jump for ~50 steps)
    rh = model.roi_heads
    optimizer = torch.optim.Adam([*rh.mask_head.parameters(), *rh.mask_predictor.parameters()], lr=3e-3)
    model.train()
    edge = []
    for _ in range(20):  # overfit one image: over seeds 0-9 the last 3 average 0.01-0.25 of the first value
        losses = model(images, targets)
        optimizer.zero_grad()
        sum(losses.values()).backward()
        optimizer.step()
        edge.append(losses["loss_edge"].item())
    assert sum(edge[-3:]) / 3 < 0.6 * edge[0], edge

    torch.save(model.state_dict(), tmp_path / "model.pt")
    plain = plain_twin(build_model(cfg))
    assert type(plain.roi_heads) is RoIHeads
    plain.load_state_dict(torch.load(tmp_path / "model.pt", weights_only=True), strict=True)
    model.eval(), plain.eval()
    model.roi_heads.score_thresh = plain.roi_heads.score_thresh = 0.0  # compare every detection, not none
    with torch.no_grad():
        ours, theirs = model(images)[0], plain(images)[0]
    assert len(ours["boxes"]) > 0 and set(ours) == set(theirs)
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)


def readme_snippets() -> list[str]:
    """The python blocks of the README section on using the loss in one's own torchvision code."""
    text = README.read_text()
    section = text.split("## Use the loss in your own torchvision code", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def substitute(code: str, replacements: dict[str, str]) -> str:
    for old, new in replacements.items():
        assert code.count(old) == 1, f"README snippet changed: {old!r} not found once; update this test"
        code = code.replace(old, new)
    return code


TINY = ", ".join(f"{k}={v}" for k, v in V2_SMALL.items())


def test_readme_plain_loop_snippet_runs(tmp_path, monkeypatch):
    plain_loop, _ = readme_snippets()
    monkeypatch.chdir(tmp_path)
    code = substitute(plain_loop, {'weights="DEFAULT"': f"weights=None, weights_backbone=None, {TINY}"})
    namespace = {"loader": [one_image()]}
    exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102 - our own README
    assert namespace["losses"]["loss_edge"] > 0
    plain = v2().eval()
    assert type(plain.roi_heads) is RoIHeads
    plain.load_state_dict(torch.load(tmp_path / "model.pt", weights_only=True), strict=True)


def test_readme_coco_json_snippet_runs(tiny_shapes):
    _, coco_loop = readme_snippets()
    code = substitute(coco_loop, {
        '"data/mine"': repr(str(tiny_shapes)),
        "canvas=(1024, 800)": f"canvas=({SIZE}, {SIZE}), max_images=2",
        'weights_backbone="DEFAULT"': f"weights_backbone=None, {TINY}",
    })
    namespace = {}
    exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102 - our own README
    assert namespace["losses"]["loss_edge"] > 0
    assert namespace["model"].roi_heads.edge_loss == EdgeLoss()
