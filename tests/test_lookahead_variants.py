"""Lookahead variants: an alpha schedule (airbench's alpha(t)), and buffers synced like weights.

The schedule sets each group's alpha from its own fast-step counter before every step (the
sync at fast step t uses alpha(t)); ``buffers=`` interpolates tensors that are not optimized
(BatchNorm running statistics) at every sync of group 0. Both are checked against trajectories
computed by hand and against checkpoint round trips, bit for bit.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch.testing import assert_close

from conftest import roundtrip
from lookahead import AlphaSchedule, Lookahead, alpha_power_schedule


def alphas(opt):
    return [g["lookahead_alpha"] for g in opt.param_groups]


def slow_of(opt):
    return [opt.state[p]["slow_param"] for g in opt.param_groups for p in g["params"]]


def slow_buffers(opt):
    return opt.state_dict()["lookahead_buffers"]


# -- the alpha schedule ---------------------------------------------------------------------

# Hand-computed: loss 0.5 x^2 from x0 = 1, plain SGD at lr 0.5 (x <- x / 2), k = 2, and
# alpha(t) = 1 - (1 - 0.5) (min(t, 4) / 4)^3: alpha(2) = 15/16, alpha(4) = alpha(6) = 1/2.
# Step 1: x = 1/2. Step 2: x = 1/4, sync: phi = 1 + 15/16 (1/4 - 1) = 19/64 = 0.296875.
# Step 3: x = 19/128. Step 4: x = 19/256, sync: phi = 19/64 + 1/2 (19/256 - 19/64) = 95/512.
# Step 5: x = 95/1024. Step 6: x = 95/2048, sync: phi = 95/512 + 1/2 (95/2048 - 95/512) = 475/4096.
# A constant alpha = 1/2 would give phi = 5/8 at step 2 instead.
HAND_X = [0.5, 0.296875, 0.1484375, 0.185546875, 0.0927734375, 0.115966796875]
# The group's alpha after step t is alpha(t), the value that step's sync used (or would have).
HAND_ALPHA = [1 - 1 / 128, 15 / 16, 1 - 27 / 128, 0.5, 0.5, 0.5]


def test_power_schedule_hand_computed_trajectory():
    x = torch.nn.Parameter(torch.ones(1, dtype=torch.float64))
    opt = Lookahead(torch.optim.SGD([x], lr=0.5), k=2, alpha=0.5)
    alpha_power_schedule(opt, total_steps=4, alpha_end=0.5, power=3)
    assert opt.alpha == 1 - 1 / 128  # set at construction: alpha(1), for the next step
    trajectory, used = [], []
    for _ in range(6):
        x.grad = x.detach().clone()
        opt.step()
        trajectory.append(x.item())
        used.append(opt.alpha)
    assert trajectory == HAND_X and used == HAND_ALPHA
    assert opt.state[x]["slow_param"].item() == HAND_X[-1]


def test_airbench_schedule_values_follow_the_counter():
    """airbench: every 5 steps, decay d(t) = 0.95^5 (t/T)^3, i.e. alpha(t) = 1 - d(t)."""
    model = torch.nn.Linear(2, 1)
    opt = Lookahead(torch.optim.SGD(model.parameters(), lr=0.1), k=5)
    schedule = alpha_power_schedule(opt, total_steps=100, alpha_end=1 - 0.95**5, power=3)
    for t in (1, 5, 50, 99, 100, 101, 500):
        opt.fast_steps = t - 1  # what a resumed counter looks like; the schedule reads only it
        schedule.apply()
        assert opt.alpha == pytest.approx(1 - 0.95**5 * (min(t, 100) / 100) ** 3, abs=1e-15)
    assert opt.alpha == pytest.approx(0.2262190625)
    assert schedule.state_dict() == {}


def reference(init, grads, steps, k, alpha_fn):
    """Algorithm 1 with alpha(t) at the sync of step t, for SGD with momentum; ``grads(theta, t)``
    gives the gradients."""
    theta = [torch.nn.Parameter(x.detach().clone()) for x in init]
    inner = torch.optim.SGD(theta, lr=0.1, momentum=0.9)
    phi = [x.detach().clone() for x in init]
    for t in range(1, steps + 1):
        for p, g in zip(theta, grads(theta, t)):
            p.grad = g
        inner.step()
        if t % k == 0:
            with torch.no_grad():
                for p, s in zip(theta, phi):
                    s.copy_(s + alpha_fn(t) * (p - s))
                    p.copy_(s)
    return theta, phi


def noisy_grads(params, t, first=0):
    """Gradient of 0.5 (p - c)^2 with a noisy target c drawn per step and per parameter index."""
    return [
        p.detach() - torch.randn(p.shape, generator=torch.Generator().manual_seed(1000 + 10 * t + i), dtype=p.dtype)
        for i, p in enumerate(params, start=first)
    ]


def test_per_group_k_and_alpha_functions_match_the_reference():
    """Each group syncs at multiples of its own k, with its own function at its own step t."""
    torch.manual_seed(0)
    init = [torch.randn(3, 2, dtype=torch.float64), torch.randn(2, dtype=torch.float64)]
    params = [torch.nn.Parameter(x.clone()) for x in init]
    groups = [{"params": params[:1], "lookahead_k": 2}, {"params": params[1:], "lookahead_k": 3}]
    fns = [lambda t: 1 - t / 20, lambda t: 0.9 ** t]
    opt = Lookahead(torch.optim.SGD(groups, lr=0.1, momentum=0.9), k=5)
    AlphaSchedule(opt, fns)
    for t in range(1, 10):
        for p, g in zip(params, noisy_grads(params, t)):
            p.grad = g
        opt.step()
    assert alphas(opt) == [1 - 9 / 20, 0.9**9]
    for index, (k, fn) in enumerate(zip((2, 3), fns)):
        grads = lambda theta, t: noisy_grads(theta, t, first=index)  # noqa: E731
        theta, phi = reference(init[index : index + 1], grads, 9, k, fn)
        assert_close(params[index : index + 1], theta, rtol=1e-12, atol=1e-12)
        assert_close(slow_of(opt)[index : index + 1], phi, rtol=1e-12, atol=1e-12)


def make_model(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))


def train(model, opt, steps, start=0):
    for t in range(start, start + steps):
        x = torch.randn(16, 4, generator=torch.Generator().manual_seed(t))
        opt.zero_grad()
        model(x).square().mean().backward()
        opt.step()


@pytest.mark.parametrize("built", ["before_loading", "after_loading"])
def test_schedule_resumes_from_the_state_dict_bit_identically(built):
    model = make_model()
    opt = Lookahead(torch.optim.Adam(model.parameters(), lr=1e-2), k=3)
    alpha_power_schedule(opt, total_steps=20, alpha_end=0.3)
    train(model, opt, 7)  # two syncs, one step into the third period
    saved = roundtrip({"model": model.state_dict(), "opt": opt.state_dict()})
    resumed = make_model(seed=1)
    resumed.load_state_dict(saved["model"])
    opt2 = Lookahead(torch.optim.Adam(resumed.parameters(), lr=1e-2), k=3, alpha=0.5)
    if built == "before_loading":
        alpha_power_schedule(opt2, total_steps=20, alpha_end=0.3)
    opt2.load_state_dict(saved["opt"])
    if built == "after_loading":
        alpha_power_schedule(opt2, total_steps=20, alpha_end=0.3)
    for t in range(7, 20):
        train(model, opt, 1, start=t)
        train(resumed, opt2, 1, start=t)
        assert alphas(opt2) == alphas(opt)
        assert_close(list(resumed.parameters()), list(model.parameters()), rtol=0, atol=0)
        assert_close(slow_of(opt2), slow_of(opt), rtol=0, atol=0)
    assert opt.alpha == 0.3


def test_bad_schedules_fail_clearly_and_remove_detaches():
    model = make_model()
    opt = Lookahead(torch.optim.SGD(model.parameters(), lr=0.1), k=2)
    with pytest.raises(ValueError, match=r"alpha=1.5 for fast step 1 of parameter group 0"):
        AlphaSchedule(opt, lambda t: 1.5)
    with pytest.raises(ValueError, match="2 alpha functions for 1 parameter groups"):
        AlphaSchedule(opt, [lambda t: 0.5, lambda t: 0.5])
    with pytest.raises(TypeError, match="got SGD"):
        AlphaSchedule(opt.optimizer, lambda t: 0.5)
    for kwargs, match in [
        ({"total_steps": 0, "alpha_end": 0.5}, "Invalid total_steps: 0"),
        ({"total_steps": 10, "alpha_end": 1.2}, "Invalid alpha_end: 1.2"),
        ({"total_steps": 10, "alpha_end": 0.5, "power": -1}, "Invalid power: -1"),
    ]:
        with pytest.raises(ValueError, match=match):
            alpha_power_schedule(opt, **kwargs)
    late = AlphaSchedule(opt, lambda t: 0.5 if t < 3 else -0.1)
    train(model, opt, 2)
    with pytest.raises(ValueError, match="fast step 3"):
        train(model, opt, 1, start=2)
    assert opt.fast_steps == 2  # the hook failed before the step
    late.remove()
    schedule = AlphaSchedule(opt, torch.tensor([0.0, 0.1, 0.2, 0.3, 0.4, 0.5]).__getitem__)
    assert opt.alpha == pytest.approx(0.3)  # a 0-dim tensor entry is taken as a float
    schedule.remove()
    train(model, opt, 2, start=2)
    assert opt.alpha == pytest.approx(0.3)  # removed: the last value stays


# -- buffers: BatchNorm statistics synced like the weights -----------------------------------


def bn_model(seed=0, features=4):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(3, features), torch.nn.BatchNorm1d(features)).double()


def float_buffers(model):
    return [b for b in model.buffers() if b.is_floating_point()]


def bn_step(model, opt, t):
    g = torch.Generator().manual_seed(t)
    x = 2.0 + torch.randn(8, 3, generator=g, dtype=torch.float64)  # moves running_mean off 0
    opt.zero_grad()
    (model(x) - 1.0).square().mean().backward()


def run_and_check_buffers(model, opt, steps, k, alpha):
    """Trains, checking after every step that the buffers follow the hand-computed rule:
    at a sync, phi_b <- phi_b + alpha (b - phi_b) and b <- phi_b; otherwise b is untouched."""
    bn = model[1]
    slow = [bn.running_mean.detach().clone(), bn.running_var.detach().clone()]  # phi_b,0 = b_0
    for t in range(1, steps + 1):
        bn_step(model, opt, t)  # the forward pass updated the running statistics
        before = [bn.running_mean.clone(), bn.running_var.clone()]
        opt.step()
        after = [bn.running_mean, bn.running_var]
        if t % k == 0:
            slow = [s + alpha * (b - s) for s, b in zip(slow, before)]
            assert_close(after, slow, rtol=1e-14, atol=1e-14)
        else:
            assert_close(after, before, rtol=0, atol=0)
        assert_close(slow_buffers(opt), slow, rtol=1e-14, atol=1e-14)
        assert bn.num_batches_tracked.item() == t  # the integer counter is never averaged
    return slow


@pytest.mark.parametrize("foreach", [False, True])
@pytest.mark.parametrize("form", ["list", "module"])
def test_buffers_hand_computed_interpolation(form, foreach):
    model, plain = bn_model(), bn_model()
    buffers = model if form == "module" else float_buffers(model)
    opt = Lookahead(torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9), k=2, alpha=0.5,
                    foreach=foreach, buffers=buffers)
    assert "buffers=2" in repr(opt)
    run_and_check_buffers(model, opt, 7, k=2, alpha=0.5)
    # In training mode BatchNorm normalizes with the batch's statistics, so the parameters'
    # trajectory is the one a wrapper without buffers takes.
    opt_plain = Lookahead(torch.optim.SGD(plain.parameters(), lr=0.1, momentum=0.9), k=2, alpha=0.5)
    for t in range(1, 8):
        bn_step(plain, opt_plain, t)
        opt_plain.step()
    assert_close(list(model.parameters()), list(plain.parameters()), rtol=0, atol=0)


def test_buffers_follow_group_zero_and_its_scheduled_alpha():
    """Buffers belong to no group: they sync when group 0 does, with group 0's alpha."""
    model = bn_model()
    groups = [{"params": model[0].parameters(), "lookahead_k": 2},
              {"params": model[1].parameters(), "lookahead_k": 3}]
    opt = Lookahead(torch.optim.SGD(groups, lr=0.1), alpha=0.5, buffers=model)
    AlphaSchedule(opt, [lambda t: 0.25, lambda t: 1.0])
    run_and_check_buffers(model, opt, 7, k=2, alpha=0.25)  # not at 3 or 6 unless 2 divides


