"""Lookahead as a torch.optim.Optimizer: checkpoints, delegation, hooks, AMP, copies.

The lockstep tests follow timm's ``_test_state_dict`` pattern: train, save, load into a fresh
wrapper around a fresh inner optimizer, then continue both and require identical weights.
"""

from __future__ import annotations

import copy
import pickle

import pytest
import torch
from torch.testing import assert_close

from conftest import roundtrip
from lookahead import Lookahead

INNER = {
    "sgd": lambda ps: torch.optim.SGD(ps, lr=0.1),
    "sgd_momentum": lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, weight_decay=1e-2),
    "sgd_nesterov": lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True),
    "adam": lambda ps: torch.optim.Adam(ps, lr=1e-2),
    "adamw": lambda ps: torch.optim.AdamW(ps, lr=1e-2, weight_decay=0.1),
    "radam": lambda ps: torch.optim.RAdam(ps, lr=1e-2),
}


def make_model(seed=0, dtype=torch.float32):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1)).to(dtype)


def train(model, opt, steps, start=0):
    for t in range(start, start + steps):
        g = torch.Generator().manual_seed(t)
        x = torch.randn(16, 4, generator=g, dtype=next(model.parameters()).dtype)
        opt.zero_grad()
        model(x).square().mean().backward()
        opt.step()


def slow_of(opt):
    return [opt.state[p]["slow_param"] for g in opt.param_groups for p in g["params"]]


@pytest.mark.parametrize("pullback", ["none", "reset", "pullback"])
@pytest.mark.parametrize("name", INNER)
def test_lockstep_resume_mid_period(name, pullback):
    model = make_model()
    opt = Lookahead(INNER[name](model.parameters()), k=3, alpha=0.5, pullback=pullback)
    train(model, opt, 7)  # two syncs, then one step into the third period
    saved = roundtrip({"model": model.state_dict(), "opt": opt.state_dict()})
    resumed = make_model(seed=1)
    resumed.load_state_dict(saved["model"])
    opt2 = Lookahead(INNER[name](resumed.parameters()), k=3, alpha=0.5, pullback=pullback)
    opt2.load_state_dict(saved["opt"])
    assert opt2.fast_steps == 7
    for t in range(7, 15):
        train(model, opt, 1, start=t)
        train(resumed, opt2, 1, start=t)
        assert_close(list(resumed.parameters()), list(model.parameters()), rtol=0, atol=0)
        assert_close(slow_of(opt2), slow_of(opt), rtol=0, atol=0)


def test_state_dict_format_and_determinism():
    """torch.optim's layout, which DCP keeps whole: the inner optimizer's and the wrapper's
    entries side by side per parameter, the settings and the counter in the groups."""
    model = make_model()
    opt = Lookahead(INNER["adam"](model.parameters()), k=3, alpha=0.8, pullback="pullback")
    train(model, opt, 4)
    sd = opt.state_dict()
    assert set(sd) == {"state", "param_groups"}
    settings = {key: v for key, v in sd["param_groups"][0].items() if key.startswith("lookahead_")}
    assert settings == {"lookahead_k": 3, "lookahead_alpha": 0.8, "lookahead_pullback": "pullback", "lookahead_step": 4}
    assert sorted(sd["state"]) == [0, 1, 2, 3]
    assert set(sd["state"][0]) == {"step", "exp_avg", "exp_avg_sq", "slow_param", "pullback_state"}
    assert set(sd["state"][0]["pullback_state"]) == {"exp_avg", "exp_avg_sq"}
    assert sd["param_groups"] == opt.optimizer.state_dict()["param_groups"]
    again = opt.state_dict()
    assert again["param_groups"] == sd["param_groups"]
    assert_close(again["state"], sd["state"], rtol=0, atol=0)


