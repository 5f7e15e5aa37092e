"""Message-passing reductions over node segments, shared by the graph models (EGNN, EGNO, SEGNN)."""

from __future__ import annotations

import torch

__all__ = ["segment_sum", "graph_mean"]


def segment_sum(src: torch.Tensor, index: torch.Tensor, num: int) -> torch.Tensor:
    r"""``out[k] = Σ_{i : index[i] = k} src[i]`` for ``k < num``.

    Shapes:
        - **input:** ``src (E, *)``, ``index (E,)`` with values in ``[0, num)``
        - **output:** ``(num, *)``
    """
    return src.new_zeros((num,) + src.shape[1:]).index_add_(0, index, src)


def graph_mean(x: torch.Tensor, batch: torch.Tensor | None) -> torch.Tensor:
    """Per-node mean of ``x`` over its graph, shape ``x.shape`` (``batch=None``: one graph).

    The segments are sized by the number of nodes, an upper bound on the number of graphs, rather than
    ``batch.max() + 1``: reading that maximum would sync the host with the GPU at every forward.
    """
    if batch is None:
        return x.mean(0, keepdim=True).expand_as(x)
    num = batch.numel()
    total = segment_sum(x, batch, num)
    count = segment_sum(torch.ones_like(batch, dtype=x.dtype), batch, num).clamp(min=1)
    return (total / count[:, None])[batch]
