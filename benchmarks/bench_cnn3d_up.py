"""Times 3D CNN-UP (paper 000) training steps per transposed-conv implementation and compute dtype.

Measures forward + backward (the paper's loss ``0.0005 * sum((y_hat - y)^2)``, gradients w.r.t. all
parameters, BatchNorm in training mode) under ``jax.jit``: every configuration is compiled and warmed up,
then timed ``--repeats`` times round-robin (so load changes on a shared machine hit all alike) and the
median is reported, all side by side in one process so the ratios are comparable.

``--part deconv`` times only the upsampling stage (deconv1 -> BN -> deconv2 -> BN -> deconv3 on the
(B, 1, H/8 - 1, W/8 - 1, width) bottleneck), which isolates the transposed-convolution implementations
from the 3-D encoder that dominates the full model.

Example (one CPU run at the paper's size; a full-width step takes tens of seconds on 2 cores):

  python benchmarks/bench_cnn3d_up.py --batch 1 --repeats 2 --part both
  python benchmarks/bench_cnn3d_up.py --batch 1 --width 16 --repeats 3   # reduced width

``'resize_conv'`` is a different operator (nearest upsampling + conv) listed for speed only.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from semdepth_jax.models import layers
from semdepth_jax.models.cnn3d import CNN3DUP

DTYPES = {"f32": jnp.float32, "bf16": jnp.bfloat16}


class UpStage(nn.Module):
  """3D CNN-UP's upsampling stage alone (same layers as CNN3DUP's deconv1-3)."""

  width: int
  impl: str
  dtype: object = jnp.float32

  @nn.compact
  def __call__(self, x, train=True):
    for i in range(2):
      x = layers.ConvTranspose(self.width, (3, 3, 3), (1, 2, 2), impl=self.impl, dtype=self.dtype)(
        x
      )
      x = layers.keras_batch_norm(train, dtype=self.dtype)(nn.relu(x))
      del i
    x = layers.ConvTranspose(1, (3, 3, 3), (1, 2, 2), impl=self.impl, dtype=self.dtype)(x)
    return {"depth": nn.relu(x[:, 0]).astype(jnp.float32)}


def build(part, impl, dtype, width):
  if part == "full":
    return CNN3DUP(
      widths=(width,) * 3,
      bottleneck_width=width,
      up_widths=(width,) * 2,
      conv_transpose_impl=impl,
      dtype=dtype,
    )
  return UpStage(width, impl, dtype)


def make_inputs(part, batch, height, width_px, width, rng):
  if part == "full":
    image = rng.uniform(size=(batch, height, width_px, 3)).astype(np.float32)
    labels = rng.integers(0, 14, size=(batch, height, width_px)).astype(np.int32)
    return (jnp.asarray(image), jnp.asarray(labels))
  h, w = (height // 4 - 2) // 2, (width_px // 4 - 2) // 2
  x = rng.normal(size=(batch, 1, h, w, width)).astype(np.float32)
  return (jnp.asarray(x),)


def compile_config(part, impl, dtype_name, args, inputs, target, variables):
  """Returns (compiled step, compile seconds) for one configuration."""
  model = build(part, impl, DTYPES[dtype_name], args.width)

  def loss_fn(params, batch_stats, *xs):
    out, upd = model.apply(
      {"params": params, "batch_stats": batch_stats}, *xs, train=True, mutable=["batch_stats"]
    )
    return 0.0005 * jnp.sum((out["depth"] - target) ** 2), upd["batch_stats"]

  step = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))
  t0 = time.perf_counter()
  compiled = step.lower(variables["params"], variables["batch_stats"], *inputs).compile()
  return compiled, time.perf_counter() - t0


def run_part(part, args):
  rng = np.random.default_rng(0)
  inputs = make_inputs(part, args.batch, args.height, args.width_px, args.width, rng)
  ref_model = build(part, "input_dilation", jnp.float32, args.width)
  key = jax.random.key(0, impl="unsafe_rbg")
  variables = jax.jit(lambda *xs: ref_model.init(key, *xs, train=False))(*inputs)
  out_shape = jax.eval_shape(
    lambda v, *xs: ref_model.apply(v, *xs, train=False), variables, *inputs
  )
  target = jnp.asarray(rng.uniform(size=out_shape["depth"].shape).astype(np.float32))
  configs = [(impl, dt) for dt in args.dtypes for impl in args.impls]
  steps, compile_s, times, losses = {}, {}, {c: [] for c in configs}, {}
  for c in configs:
    steps[c], compile_s[c] = compile_config(part, *c, args, inputs, target, variables)
    for _ in range(args.warmup):
      (loss, _), grads = steps[c](variables["params"], variables["batch_stats"], *inputs)
      jax.block_until_ready(grads)
    losses[c] = float(loss)
    print(f"  compiled + warmed up {part} {c[0]} {c[1]} ({compile_s[c]:.1f} s compile)", flush=True)
  # Round-robin repeats: load changes on a shared machine then hit every configuration alike.
  for r in range(args.repeats):
    for c in configs:
      t0 = time.perf_counter()
      jax.block_until_ready(steps[c](variables["params"], variables["batch_stats"], *inputs))
      times[c].append(time.perf_counter() - t0)
    print(f"  round {r + 1}/{args.repeats} done", flush=True)
  base = statistics.median(times[configs[0]])
  shape = "x".join(str(s) for s in inputs[0].shape)
  print(
    f"\n### part={part} batch={args.batch} width={args.width} input={shape} (fwd+bwd, median of "
    f"{args.repeats} round-robin runs after {args.warmup} warm-up; backend {jax.default_backend()})"
  )
  print("| impl | dtype | compile s | median s | min s | ratio vs first | loss |")
  print("|---|---|---|---|---|---|---|")
  for c in configs:
    med, mn = statistics.median(times[c]), min(times[c])
    print(
      f"| {c[0]} | {c[1]} | {compile_s[c]:.1f} | {med:.3f} | {mn:.3f} | {med / base:.2f} | "
      f"{losses[c]:.4g} |"
    )


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--batch", type=int, default=1)
  p.add_argument("--repeats", type=int, default=3)
  p.add_argument("--warmup", type=int, default=1)
  p.add_argument("--width", type=int, default=64, help="feature width of every layer (paper: 64)")
  p.add_argument("--height", type=int, default=192)
  p.add_argument("--width-px", type=int, default=320)
  p.add_argument(
    "--impls",
    nargs="+",
    default=list(layers.CONV_TRANSPOSE_IMPLS),
    choices=layers.CONV_TRANSPOSE_IMPLS,
  )
  p.add_argument("--dtypes", nargs="+", default=["f32", "bf16"], choices=sorted(DTYPES))
  p.add_argument("--part", choices=["full", "deconv", "both"], default="full")
  args = p.parse_args()
  print(f"jax {jax.__version__}, devices {jax.devices()}", flush=True)
  for part in ["deconv", "full"] if args.part == "both" else [args.part]:
    run_part(part, args)
  print(f"\npeak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6:.2f} GB")


if __name__ == "__main__":
  main()
