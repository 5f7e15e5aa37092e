r"""Plain SGD steps and ``zero_grad`` without ``torch.optim``'s per-call machinery.

ACE's updates of γ, u and λ are plain gradient steps on a handful of scalars:

.. math::
    \gamma \leftarrow \gamma - \eta_p \nabla_\gamma \mathcal{L}, \qquad
    \lambda \leftarrow \lambda + \eta_d \nabla_\lambda \mathcal{L}.

``torch.optim.SGD.step()`` computes exactly this, but each call also enters a profiler range, the
step hooks, the ``no_grad``/dynamo wrappers and the foreach grouping: tens of µs per call, about as
much as the rest of the dual step together. :func:`step_` applies the same law as SGD with
``momentum = weight_decay = 0`` (``p.add_(g, alpha=∓lr)``, the very operation of SGD's loop, so the
result is bitwise that of ``SGD.step()``) directly, one ``torch._foreach_add_`` per learning rate; an
optimizer that is anything more (momentum, weight decay, a tensor lr, hooks, a scheduler's patched
``step``, sparse or complex gradients, a subclass) takes its own ``step()``.
"""

from __future__ import annotations

from collections import defaultdict

import torch
from torch.optim import optimizer as _torch_optimizer

__all__ = ["is_plain_sgd", "step_", "zero_grad_"]


def _no_hooks(optimizer: torch.optim.Optimizer) -> bool:
    return not (optimizer._optimizer_step_pre_hooks or optimizer._optimizer_step_post_hooks
                or _torch_optimizer._global_optimizer_pre_hooks or _torch_optimizer._global_optimizer_post_hooks
                or "step" in vars(optimizer))  # an LR scheduler wraps ``optimizer.step`` on the instance


def is_plain_sgd(optimizer: torch.optim.Optimizer) -> bool:
    """``True`` if ``optimizer`` is exactly ``torch.optim.SGD`` taking plain steps ``p ∓= lr · g``."""
    if type(optimizer) is not torch.optim.SGD or not _no_hooks(optimizer):
        return False
    return all(g["momentum"] == 0 and g["weight_decay"] == 0 and not g["nesterov"] and not g["differentiable"]
               and isinstance(g["lr"], float | int) for g in optimizer.param_groups)


@torch.no_grad()
def _plain_sgd_step_(optimizer: torch.optim.SGD) -> bool:
    """``p.add_(g, alpha=±lr)`` for every parameter with a gradient; ``False`` (nothing done) on an odd one."""
    by_alpha: dict[float, tuple[list[torch.Tensor], list[torch.Tensor]]] = defaultdict(lambda: ([], []))
    for group in optimizer.param_groups:
        alpha = float(group["lr"]) if group["maximize"] else -float(group["lr"])
        for parameter in group["params"]:
            grad = parameter.grad
            if grad is None:
                continue
            if grad.is_sparse or parameter.is_complex():
                return False
            params, grads = by_alpha[alpha]
            params.append(parameter)
            grads.append(grad)
    for alpha, (params, grads) in by_alpha.items():
        torch._foreach_add_(params, grads, alpha=alpha)
    return True


def step_(optimizers: list[torch.optim.Optimizer]) -> None:
    """Step every optimizer: plain SGD directly (:func:`_plain_sgd_step_`), any other by its ``step()``."""
    for optimizer in optimizers:
        if not (is_plain_sgd(optimizer) and _plain_sgd_step_(optimizer)):
            optimizer.step()


def zero_grad_(optimizers: list[torch.optim.Optimizer]) -> None:
    """``optimizer.zero_grad(set_to_none=True)`` for every optimizer, as a plain loop where that is all it does."""
    for optimizer in optimizers:
        if type(optimizer).zero_grad is torch.optim.Optimizer.zero_grad:
            for group in optimizer.param_groups:
                for parameter in group["params"]:
                    parameter.grad = None
        else:
            optimizer.zero_grad(set_to_none=True)
