"""Invariants of the Lookahead update: Algorithm 1 exactly, collapse cases, pullback, foreach.

Every invariant runs across the inner optimizers in INNER. Gradients are a deterministic
function of the parameters and the step (a noisy quadratic), set by hand, so no model or data
is needed and two runs can be compared bit for bit.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch.testing import assert_close

from lookahead import Lookahead

INNER = {
    "sgd": lambda ps: torch.optim.SGD(ps, lr=0.1, weight_decay=1e-2),
    "sgd_momentum": lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, weight_decay=1e-2),
    "sgd_nesterov": lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True),
    "adam": lambda ps: torch.optim.Adam(ps, lr=1e-2, weight_decay=1e-2),
    "adamw": lambda ps: torch.optim.AdamW(ps, lr=1e-2, weight_decay=0.1),
    "radam": lambda ps: torch.optim.RAdam(ps, lr=1e-2),
    "rmsprop": lambda ps: torch.optim.RMSprop(ps, lr=1e-2, alpha=0.9, momentum=0.5),
    "adagrad": lambda ps: torch.optim.Adagrad(ps, lr=0.1),
}


def make_params(dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    shapes = [(3, 2), (2,), ()]  # a 0-dim parameter shares its shape with Adam's `step`
    return [torch.nn.Parameter(torch.randn(s, generator=g, dtype=dtype)) for s in shapes]


def set_grads(params, t):
    """Gradient of 0.5 * sum (p - c_t)^2 with a step-dependent noisy target c_t."""
    g = torch.Generator().manual_seed(1000 + t)
    for p in params:
        p.grad = p.detach() - torch.randn(p.shape, generator=g, dtype=torch.float64).to(p.dtype)


def run(opt, params, steps, start=1):
    for t in range(start, start + steps):
        set_grads(params, t)
        opt.step()


def reference(make_inner, init, steps, k, alpha, pullback="none"):
    """Algorithm 1 written out plainly, with its own copy of the inner optimizer."""
    theta = [torch.nn.Parameter(x.detach().clone()) for x in init]
    inner = make_inner(theta)
    phi = [x.detach().clone() for x in init]
    saved = {}
    for t in range(1, steps + 1):
        set_grads(theta, t)
        inner.step()
        if t % k:
            continue
        with torch.no_grad():
            for i, p in enumerate(theta):
                phi[i] = phi[i] + alpha * (p - phi[i])
                p.copy_(phi[i])
                for key, buf in inner.state[p].items() if pullback == "pullback" else ():
                    if key == "step" or not torch.is_tensor(buf) or buf.shape != p.shape:
                        continue
                    old = saved.get((i, key), torch.zeros_like(buf))
                    buf.copy_(old + alpha * (buf - old))
                    saved[(i, key)] = buf.clone()
            if pullback == "reset":
                inner.state.clear()
    return theta, phi


def slow_of(opt):
    return [opt.state[p]["slow_param"] for p in opt.param_groups[0]["params"]]


# Hand-computed trajectories: one parameter x0 = 1, constant gradient 1 (loss = x), lr = 0.5,
# k = 2, alpha = 0.5. Values are the parameter after each step() (after the sync on steps 2, 4).
# - SGD moves -0.5 per step. Adam/AdamW/RAdam also move exactly -lr per step here: with a
#   constant gradient the bias-corrected moments are 1 (eps = 0; RAdam is not rectified yet).
#   Fast 0.5, 0.0 -> phi_1 = 1 + 0.5 (0.0 - 1) = 0.5; fast 0.0, -0.5 -> phi_2 = 0.5 + 0.5 (-1) = 0.
# - Momentum 0.5: buffer 1, 1.5 -> x 0.5, -0.25 -> phi_1 = 1 + 0.5 (-1.25) = 0.375;
#   buffer 1.75, 1.875 -> x -0.5, -1.4375 -> phi_2 = 0.375 + 0.5 (-1.8125) = -0.53125.
# - Nesterov 0.5 (step g + 0.5 buf): steps 1.5, 1.75 -> x 0.25, -0.625 -> phi_1 = 0.1875;
#   steps 1.875, 1.9375 -> x -0.75, -1.71875 -> phi_2 = 0.1875 + 0.5 (-1.90625) = -0.765625.
HAND = {
    "sgd": (lambda ps: torch.optim.SGD(ps, lr=0.5), [0.5, 0.5, 0.0, 0.0]),
    "sgd_momentum": (lambda ps: torch.optim.SGD(ps, lr=0.5, momentum=0.5), [0.5, 0.375, -0.5, -0.53125]),
    "sgd_nesterov": (
        lambda ps: torch.optim.SGD(ps, lr=0.5, momentum=0.5, nesterov=True),
        [0.25, 0.1875, -0.75, -0.765625],
    ),
    "adam": (lambda ps: torch.optim.Adam(ps, lr=0.5, eps=0.0), [0.5, 0.5, 0.0, 0.0]),
    "adamw": (lambda ps: torch.optim.AdamW(ps, lr=0.5, eps=0.0, weight_decay=0.0), [0.5, 0.5, 0.0, 0.0]),
    "radam": (lambda ps: torch.optim.RAdam(ps, lr=0.5), [0.5, 0.5, 0.0, 0.0]),
}


def hand_run(make_inner, pullback="none"):
    x = torch.nn.Parameter(torch.ones(1, dtype=torch.float64))
    opt = Lookahead(make_inner([x]), k=2, alpha=0.5, pullback=pullback)
    trajectory, buffers = [], []
    for _ in range(4):
        x.grad = torch.ones_like(x)
        opt.step()
        trajectory.append(x.item())
        buffer = opt.optimizer.state.get(x, {}).get("momentum_buffer")
        buffers.append(None if buffer is None else buffer.item())
    return opt, x, trajectory, buffers


@pytest.mark.parametrize("name", HAND)
def test_hand_computed_trajectory(name):
    make_inner, expected = HAND[name]
    opt, x, trajectory, _ = hand_run(make_inner)
    assert_close(trajectory, expected, rtol=1e-12, atol=1e-12)
    assert_close(opt.state[x]["slow_param"].item(), expected[-1], rtol=1e-12, atol=1e-12)


# Pullback, momentum 0.5, same problem: up to the first sync as above (buffer 1.5 there).
# Sync 1: buffer <- 0 + 0.5 (1.5 - 0) = 0.75 (nothing was saved at construction, i.e. zeros).
# Steps 3, 4: buffer 1.375, 1.6875 -> x -0.3125, -1.15625 -> phi_2 = 0.375 + 0.5 (-1.53125) = -0.390625.
# Sync 2: buffer <- 0.75 + 0.5 (1.6875 - 0.75) = 1.21875. The official code aliases the saved
# buffer to the live one, which gives alpha (2 - alpha) 1.6875 = 1.265625 instead.
# Reset: the buffer restarts at sync 1: buffers 1, 1.5 -> x -0.125, -0.875 -> phi_2 = -0.25.
def test_pullback_hand_computed_and_no_aliasing():
    _, x, trajectory, buffers = hand_run(HAND["sgd_momentum"][0], pullback="pullback")
    assert trajectory == [0.5, 0.375, -0.3125, -0.390625]
    assert [buffers[1], buffers[3]] == [0.75, 1.21875]
    assert buffers[3] != 0.5 * (2 - 0.5) * 1.6875


def test_reset_hand_computed():
    opt, x, trajectory, buffers = hand_run(HAND["sgd_momentum"][0], pullback="reset")
    assert trajectory == [0.5, 0.375, -0.125, -0.25]
    assert buffers[1] is None and buffers[3] is None and x not in opt.optimizer.state


@pytest.mark.parametrize("pullback", ["none", "reset", "pullback"])
@pytest.mark.parametrize("name", INNER)
def test_matches_reference_algorithm(name, pullback):
    init = make_params()
    params = [torch.nn.Parameter(x.detach().clone()) for x in init]
    opt = Lookahead(INNER[name](params), k=3, alpha=0.7, pullback=pullback)
    run(opt, params, 8)  # two syncs and two steps into the third period
    theta, phi = reference(INNER[name], init, 8, k=3, alpha=0.7, pullback=pullback)
    assert_close(params, theta)
    assert_close(slow_of(opt), phi)


@pytest.mark.parametrize("pullback", ["none", "pullback"])
@pytest.mark.parametrize("name", INNER)
def test_alpha_one_equals_inner_exactly(name, pullback):
    params, plain = make_params(), make_params()
    opt = Lookahead(INNER[name](params), k=3, alpha=1.0, pullback=pullback)
    inner = INNER[name](plain)
    for t in range(1, 8):
        set_grads(params, t)
        set_grads(plain, t)
        opt.step()
        inner.step()
        assert_close(params, plain, rtol=0, atol=0)


@pytest.mark.parametrize("name", INNER)
def test_alpha_zero_returns_to_phi0_and_slow_starts_at_theta0(name):
    params = make_params()
    theta0 = [p.detach().clone() for p in params]
    opt = Lookahead(INNER[name](params), k=3, alpha=0.0)
    assert_close(slow_of(opt), theta0, rtol=0, atol=0)
    for period in range(2):
        run(opt, params, 2, start=3 * period + 1)
        assert_close(slow_of(opt), theta0, rtol=0, atol=0)  # before the sync: still phi_0
        assert not all(torch.equal(p, x) for p, x in zip(params, theta0))
        run(opt, params, 1, start=3 * period + 3)
        assert_close(params, theta0, rtol=0, atol=0)


@pytest.mark.parametrize("pullback", ["none", "reset", "pullback"])
@pytest.mark.parametrize("name", INNER)
def test_foreach_equals_for_loop(name, pullback):
    runs = []
    for foreach in (True, False):
        params = make_params() + [torch.nn.Parameter(torch.linspace(-1, 1, 5))]  # + a float32 one
        opt = Lookahead(INNER[name](params), k=2, alpha=0.6, pullback=pullback, foreach=foreach)
        run(opt, params, 7)
        with opt.slow_weights():
            inside = [p.detach().clone() for p in params]
        runs.append((params, slow_of(opt), inside, copy.deepcopy(opt.optimizer.state_dict()["state"])))
    for a, b in zip(*runs):
        assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("pullback", ["none", "reset", "pullback"])
@pytest.mark.parametrize("name", ["sgd_momentum", "adam"])
def test_memory_is_one_copy_of_the_parameters(name, pullback):
    params = make_params()
    opt = Lookahead(INNER[name](params), k=2, alpha=0.5, pullback=pullback)
    run(opt, params, 5)
    with opt.slow_weights():
        pass

    def tensors(tree):
        if torch.is_tensor(tree):
            yield tree
        elif isinstance(tree, dict):
            for value in tree.values():
                yield from tensors(value)

    # opt.state[p] also shows the inner optimizer's entries; the wrapper's are these two keys.
    own = [opt.state[p][key] for p in params for key in ("slow_param", "pullback_state") if key in opt.state[p]]
    ours = [t for entry in own for t in tensors(entry)]
    param_bytes = sum(p.numel() * p.element_size() for p in params)
    buffers = {"sgd_momentum": 1, "adam": 2}[name] if pullback == "pullback" else 0
    assert sum(t.numel() * t.element_size() for t in ours) == (1 + buffers) * param_bytes
    storages = {t.untyped_storage().data_ptr() for t in ours + params}
    assert len(storages) == len(ours) + len(params)  # nothing aliases


def test_slow_weights_follow_a_dtype_change():
    moved, built_after = make_params(torch.float32), make_params(torch.float32)
    opt_moved = Lookahead(INNER["sgd_momentum"](moved), k=2, alpha=0.5)
    for p, q in zip(moved, built_after):  # what model.double() does: same Parameter, new data
        p.data = p.data.double()
        q.data = q.data.double()
    opt_after = Lookahead(INNER["sgd_momentum"](built_after), k=2, alpha=0.5)
    for opt, params in ((opt_moved, moved), (opt_after, built_after)):
        run(opt, params, 5)
    assert all(s.dtype == torch.float64 for s in slow_of(opt_moved))
    assert_close(moved, built_after, rtol=0, atol=0)
    assert_close(slow_of(opt_moved), slow_of(opt_after), rtol=0, atol=0)


def test_model_double_after_construction():
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1))
    opt = Lookahead(torch.optim.SGD(model.parameters(), lr=0.1), k=2)
    model.double()
    for _ in range(4):
        opt.zero_grad()
        model(torch.randn(5, 3, dtype=torch.float64)).square().mean().backward()
        opt.step()
    assert {opt.state[p]["slow_param"].dtype for p in model.parameters()} == {torch.float64}
    with opt.slow_weights():
        assert model(torch.zeros(1, 3, dtype=torch.float64)).dtype == torch.float64


def test_slow_weights_swap_restores_fast_bit_for_bit_also_on_error():
    params = make_params()
    opt = Lookahead(INNER["adam"](params), k=3, alpha=0.5)
    run(opt, params, 4)
    fast = [p.detach().clone() for p in params]
    with opt.slow_weights():
        assert_close(params, slow_of(opt), rtol=0, atol=0)
        with pytest.raises(RuntimeError, match="inside slow_weights"):
            opt.step()
        with pytest.raises(RuntimeError, match="do not nest"):
            with opt.slow_weights():
                pass
    assert_close(params, fast, rtol=0, atol=0)
    with pytest.raises(ZeroDivisionError):
        with opt.slow_weights():
            raise ZeroDivisionError
    assert_close(params, fast, rtol=0, atol=0)
    run(opt, params, 1, start=5)  # stepping works again after the block
    opt.load_slow_weights()
    assert_close(params, slow_of(opt), rtol=0, atol=0)


def test_parameters_without_gradient_keep_their_slow_weights():
    params = make_params()
    frozen = torch.nn.Parameter(torch.ones(4, dtype=torch.float64))
    opt = Lookahead(torch.optim.SGD(params + [frozen], lr=0.1), k=2, alpha=0.5)
    run(opt, params, 4)
    assert frozen.grad is None and torch.equal(opt.state[frozen]["slow_param"], frozen.detach())


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"k": 0}, "Invalid k: 0"),
        ({"k": -3}, "Invalid k: -3"),
        ({"k": 2.5}, "Invalid k: 2.5"),
        ({"k": True}, "Invalid k: True"),
        ({"k": "5"}, "Invalid k: '5'"),
        ({"alpha": 1.5}, "Invalid alpha: 1.5"),
        ({"alpha": -0.1}, "Invalid alpha: -0.1"),
        ({"alpha": math.nan}, "Invalid alpha: nan"),
        ({"alpha": "0.5"}, "Invalid alpha: '0.5'"),
        ({"pullback": "momentum"}, "Invalid pullback: 'momentum'"),
        ({"pullback": None}, "Invalid pullback: None"),
    ],
)
def test_invalid_hyperparameters_raise_value_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Lookahead(torch.optim.SGD(make_params(), lr=0.1), **kwargs)


def test_non_optimizer_raises_type_error():
    model = torch.nn.Linear(2, 1)
    with pytest.raises(TypeError, match="got generator"):
        Lookahead(model.parameters())
    with pytest.raises(TypeError, match="got Linear"):
        Lookahead(model)
    with pytest.raises(TypeError, match="Invalid foreach: 'yes'"):
        Lookahead(torch.optim.SGD(model.parameters(), lr=0.1), foreach="yes")


def test_foreach_default_follows_torch_optim(monkeypatch):
    from lookahead import _sync

    cpu = [torch.zeros(2), torch.nn.Parameter(torch.zeros(3))]
    assert _sync.default_foreach(cpu) is False  # torch.optim uses for-loops on CPU
    monkeypatch.setattr(_sync, "_get_foreach_kernels_supported_devices", lambda: ["cpu"])
    assert _sync.default_foreach(cpu) is True  # as it would on CUDA
    with pytest.raises(ValueError, match="one slow tensor per fast tensor"):
        _sync.lookahead_sync_([torch.zeros(2)], [], 0.5)


@pytest.mark.parametrize("pullback", ["none", "reset", "pullback"])
@pytest.mark.parametrize("name", ["sgd_momentum", "adam"])
def test_per_group_k_and_alpha_follow_separate_wrappers(name, pullback):
    """A group with its own k and alpha (keys in its param group, as lr) is a Lookahead of its
    own: these inner optimizers act per parameter, so the result is exact."""
    params, separate = make_params(), make_params()
    groups = [{"params": params[:2], "lookahead_k": 2, "lookahead_alpha": 0.3}, {"params": params[2:]}]
    opt = Lookahead(INNER[name](groups), k=3, alpha=0.7, pullback=pullback)
    first = Lookahead(INNER[name](separate[:2]), k=2, alpha=0.3, pullback=pullback)
    second = Lookahead(INNER[name](separate[2:]), k=3, alpha=0.7, pullback=pullback)
    for t in range(1, 9):
        set_grads(params, t)
        set_grads(separate, t)
        for o in (opt, first, second):
            o.step()
    assert_close(params, separate, rtol=0, atol=0)
    slow = [opt.state[p]["slow_param"] for p in params]
    assert_close(slow, slow_of(first) + slow_of(second), rtol=0, atol=0)
    assert [(g["lookahead_k"], g["lookahead_alpha"], g["lookahead_step"]) for g in opt.param_groups] == [(2, 0.3, 8), (3, 0.7, 8)]
    with pytest.raises(AttributeError, match="different values of 'lookahead_k'"):
        opt.k
    assert opt.pullback == pullback and opt.fast_steps == 8


def test_one_k_and_alpha_by_default_and_settable_for_all_groups():
    params = make_params()
    opt = Lookahead(torch.optim.SGD([{"params": params[:1]}, {"params": params[1:]}], lr=0.1), k=4, alpha=0.6)
    assert [(g["lookahead_k"], g["lookahead_alpha"], g["lookahead_pullback"]) for g in opt.param_groups] == [(4, 0.6, "none")] * 2
    assert (opt.k, opt.alpha, opt.pullback) == (4, 0.6, "none")
    opt.k, opt.alpha = 2, 0.5
    assert [(g["lookahead_k"], g["lookahead_alpha"]) for g in opt.param_groups] == [(2, 0.5)] * 2
    with pytest.raises(ValueError, match="Invalid k: 0"):
        opt.k = 0
    with pytest.raises(ValueError, match="Invalid alpha: 2"):
        Lookahead(torch.optim.SGD([{"params": params, "lookahead_alpha": 2}], lr=0.1))