def test_slow_weights_swap_in_the_slow_buffers():
    model = bn_model()
    opt = Lookahead(torch.optim.SGD(model.parameters(), lr=0.1), k=2, alpha=0.5, buffers=model)
    for t in range(1, 4):  # one sync, then a step whose forward pass moved the statistics
        bn_step(model, opt, t)
        opt.step()
    bn = model[1]
    fast = [b.clone() for b in model.buffers()]
    slow = [s.clone() for s in slow_buffers(opt)]
    assert not torch.equal(fast[0], slow[0])
    with opt.slow_weights():
        assert_close([bn.running_mean, bn.running_var], slow, rtol=0, atol=0)
        assert_close(list(model.parameters()), slow_of(opt), rtol=0, atol=0)
        model.eval()
        model(torch.randn(2, 3, dtype=torch.float64))  # phi evaluated with the slow statistics
    assert_close(list(model.buffers()), fast, rtol=0, atol=0)
    opt.load_slow_weights()
    assert_close([bn.running_mean, bn.running_var], slow, rtol=0, atol=0)
    # The default (no buffers=) leaves them alone, as before.
    plain = bn_model()
    opt_plain = Lookahead(torch.optim.SGD(plain.parameters(), lr=0.1), k=1)
    bn_step(plain, opt_plain, 1)
    statistics = [b.clone() for b in plain.buffers()]
    opt_plain.step()
    with opt_plain.slow_weights():
        assert_close(list(plain.buffers()), statistics, rtol=0, atol=0)
    assert "lookahead_buffers" not in opt_plain.state_dict()


