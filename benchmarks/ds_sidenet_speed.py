"""Inference speed, parameters and FLOPs of DS-SIDENet next to DeepLab-v2-SID (paper 004's headline).

::

  python benchmarks/ds_sidenet_speed.py [--models low,high,deeplab_sid] [--batches 1,8]
      [--dtypes float32,bfloat16] [--size 480,640] [--reps 10] [--out ds_sidenet_speed.md] [--smoke]

Paper 004 (Ren et al.) reports 150 ms per 640x480 image for DS-SIDENet on a V100 against 600 ms for DORN, a
DeepLab-style network that classifies depth over SID bins; DeepLab-v2-SID (paper 002, registered as
``deeplab_sid``) is this library's network of that kind. For each model (``low`` / ``high``: DS-SIDENet's
variants; ``deeplab_sid``), batch size and compute dtype it jit-compiles the test-time path (the model's
``apply`` in inference mode followed by its ``decode``: bins to metres, the soft expectation of DS-SIDENet's
classification branch), and reports the parameter count, XLA's FLOPs per image (HLO cost analysis of the
function lowered for the host CPU, ``benchmarks/xla_flops.py``: the same count on every device), the compile time, and the median wall time per image over ``reps`` calls after one warm-up, all
models in the same run. Random weights, N(0, 1/fan_in) (speed does not depend on them). Each row is written to ``--out``
as soon as it is measured, so a run stopped by a time limit keeps what it measured.

``--smoke``: the tests' tiny widths at 32x48, batch 1, one call (CPU; checks that the script runs).
Not a test; on CPU expect seconds per image.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from benchmarks import xla_flops  # noqa: E402
from semdepth_jax.models import get_model  # noqa: E402
from tests.test_export import TINY, random_variables  # noqa: E402  (tiny widths; weights without init)

MODELS = ("low", "high", "deeplab_sid")
"""``low`` / ``high``: DS-SIDENet variants (docs/model_spec.md §5); ``deeplab_sid``: paper 002's net."""

SMOKE_KWARGS = {
  "low": TINY["ds_sidenet"],
  "high": TINY["ds_sidenet"],
  "deeplab_sid": TINY["deeplab_sid"],
}
"""``--smoke`` widths: the export tests' tiny models (``tests/test_export.py``)."""


def build(name: str, dtype: str, smoke: bool):
  """The model ``name`` of :data:`MODELS` at paper widths (or the smoke widths) computing in ``dtype``."""
  kw = dict(SMOKE_KWARGS[name]) if smoke else {}
  kw["dtype"] = jnp.dtype(dtype)
  if name == "deeplab_sid":
    return get_model("deeplab_sid", **kw)
  return get_model("ds_sidenet", variant=name, **kw)


def bench(name: str, batch: int, dtype: str, hw: tuple[int, int], reps: int, smoke: bool) -> dict:
  model = build(name, dtype, smoke)
  x = jnp.asarray(np.random.default_rng(0).uniform(size=(batch, *hw, 3)), jnp.float32)
  variables = random_variables(model, hw)
  params = sum(math.prod(a.shape) for a in jax.tree.leaves(variables["params"]))

  def infer(v, img):
    return model.decode(model.apply(v, img, train=False))["depth"]

  t0 = time.perf_counter()
  compiled = jax.jit(infer).lower(variables, x).compile()
  compile_s = time.perf_counter() - t0
  flops = xla_flops.program_flops(infer, variables, x) or float("nan")
  out = jax.block_until_ready(compiled(variables, x))
  if out.shape[0] != batch or not np.all(np.isfinite(np.asarray(out, np.float32))):
    raise RuntimeError(f"{name}: depth of shape {out.shape} or not finite")
  times = []
  for _ in range(reps):
    t = time.perf_counter()
    jax.block_until_ready(compiled(variables, x))
    times.append(time.perf_counter() - t)
  return {
    "model": name,
    "batch": batch,
    "dtype": dtype,
    "params": params,
    "gflops_per_image": flops / batch / 1e9,
    "compile_s": compile_s,
    "ms_per_image": 1e3 * float(np.median(times)) / batch,
  }


def main(argv: list[str] | None = None) -> None:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--models", default=",".join(MODELS), help=f"subset of {','.join(MODELS)}")
  p.add_argument("--batches", default="1,8")
  p.add_argument("--dtypes", default="float32,bfloat16")
  p.add_argument("--size", default="480,640", help="H,W")
  p.add_argument("--reps", type=int, default=10)
  p.add_argument("--out", default="")
  p.add_argument("--smoke", action="store_true", help="tiny widths, 32x48, batch 1, one call")
  a = p.parse_args(argv)
  hw = tuple(int(v) for v in a.size.split(","))
  batches = [int(s) for s in a.batches.split(",")]
  reps = a.reps
  if a.smoke:
    hw, batches, reps = (32, 48), [1], 1
  names = [n for n in a.models.split(",") if n]
  for n in names:
    if n not in MODELS:
      p.error(f"--models: unknown model {n!r}; expected a subset of {','.join(MODELS)}")
  head = (
    f"device: {jax.devices()[0].device_kind} ({jax.default_backend()}), jax {jax.__version__}, "
    f"python {platform.python_version()}, input {hw[0]}x{hw[1]}"
    + (", smoke widths" if a.smoke else "")
    + "\n\n| model | batch | dtype | params | GFLOPs / image | compile s | ms / image |\n"
    "|---|---|---|---|---|---|---|\n"
  )
  print(head, end="", flush=True)
  if a.out:
    with open(a.out, "w", encoding="utf-8") as f:
      f.write(head)
  for n in names:
    for b in batches:
      for d in a.dtypes.split(","):
        r = bench(n, b, d, hw, reps, a.smoke)
        row = (
          f"| {n} | {b} | {d} | {r['params']:,} | {r['gflops_per_image']:.1f} | "
          f"{r['compile_s']:.1f} | {r['ms_per_image']:.1f} |\n"
        )
        print(row, end="", flush=True)
        if a.out:
          with open(a.out, "a", encoding="utf-8") as f:
            f.write(row)


if __name__ == "__main__":
  main()
