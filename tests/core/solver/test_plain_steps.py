"""The plain SGD step of γ, u and λ is bitwise ``torch.optim.SGD.step()``, and steps aside for anything more."""

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from constrained_eq.core.solver.plain_steps import is_plain_sgd, step_, zero_grad_


def _pair(lr: float, maximize: bool, seed: int, **options):
    generator = torch.Generator().manual_seed(seed)
    data = [torch.randn(n, generator=generator) for n in (1, 4, 7)]
    grads = [torch.randn(n, generator=generator) for n in (1, 4, 7)]
    made = []
    for _ in range(2):
        params = [torch.nn.Parameter(d.clone()) for d in data]
        for p, g in zip(params, grads, strict=True):
            p.grad = g.clone()
        made.append((params, torch.optim.SGD(params, lr=lr, maximize=maximize, **options)))
    return made


@settings(max_examples=25, deadline=None)
@given(lr=st.floats(1e-6, 10.0), maximize=st.booleans(), seed=st.integers(0, 2**16))
def test_plain_step_is_bitwise_sgd(lr, maximize, seed):
    (ours, ours_opt), (ref, ref_opt) = _pair(lr, maximize, seed)
    assert is_plain_sgd(ours_opt)
    step_([ours_opt])
    ref_opt.step()
    for a, b in zip(ours, ref, strict=True):
        assert torch.equal(a, b)


def test_two_groups_and_missing_grads():
    (ours, ours_opt), (ref, ref_opt) = _pair(0.3, False, 0)
    for opt, params in ((ours_opt, ours), (ref_opt, ref)):
        opt.add_param_group({"params": [torch.nn.Parameter(torch.ones(2))], "lr": 0.7})
        opt.param_groups[1]["params"][0].grad = torch.full((2,), 2.0)
        params[1].grad = None
    step_([ours_opt])
    ref_opt.step()
    for a, b in zip([*ours, *ours_opt.param_groups[1]["params"]], [*ref, *ref_opt.param_groups[1]["params"]],
                    strict=True):
        assert torch.equal(a, b)
    torch.testing.assert_close(ours_opt.param_groups[1]["params"][0].detach(), torch.full((2,), 1.0 - 1.4))


def test_anything_more_takes_its_own_step():
    (params, opt), _ = _pair(0.1, False, 1, momentum=0.9)
    assert not is_plain_sgd(opt)
    step_([opt])
    assert len(opt.state) == 3  # SGD's own step made the momentum buffers
    (_, hooked), _ = _pair(0.1, False, 1)
    calls = []
    hooked.register_step_post_hook(lambda *args: calls.append(1))
    assert not is_plain_sgd(hooked)
    step_([hooked])
    assert calls == [1]
    (_, scheduled), _ = _pair(0.1, False, 1)
    torch.optim.lr_scheduler.StepLR(scheduled, step_size=1)  # wraps scheduled.step on the instance
    assert not is_plain_sgd(scheduled)
    (_, tensor_lr), _ = _pair(0.1, False, 1)
    tensor_lr.param_groups[0]["lr"] = torch.tensor(0.1)
    assert not is_plain_sgd(tensor_lr)
    (decayed, decayed_opt), (ref, ref_opt) = _pair(0.1, False, 1, weight_decay=0.5)
    assert not is_plain_sgd(decayed_opt)
    before = [p.detach().clone() for p in decayed]
    step_([decayed_opt])
    ref_opt.step()
    for p, q, p0 in zip(decayed, ref, before, strict=True):  # p ← p − η (g + w p), not p − η g
        assert torch.equal(p, q)
        torch.testing.assert_close(p.detach(), p0 - 0.1 * (p.grad + 0.5 * p0))


def test_zero_grad_sets_none():
    (params, opt), _ = _pair(0.1, False, 2)
    adam = torch.optim.Adam([torch.nn.Parameter(torch.ones(3))])
    adam.param_groups[0]["params"][0].grad = torch.ones(3)
    zero_grad_([opt, adam])
    assert all(p.grad is None for p in params) and adam.param_groups[0]["params"][0].grad is None