@pytest.mark.parametrize("scheduled", [False, True])
def test_buffers_resume_mid_period_bit_identically(scheduled):
    def build(model):
        opt = Lookahead(torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9), k=3, alpha=0.5,
                        buffers=float_buffers(model))
        if scheduled:  # airbench's shape: alpha falls from 1 to 1 - 0.95^5
            alpha_power_schedule(opt, total_steps=14, alpha_end=1 - 0.95**5)
        return opt

    model = bn_model()
    opt = build(model)
    for t in range(1, 8):  # two syncs, one step into the third period
        bn_step(model, opt, t)
        opt.step()
    saved = roundtrip({"model": model.state_dict(), "opt": opt.state_dict()})
    assert len(saved["opt"]["lookahead_buffers"]) == 2
    resumed = bn_model(seed=1)
    resumed.load_state_dict(saved["model"])  # the buffers themselves come with the model
    opt2 = build(resumed)
    opt2.load_state_dict(saved["opt"])
    for t in range(8, 15):
        for m, o in ((model, opt), (resumed, opt2)):
            bn_step(m, o, t)
            o.step()
        assert_close(list(resumed.parameters()), list(model.parameters()), rtol=0, atol=0)
        assert_close(list(resumed.buffers()), list(model.buffers()), rtol=0, atol=0)
        assert_close(slow_buffers(opt2), slow_buffers(opt), rtol=0, atol=0)
        assert_close(slow_of(opt2), slow_of(opt), rtol=0, atol=0)


