"""FLOPs of a jitted program from XLA's HLO cost analysis, counted the same way on every device.

The benchmarks' MFU and GFLOP columns come from here. ``compiled.cost_analysis()`` is not used for them:
on GPUs XLA rewrites convolutions into cuDNN custom calls, which its cost analysis counts as zero FLOPs
(measured on an H200 with jax 0.11.2: DeepLab-v2-SID's 420x800 training step reported 4.4 GFLOP from the
compiled module, DS-SIDENet's 480x640 inference 0.9 GFLOP per image against 57.8 on CPU), and
``Lowered.cost_analysis()`` is not implemented for PJRT plugins such as the CUDA one. So the program is
lowered once more for the host CPU (shapes and dtypes only: nothing is compiled or run) and XLA's cost
analysis of that pre-optimisation HLO gives the count: every convolution and matrix product as written, at
2 FLOPs per multiply-add, border taps of padded convolutions excluded.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def program_flops(fn: Callable[..., Any], *args: Any) -> float | None:
  """XLA's FLOP count of ``jax.jit(fn)(*args)``, from the host-CPU lowering's HLO cost analysis.

  Args:
    fn: the function to count (not jitted; static arguments closed over).
    *args: its arguments: arrays or ``jax.ShapeDtypeStruct`` pytrees (only shapes and dtypes are read).

  Returns:
    FLOPs of one call (float), or None when the cost analysis has no ``flops`` entry.
  """
  import jax
  from jax.sharding import SingleDeviceSharding

  cpu = SingleDeviceSharding(jax.devices("cpu")[0])
  abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=cpu), args)
  cost = jax.jit(fn).lower(*abstract).cost_analysis()
  if isinstance(cost, list | tuple):
    cost = cost[0] if cost else {}
  return float(cost["flops"]) if cost and "flops" in cost else None