def test_per_group_settings_and_counter_survive_the_state_dict():
    model = make_model()
    groups = [
        {"params": model[0].parameters(), "lookahead_k": 2, "lookahead_alpha": 0.3, "lookahead_pullback": "pullback"},
        {"params": model[2].parameters()},
    ]
    opt = Lookahead(INNER["adam"](groups), k=3, alpha=0.8)
    train(model, opt, 5)  # mid-period for both groups
    saved = roundtrip({"model": model.state_dict(), "opt": opt.state_dict()})
    resumed = make_model(seed=1)
    resumed.load_state_dict(saved["model"])
    opt2 = Lookahead(INNER["adam"]([{"params": resumed[0].parameters()}, {"params": resumed[2].parameters()}]), k=4)
    opt2.load_state_dict(saved["opt"])  # the settings come from the state dict, as lr does

    def settings(o):
        return [{k: v for k, v in g.items() if k.startswith("lookahead_")} for g in o.param_groups]

    assert settings(opt2) == settings(opt) == [
        {"lookahead_k": 2, "lookahead_alpha": 0.3, "lookahead_pullback": "pullback", "lookahead_step": 5},
        {"lookahead_k": 3, "lookahead_alpha": 0.8, "lookahead_pullback": "none", "lookahead_step": 5},
    ]
    for t in range(5, 12):
        train(model, opt, 1, start=t)
        train(resumed, opt2, 1, start=t)
        assert_close(list(resumed.parameters()), list(model.parameters()), rtol=0, atol=0)
        assert_close(slow_of(opt2), slow_of(opt), rtol=0, atol=0)


def old_layout(opt):
    """What Lookahead.state_dict() returned before the settings moved into the groups."""
    inner = opt.optimizer.state_dict()
    keys = ("lookahead_k", "lookahead_alpha", "lookahead_pullback", "lookahead_step")
    groups = [{k: v for k, v in g.items() if k not in keys} for g in inner["param_groups"]]
    own = {i: {k: e[k] for k in ("slow_param", "pullback_state") if k in e} for i, e in opt.state_dict()["state"].items()}
    return {
        "state": own, "param_groups": groups, "inner": {"state": inner["state"], "param_groups": groups},
        "lookahead": {"k": opt.k, "alpha": opt.alpha, "pullback": opt.pullback, "fast_steps": opt.fast_steps},
    }


@pytest.mark.parametrize("counter", ["int", "tensor"])
def test_earlier_layout_and_tensor_counters_load(counter):
    model = make_model()
    opt = Lookahead(INNER["adam"](model.parameters()), k=3, alpha=0.5, pullback="pullback")
    train(model, opt, 7)
    saved = roundtrip({"model": model.state_dict(), "opt": old_layout(opt), "new": opt.state_dict()})
    if counter == "tensor":  # a counter saved as a tensor (as torch.optim saves "step") loads too
        saved["opt"] = saved["new"]
        for group in saved["opt"]["param_groups"]:
            group["lookahead_step"] = torch.tensor(7.0)
    resumed = make_model(seed=1)
    resumed.load_state_dict(saved["model"])
    opt2 = Lookahead(INNER["adam"](resumed.parameters()), k=5)
    opt2.load_state_dict(saved["opt"])
    assert (opt2.k, opt2.fast_steps, opt2.pullback) == (3, 7, "pullback")
    for t in range(7, 12):
        train(model, opt, 1, start=t)
        train(resumed, opt2, 1, start=t)
    assert_close(list(resumed.parameters()), list(model.parameters()), rtol=0, atol=0)
    assert_close(slow_of(opt2), slow_of(opt), rtol=0, atol=0)


def test_state_shows_inner_and_own_entries_per_parameter():
    """opt.state[p] is where tools (DCP) look for all of a parameter's state."""
    model = make_model()
    opt = Lookahead(INNER["sgd_momentum"](model.parameters()), k=2, pullback="pullback")
    assert len(opt.state) == 0  # fresh, as a torch optimizer's
    train(model, opt, 1)
    p = next(model.parameters())
    assert list(opt.state) == list(model.parameters()) and p in opt.state
    assert list(opt.state[p]) == ["momentum_buffer", "slow_param", "pullback_state"]
    assert opt.state[p]["momentum_buffer"] is opt.optimizer.state[p]["momentum_buffer"]
    assert "slow_param" not in opt.optimizer.state[p]  # the inner optimizer sees its own keys only
    buffer = torch.ones_like(p)
    opt.state[p]["momentum_buffer"] = buffer  # writes go to the key's owner
    assert opt.optimizer.state[p]["momentum_buffer"] is buffer
    assert dict(opt.state[p]).keys() == opt.state_dict()["state"][0].keys()


