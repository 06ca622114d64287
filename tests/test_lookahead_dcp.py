"""Lookahead with torch.distributed.checkpoint (DCP): on one process and on two FSDP2 ranks.

DCP keeps only an optimizer state dict's ``state`` (by fully qualified name, optionally
flattened to ``state.<fqn>.<key>``) and ``param_groups``, loads a checkpoint into the layout
of a fresh optimizer's state dict, and initializes an optimizer whose ``state`` is empty with a
zero-lr step. Every test saves, loads into fresh objects, continues, and requires the
uninterrupted run bit for bit.
"""

from __future__ import annotations

import pytest
import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)
from torch.testing import assert_close

from lookahead import Lookahead
from test_lookahead_ddp import batch, spawn
from test_lookahead_fsdp import RUNS, build, make_model, shard, snapshot, train_step

K, SAVE_AT, STEPS = 3, 7, 12  # saved one step into the third period
pytestmark = pytest.mark.filterwarnings("ignore:torch.distributed is disabled")


def load_planner(pullback, saved_at):
    # pullback="reset" right after a sync: the inner optimizer has no state to save, but the
    # fresh optimizer's layout lists it; such keys must be allowed to stay unloaded.
    reset_sync = pullback == "reset" and saved_at % K == 0
    return dcp.DefaultLoadPlanner(allow_partial_load=reset_sync)


def save(path, model, opt, options):
    state = {"model": get_model_state_dict(model), "optim": get_optimizer_state_dict(model, opt, options=options)}
    dcp.save(state, checkpoint_id=path)


def load(path, model, opt, options, planner=None):
    state = {"model": get_model_state_dict(model), "optim": get_optimizer_state_dict(model, opt, options=options)}
    dcp.load(state, checkpoint_id=path, planner=planner)
    set_model_state_dict(model, state["model"])
    set_optimizer_state_dict(model, opt, state["optim"], options=options)


def one_process(pullback, model=None):
    model = model or make_model()
    groups = [{"params": list(model[0].parameters())}, {"params": list(model[2:].parameters()), "lookahead_k": 2}]
    return model, Lookahead(torch.optim.AdamW(groups, lr=1e-2, weight_decay=0.1), k=K, pullback=pullback)


def step(model, opt, t):
    opt.zero_grad()
    model(batch(0, t)).square().mean().backward()
    opt.step()


@pytest.mark.parametrize("saved_at", [SAVE_AT, 2 * K])
@pytest.mark.parametrize("flatten", [False, True])
@pytest.mark.parametrize("pullback", ["none", "reset", "pullback"])
def test_one_process_dcp_resume_is_bit_identical(tmp_path, pullback, flatten, saved_at):
    options = StateDictOptions(flatten_optimizer_state_dict=flatten)
    model, opt = one_process(pullback)
    for t in range(saved_at):
        step(model, opt, t)
    save(tmp_path, model, opt, options)
    for t in range(saved_at, STEPS):
        step(model, opt, t)

    resumed, opt2 = one_process(pullback, make_model(seed=1))  # all must come from the checkpoint
    load(tmp_path, resumed, opt2, options, load_planner(pullback, saved_at))
    assert opt2.fast_steps == saved_at
    for t in range(saved_at, STEPS):
        step(resumed, opt2, t)
    assert_close(snapshot(resumed, opt2), snapshot(model, opt), rtol=0, atol=0)
    assert opt2.state_dict()["param_groups"] == opt.state_dict()["param_groups"]


@pytest.mark.parametrize("pullback", ["none", "reset"])
def test_dcp_never_steps_a_wrapper_that_has_stepped(pullback):
    """SGD without momentum has no inner state, and "reset" deletes it at every sync (k=1):
    the wrapper's state must still not look empty, or DCP would take a zero-lr step through
    it (advancing the counter) when no gradients are left."""
    runs = []
    for read_state in (False, True):
        model = make_model()
        opt = Lookahead(torch.optim.SGD(model.parameters(), lr=0.1), k=1, pullback=pullback)
        assert len(opt.state) == 0 and not opt.optimizer.state  # fresh, like a torch optimizer
        for t in range(3):
            step(model, opt, t)
            opt.zero_grad()
            assert len(opt.state) == len(list(model.parameters()))
            if read_state:
                for flatten in (False, True):
                    get_optimizer_state_dict(model, opt, options=StateDictOptions(flatten_optimizer_state_dict=flatten))
        assert opt.fast_steps == 3
        runs.append(snapshot(model, opt))
    assert_close(runs[1], runs[0], rtol=0, atol=0)


def test_fresh_state_is_empty_but_holds_phi0():
    model = make_model()
    opt = Lookahead(torch.optim.Adam(model.parameters(), lr=1e-2), k=2)
    assert len(opt.state) == 0 and list(opt.state) == []
    p = next(model.parameters())
    assert torch.equal(opt.state[p]["slow_param"], p.detach())
    assert p in opt.state  # read once, listed, as in a defaultdict


def save_worker(rank, root):
    """Trains, saves at SAVE_AT (both layouts), continues; a twin run never touches DCP."""
    results = {}
    for name, pullback in RUNS:
        model, twin = shard(make_model()), shard(make_model())
        opt, twin_opt = build(model, name, pullback, K), build(twin, name, pullback, K)
        for t in range(STEPS):
            if t == SAVE_AT:
                for flatten in (False, True):
                    save(root / f"{name}-{pullback}-{flatten}", model, opt, StateDictOptions(flatten_optimizer_state_dict=flatten))
            train_step(model, opt, batch(rank, t))
            train_step(twin, twin_opt, batch(rank, t))
        results[name, pullback] = snapshot(model, opt)
        assert_close(results[name, pullback], snapshot(twin, twin_opt), rtol=0, atol=0)
    if rank == 0:
        torch.save(results, root / "uninterrupted.pt")


def load_worker(rank, root):
    expected = torch.load(root / "uninterrupted.pt")
    for name, pullback in RUNS:
        for flatten in (False, True):
            model = shard(make_model(seed=1))
            opt = build(model, name, pullback, K)
            load(root / f"{name}-{pullback}-{flatten}", model, opt, StateDictOptions(flatten_optimizer_state_dict=flatten))
            assert opt.fast_steps == SAVE_AT
            for t in range(SAVE_AT, STEPS):
                train_step(model, opt, batch(rank, t))
            assert_close(snapshot(model, opt), expected[name, pullback], rtol=0, atol=0)


def test_fsdp2_dcp_save_on_two_ranks_load_on_two_fresh_ranks(tmp_path):
    spawn(save_worker, tmp_path)
    spawn(load_worker, tmp_path)