def test_deepcopy_keeps_the_buffers_and_continues_identically():
    model = bn_model()
    opt = Lookahead(torch.optim.SGD(model.parameters(), lr=0.1), k=2, buffers=float_buffers(model))
    for t in range(1, 4):
        bn_step(model, opt, t)
        opt.step()
    model2, opt2 = copy.deepcopy((model, opt))
    assert opt2._slow_buffers.live()[0] is model2[1].running_mean
    for t in range(4, 8):
        for m, o in ((model, opt), (model2, opt2)):
            bn_step(m, o, t)
            o.step()
    assert_close(list(model2.buffers()), list(model.buffers()), rtol=0, atol=0)
    assert_close(slow_buffers(opt2), slow_buffers(opt), rtol=0, atol=0)


def test_module_form_follows_model_to_after_building():
    """model.double() replaces a module's buffer tensors; buffers=model looks them up by name."""
    model = bn_model().float()
    opt = Lookahead(torch.optim.SGD(model.parameters(), lr=0.1), k=2, alpha=0.5, buffers=model)
    model.double()
    run_and_check_buffers(model, opt, 4, k=2, alpha=0.5)
    assert {s.dtype for s in slow_buffers(opt)} == {torch.float64}
    assert opt._slow_buffers.live()[0] is model[1].running_mean