def test_inner_only_state_dict_loads_with_warning():
    """A plain optimizer's state dict, which is also what the official implementation saves."""
    model = make_model()
    plain = INNER["sgd_momentum"](model.parameters())
    train(model, plain, 3)
    opt = Lookahead(INNER["sgd_momentum"](model.parameters()), k=3)
    train(model, opt, 2)
    with torch.no_grad():
        model[0].weight.add_(1.0)
    with pytest.warns(UserWarning, match="without Lookahead entries"):
        opt.load_state_dict(roundtrip(plain.state_dict()))
    assert opt.fast_steps == 0
    assert_close(slow_of(opt), list(model.parameters()), rtol=0, atol=0)
    assert_close(opt.optimizer.state_dict()["state"], plain.state_dict()["state"], rtol=0, atol=0)


def test_mismatched_parameters_raise_value_error():
    small, big = torch.nn.Linear(3, 2), torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Linear(2, 1))
    sd = Lookahead(torch.optim.SGD(big.parameters(), lr=0.1)).state_dict()
    opt = Lookahead(torch.optim.SGD(small.parameters(), lr=0.1))
    with pytest.raises(ValueError, match=r"\(4 parameters\).*\(2 parameters\)"):
        opt.load_state_dict(sd)
    sd_small = opt.state_dict()
    sd_small["param_groups"][0]["lookahead_alpha"] = 2.0
    with pytest.raises(ValueError, match="Invalid alpha: 2.0"):
        opt.load_state_dict(sd_small)


def test_load_casts_to_the_current_dtype():
    model = make_model()
    opt = Lookahead(INNER["sgd_momentum"](model.parameters()), k=2)
    train(model, opt, 3)
    sd = roundtrip(opt.state_dict())
    resumed = make_model(dtype=torch.float64)
    opt2 = Lookahead(INNER["sgd_momentum"](resumed.parameters()), k=2)
    opt2.load_state_dict(sd)
    assert {s.dtype for s in slow_of(opt2)} == {torch.float64}
    assert_close(slow_of(opt2), [s.double() for s in slow_of(opt)], rtol=0, atol=0)
    train(resumed, opt2, 2, start=3)


def test_scheduler_on_wrapper_drives_inner_lr_before_and_after_loading():
    model = make_model()
    opt = Lookahead(INNER["sgd_momentum"](model.parameters()), k=2)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    train(model, opt, 1)
    sched.step()
    assert opt.optimizer.param_groups[0]["lr"] == pytest.approx(0.05)
    saved = roundtrip({"opt": opt.state_dict(), "sched": sched.state_dict()})

    resumed = make_model()
    opt2 = Lookahead(INNER["sgd_momentum"](resumed.parameters()), k=2)
    sched2 = torch.optim.lr_scheduler.StepLR(opt2, step_size=1, gamma=0.5)
    opt2.load_state_dict(saved["opt"])
    sched2.load_state_dict(saved["sched"])
    assert opt2.param_groups is opt2.optimizer.param_groups
    train(resumed, opt2, 1, start=1)
    sched2.step()
    assert opt2.optimizer.param_groups[0]["lr"] == pytest.approx(0.025)


