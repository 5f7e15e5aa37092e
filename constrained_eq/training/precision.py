"""bf16 autocast of the training forward passes (the loss is taken in float32; validation stays in float32)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

__all__ = ["check_precision", "autocast_forward"]


def check_precision(precision: str, device: str | torch.device) -> None:
    """Refuse ``bf16`` on a device without bfloat16 autocast.

    Raises:
        ValueError: Naming the device.
    """
    if precision != "bf16":
        return
    device_type = torch.device(device).type
    if not torch.amp.is_autocast_available(device_type) or (
            device_type == "cuda" and not torch.cuda.is_bf16_supported()):
        raise ValueError(f"Expected 'training.precision' to be 'fp32' on device {device_type!r}, which has no "
                         "bfloat16 autocast (got 'bf16')")


def autocast_forward(forward: Callable[[Any, Any], Any], device: str | torch.device) -> Callable[[Any, Any], Any]:
    """``forward`` run under bfloat16 autocast, its tensor output cast back to float32."""
    device_type = torch.device(device).type

    def run(model: Any, batch: Any) -> Any:
        with torch.autocast(device_type, dtype=torch.bfloat16):
            output = forward(model, batch)
        return output.float() if isinstance(output, torch.Tensor) and output.is_floating_point() else output

    return run
