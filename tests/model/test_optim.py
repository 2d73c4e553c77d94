"""The optimizer's implementations (fused / foreach / plain): the state round-trips through a checkpoint file, and
parameters without a gradient (frozen by staged unfreezing) are left alone."""

import pytest
import torch
from torch import nn

from edgercnn.model.optim import IMPLEMENTATIONS, make_optimizer, implementation_of
from edgercnn.core.checkpoint import read_checkpoint, write_checkpoint  # the trainer's file format


def tiny_model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.GroupNorm(2, 4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 2))


def step(model, opt, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 3, 8, 8, generator=g)
    opt.zero_grad(set_to_none=True)
    model(x).square().sum().backward()
    opt.step()


def test_auto_picks_fused_adamw_and_foreach_sgd():
    assert implementation_of(make_optimizer("adamw", tiny_model(), 1e-2, 0.9, 1e-4)) == "fused"  # CPU: torch >= 2.4
    assert implementation_of(make_optimizer("sgd", tiny_model(), 1e-2, 0.9, 1e-4)) == "foreach"
    assert implementation_of(make_optimizer("adamw", tiny_model(), 1e-2, 0.9, 1e-4, implementation="plain")) == "plain"
    with pytest.raises(ValueError, match="implementation"):
        make_optimizer("adamw", tiny_model(), 1e-2, 0.9, 1e-4, implementation="fast")
    with pytest.raises(ValueError, match="for sgd"):
        make_optimizer("sgd", tiny_model(), 1e-2, 0.9, 1e-4, implementation="fused")


@pytest.mark.parametrize("name", ["adamw", "sgd"])
@pytest.mark.parametrize("mode", ["uniform", "per_size"])
def test_checkpoint_round_trip_gives_identical_next_step(tmp_path, name, mode):
    model = tiny_model()
    opt = make_optimizer(name, model, 1e-2, 0.9, 1e-4, mode)
    for s in range(3):
        step(model, opt, s)
    write_checkpoint(tmp_path / "c.pt", {"model": model.state_dict(), "optimizer": opt.state_dict(), "scaler": {},
                                         "step": 3, "wall_time_s": 0.0, "rng": {}, "config": {}})
    step(model, opt, 3)  # the uninterrupted run

    resumed = tiny_model(seed=1)  # other weights: all of them must come from the file
    opt2 = make_optimizer(name, resumed, 1e-2, 0.9, 1e-4, mode)
    state = read_checkpoint(tmp_path / "c.pt")
    resumed.load_state_dict(state["model"])
    opt2.load_state_dict(state["optimizer"])
    assert implementation_of(opt2) == implementation_of(opt)
    step(resumed, opt2, 3)
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), resumed.parameters()))


def test_plain_checkpoint_resumes_on_the_plain_path(tmp_path):
    """A run started before fused updates (or with them off) keeps its arithmetic when resumed."""
    model = tiny_model()
    opt = make_optimizer("adamw", model, 1e-2, 0.9, 1e-4, implementation="plain")
    step(model, opt, 0)
    opt2 = make_optimizer("adamw", model, 1e-2, 0.9, 1e-4)
    opt2.load_state_dict(opt.state_dict())
    assert implementation_of(opt2) == "plain"


@pytest.mark.parametrize("name,implementation", [("adamw", i) for i in IMPLEMENTATIONS] +
                         [("sgd", i) for i in IMPLEMENTATIONS if i != "fused"])
def test_frozen_parameters_stay_put_and_keep_no_state(name, implementation):
    """Staged unfreezing only toggles requires_grad: the optimizer is kept, frozen tensors get no update; the
    next stage's step updates tensors with and without optimizer state together (fused SGD failed there)."""
    model = tiny_model()
    opt = make_optimizer(name, model, 1e-2, 0.9, 1e-4, implementation=implementation)
    frozen = list(model[0].parameters())
    for p in frozen:
        p.requires_grad_(False)
    before = [p.detach().clone() for p in model.parameters()]
    step(model, opt, 0)
    after = list(model.parameters())
    assert all(torch.equal(b, a) for b, a in zip(before[:2], after[:2]))  # the conv: frozen
    assert all(not torch.equal(b, a) for b, a in zip(before[2:], after[2:]))  # the rest: trained
    assert all(p not in opt.state for p in frozen)
    for p in frozen:  # the next stage unfreezes it: now it trains, with the same optimizer
        p.requires_grad_(True)
    step(model, opt, 1)
    assert not torch.equal(before[0], model[0].weight)