def test_grad_scaler_skip_does_not_advance_the_counter():
    model = make_model()
    opt = Lookahead(INNER["sgd_momentum"](model.parameters()), k=2, alpha=0.5)
    scaler = torch.amp.GradScaler("cpu", init_scale=4.0)
    x = torch.randn(8, 4)
    for t in range(5):
        opt.zero_grad()
        scaler.scale(model(x).square().mean()).backward()
        if t in (1, 2):
            model[0].weight.grad[0, 0] = float("inf")
        before = [p.detach().clone() for p in model.parameters()]
        scaler.step(opt)
        scaler.update()
        if t in (1, 2):
            assert_close(list(model.parameters()), before, rtol=0, atol=0)
    assert opt.fast_steps == 3  # five calls, two skipped
    assert scaler.get_scale() == 1.0  # halved twice
    # One sync happened (after the 2nd successful step): the slow weights moved away from theta_0.
    assert not torch.equal(slow_of(opt)[0], make_model()[0].weight)


def test_step_and_state_dict_hooks_fire_on_the_wrapper():
    model = make_model()
    opt = Lookahead(INNER["adam"](model.parameters()), k=2)
    calls = []
    opt.register_step_pre_hook(lambda o, args, kwargs: calls.append(("pre", o.fast_steps)))
    opt.register_step_post_hook(lambda o, args, kwargs: calls.append(("post", o.fast_steps)))
    opt.register_state_dict_pre_hook(lambda o: calls.append("sd_pre"))
    opt.register_state_dict_post_hook(lambda o, sd: {**sd, "extra": 1})
    opt.register_load_state_dict_pre_hook(lambda o, sd: calls.append(("load_pre", "extra" in sd)))
    opt.register_load_state_dict_post_hook(lambda o: calls.append("load_post"))
    train(model, opt, 2)
    sd = opt.state_dict()
    opt.load_state_dict(sd)
    assert sd["extra"] == 1
    assert calls == [("pre", 0), ("post", 1), ("pre", 1), ("post", 2), "sd_pre", ("load_pre", True), "load_post"]
    assert isinstance(opt, torch.optim.Optimizer)


def test_closure_zero_grad_and_add_param_group():
    model = make_model()
    opt = Lookahead(torch.optim.SGD(model[0].parameters(), lr=0.1), k=2)
    x = torch.randn(8, 4)

    def closure():
        opt.zero_grad()
        loss = model(x).square().mean()
        loss.backward()
        return loss

    loss = opt.step(closure)
    assert torch.is_tensor(loss) and loss.item() > 0
    opt.zero_grad()
    assert all(p.grad is None for p in model[0].parameters())
    head = [p.detach().clone() for p in model[2].parameters()]
    opt.add_param_group({"params": model[2].parameters(), "lr": 0.01})
    assert len(opt.optimizer.param_groups) == 2 and opt.param_groups[1]["lr"] == 0.01
    assert_close([opt.state[p]["slow_param"] for p in model[2].parameters()], head, rtol=0, atol=0)
    opt.step(closure)  # the second step syncs both groups
    assert_close(slow_of(opt), list(model.parameters()), rtol=0, atol=0)


@pytest.mark.parametrize("how", ["deepcopy", "pickle"])
def test_deepcopy_and_pickle_continue_identically(how):
    model = make_model()
    opt = Lookahead(INNER["adam"](model.parameters()), k=3, pullback="pullback")
    torch.optim.lr_scheduler.StepLR(opt, step_size=1)  # patches opt.step, which must not be copied
    train(model, opt, 4)
    both = copy.deepcopy((model, opt)) if how == "deepcopy" else pickle.loads(pickle.dumps((model, opt)))
    model2, opt2 = both
    assert opt2.fast_steps == 4 and opt2.optimizer is not opt.optimizer
    assert all(p in opt2.state for p in model2.parameters())
    train(model, opt, 5, start=4)
    train(model2, opt2, 5, start=4)
    assert_close(list(model2.parameters()), list(model.parameters()), rtol=0, atol=0)
    assert_close(slow_of(opt2), slow_of(opt), rtol=0, atol=0)


def test_params_added_behind_the_wrappers_back_fail_clearly():
    model = make_model()
    opt = Lookahead(torch.optim.SGD(model[0].parameters(), lr=0.1), k=1)
    opt.optimizer.add_param_group({"params": model[2].parameters()})
    with pytest.raises(RuntimeError, match="Lookahead.add_param_group"):
        train(model, opt, 1)