def test_buffer_state_dict_mismatches_raise_one_line_value_errors():
    model = bn_model()
    opt = Lookahead(torch.optim.SGD(model.parameters(), lr=0.1), k=2, buffers=model)
    bn_step(model, opt, 1)
    opt.step()
    opt.step()  # a sync: the slow buffers moved off their initial values
    sd = roundtrip(opt.state_dict())
    slow = [s.clone() for s in slow_buffers(opt)]

    def fails(target, state_dict, match):
        with pytest.raises(ValueError, match=match) as info:
            target.load_state_dict(state_dict)
        assert "\n" not in str(info.value)

    plain = Lookahead(torch.optim.SGD(bn_model().parameters(), lr=0.1), k=2)
    fails(plain, sd, "built without buffers=; pass the buffers it was saved with")
    two_bn = torch.nn.Sequential(bn_model(), torch.nn.BatchNorm1d(4).double())
    wide = Lookahead(torch.optim.SGD(bn_model().parameters(), lr=0.1), k=2, buffers=two_bn)
    fails(wide, sd, r"holds 2 slow buffers .* but this optimizer averages 4; build the wrapper")
    bad = {**sd, "lookahead_buffers": [torch.zeros(5, dtype=torch.float64), sd["lookahead_buffers"][1]]}
    fails(opt, bad, r"slow buffer 0 has shape \(5,\) in the state dict, but the buffer has shape \(4,\)")
    assert_close(slow_buffers(opt), slow, rtol=0, atol=0)  # a failed load changes nothing
    # Without the key (DCP drops it): a warning, and the slow buffers restart from the buffers.
    without = {key: value for key, value in sd.items() if key != "lookahead_buffers"}
    with pytest.warns(UserWarning, match="no 'lookahead_buffers'"):
        opt.load_state_dict(without)
    assert_close(slow_buffers(opt), [model[1].running_mean, model[1].running_var], rtol=0, atol=0)
    plain.load_state_dict(without)  # a wrapper without buffers loads it as before


def test_bad_buffers_are_rejected():
    model = bn_model()
    params = list(model.parameters())
    with pytest.raises(TypeError, match=r"buffer 2 has dtype torch.int64.*num_batches_tracked"):
        Lookahead(torch.optim.SGD(params, lr=0.1), buffers=list(model.buffers()))
    with pytest.raises(ValueError, match="buffer 0 is a parameter of the optimizer"):
        Lookahead(torch.optim.SGD(params, lr=0.1), buffers=params[:1])
    with pytest.raises(ValueError, match="lists a tensor twice"):
        Lookahead(torch.optim.SGD(params, lr=0.1), buffers=[model[1].running_mean] * 2)
    with pytest.raises(TypeError, match="got one tensor"):
        Lookahead(torch.optim.SGD(params, lr=0.1), buffers=model[1].running_mean)
