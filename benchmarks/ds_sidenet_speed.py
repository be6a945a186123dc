"""Inference speed, parameters and FLOPs of DS-SIDENet (paper 004's headline: 150 ms per 640x480 on a V100).

::

  python benchmarks/ds_sidenet_speed.py [--variants low,high] [--batches 1,8] [--dtypes float32,bfloat16]
      [--size 480,640] [--reps 10] [--out ds_sidenet_speed.md]

For each variant, batch size and compute dtype it jit-compiles the test-time path (the model's ``apply`` and
``decode``: soft expectation of the classification branch), reports the parameter count, XLA's cost
analysis FLOPs of the compiled function, the compile time and the median wall time per image over ``reps``
calls after one warm-up. Random weights (speed does not depend on them). Not a test; on CPU expect seconds
per image. DeepLab-v2-SID (paper 002) is not registered on this branch, so it is not in the table yet.
"""

from __future__ import annotations

import argparse
import math
import time

import jax
import jax.numpy as jnp
import numpy as np

from semdepth_jax.models import get_model


def bench(variant: str, batch: int, dtype: str, hw: tuple[int, int], reps: int) -> dict:
  model = get_model("ds_sidenet", variant=variant, dtype=jnp.dtype(dtype))
  x = jnp.asarray(np.random.default_rng(0).uniform(size=(batch, *hw, 3)), jnp.float32)
  variables = jax.jit(model.init)(jax.random.key(0), x[:1])
  params = sum(math.prod(a.shape) for a in jax.tree.leaves(variables["params"]))

  def infer(v, img):
    return model.decode(model.apply(v, img, train=False))["depth"]

  t0 = time.perf_counter()
  compiled = jax.jit(infer).lower(variables, x).compile()
  compile_s = time.perf_counter() - t0
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, list | tuple) else cost
  flops = float(cost.get("flops", float("nan"))) if cost else float("nan")
  jax.block_until_ready(compiled(variables, x))
  times = []
  for _ in range(reps):
    t = time.perf_counter()
    jax.block_until_ready(compiled(variables, x))
    times.append(time.perf_counter() - t)
  return {
    "variant": variant,
    "batch": batch,
    "dtype": dtype,
    "params": params,
    "gflops_per_image": flops / batch / 1e9,
    "compile_s": compile_s,
    "ms_per_image": 1e3 * float(np.median(times)) / batch,
  }


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--variants", default="low,high")
  p.add_argument("--batches", default="1,8")
  p.add_argument("--dtypes", default="float32,bfloat16")
  p.add_argument("--size", default="480,640", help="H,W")
  p.add_argument("--reps", type=int, default=10)
  p.add_argument("--out", default="")
  a = p.parse_args()
  hw = tuple(int(v) for v in a.size.split(","))
  rows = [
    "| variant | batch | dtype | params | GFLOPs / image | compile s | ms / image |",
    "|---|---|---|---|---|---|---|",
  ]
  print(f"device: {jax.devices()[0].device_kind}, input {hw[0]}x{hw[1]}")
  for v in a.variants.split(","):
    for b in (int(s) for s in a.batches.split(",")):
      for d in a.dtypes.split(","):
        r = bench(v, b, d, hw, a.reps)
        rows.append(
          f"| {v} | {b} | {d} | {r['params']:,} | {r['gflops_per_image']:.1f} | "
          f"{r['compile_s']:.1f} | {r['ms_per_image']:.1f} |"
        )
        print(rows[-1], flush=True)
  if a.out:
    with open(a.out, "w") as f:
      f.write(
        f"device: {jax.devices()[0].device_kind}, input {hw[0]}x{hw[1]}\n\n"
        + "\n".join(rows)
        + "\n"
      )


if __name__ == "__main__":
  main()
