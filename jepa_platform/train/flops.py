"""FLOP counting with torch.utils.flop_counter, including the CPU attention kernels it leaves out.

On CPU, SDPA dispatches to `_scaled_dot_product_flash_attention_for_cpu` (and its backward), which
FlopCounterMode does not know; without them a ViT step is undercounted by a fifth to a third.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

aten = torch.ops.aten


def _cpu_sdpa_flop(query, key, value, *args, out_val=None, **kwargs) -> int:
    return sdpa_flop_count(query.shape, key.shape, value.shape)


def _cpu_sdpa_backward_flop(grad_out, query, key, value, *args, out_val=None, **kwargs) -> int:
    return sdpa_backward_flop_count(grad_out.shape, query.shape, key.shape, value.shape)


CPU_ATTENTION_FLOPS = {
    aten._scaled_dot_product_flash_attention_for_cpu: _cpu_sdpa_flop,
    aten._scaled_dot_product_flash_attention_for_cpu_backward: _cpu_sdpa_backward_flop,
}


def flop_counter() -> FlopCounterMode:
    """A FlopCounterMode that also counts the CPU attention kernels."""
    return FlopCounterMode(display=False, custom_mapping=CPU_ATTENTION_FLOPS)


def count_flops(fn: Callable[[], object]) -> int:
    """Total FLOPs of one call of `fn` (forward and, if `fn` calls it, backward)."""
    counter = flop_counter()
    with counter:
        fn()
    return counter.get_total_flops()
