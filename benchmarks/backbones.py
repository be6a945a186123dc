"""Forward + backward time of ResNet-101 and EfficientNet-B4: this library (JAX) next to PyTorch.

For each backbone, one training step's compute without the optimiser: forward in training mode (BatchNorm
with batch statistics), loss ``mean(logits ** 2)``, gradients w.r.t. all parameters. JAX runs the step under
``jax.jit`` (compiled and warmed up first); PyTorch runs eagerly (``loss.backward()``, gradients reset to
None each time). Both use the same batch (default 2 x 321 x 321 x 3, the DeepLab-v2 crop) and float32.
The two frameworks alternate repeat by repeat (so load changes on a shared machine hit both alike) and the
median is reported. The process is pinned to ``--threads`` CPU cores (``os.sched_setaffinity``, which XLA's
CPU thread pool follows) and PyTorch gets ``torch.set_num_threads(--threads)``.

References: ``torchvision.models.resnet101`` and ``timm.create_model('efficientnet_b4')`` (random weights,
nothing is downloaded). Our EfficientNet lives in ``semdepth_jax.models.backbones.efficientnet``; without
it that row is skipped with a message.

  python benchmarks/backbones.py                          # batch 2, 321 x 321, 10 repeats
  python benchmarks/backbones.py --repeats 1 --size 64    # smoke run

Prints a markdown table; ratio = PyTorch time / JAX time (> 1: JAX is faster). Never run as a test.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")


def _pin_threads(n: int) -> str:
  try:
    cpus = sorted(os.sched_getaffinity(0))[:n]
    os.sched_setaffinity(0, cpus)
    return f"cores {cpus}"
  except (AttributeError, OSError) as e:  # not Linux: leave the scheduler alone
    return f"no affinity ({e})"


def jax_step(module, batch, size):
  """A jitted forward + backward of ``module`` in training mode; returns (run(), parameter count)."""
  import jax
  import jax.numpy as jnp
  import numpy as np

  x = jnp.asarray(np.random.default_rng(0).standard_normal((batch, size, size, 3)), jnp.float32)
  variables = jax.jit(module.init)(jax.random.key(0), x)
  params, stats = variables["params"], variables.get("batch_stats", {})

  def loss(params, stats, key):
    out, new = module.apply(
      {"params": params, "batch_stats": stats},
      x,
      train=True,
      mutable=["batch_stats"],
      rngs={"dropout": key},
    )
    return jnp.mean(out["logits"] ** 2), new

  step = jax.jit(jax.value_and_grad(loss, has_aux=True))
  key = jax.random.key(1)

  def run():
    jax.block_until_ready(step(params, stats, key))

  return run, sum(int(np.prod(p.shape)) for p in jax.tree.leaves(params))


def torch_step(model, batch, size, torch):
  """An eager forward + backward of ``model`` in training mode; returns (run(), parameter count)."""
  model.train()
  x = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(0))

  def run():
    model.zero_grad(set_to_none=True)
    loss = model(x).square().mean()
    loss.backward()

  return run, sum(p.numel() for p in model.parameters())


def build_pairs(names, torch):
  """(name, our module or an error message, reference model) per requested backbone."""
  import timm
  import torchvision

  from semdepth_jax.models import backbones

  pairs = []
  for name in names:
    if name == "resnet101":
      ours = backbones.get_backbone_entry("resnet101").build()
      pairs.append((name, ours, torchvision.models.resnet101(weights=None)))
    elif name == "efficientnet_b4":
      try:
        from semdepth_jax.models.backbones.efficientnet import EfficientNet

        ours = EfficientNet(variant="b4")
      except (ImportError, TypeError) as e:
        ours = f"skipped: semdepth_jax.models.backbones.efficientnet.EfficientNet unavailable ({e})"
      pairs.append((name, ours, timm.create_model("efficientnet_b4", pretrained=False)))
    else:
      raise SystemExit(f"unknown model {name!r} (resnet101, efficientnet_b4)")
  return pairs


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--models", default="resnet101,efficientnet_b4")
  parser.add_argument("--batch", type=int, default=2)
  parser.add_argument("--size", type=int, default=321)
  parser.add_argument("--repeats", type=int, default=10)
  parser.add_argument("--warmup", type=int, default=2)
  parser.add_argument("--threads", type=int, default=2)
  args = parser.parse_args(argv)

  pinned = _pin_threads(args.threads)
  import jax
  import torch

  torch.set_num_threads(args.threads)
  torch.manual_seed(0)
  print(
    f"batch {args.batch}, {args.size}x{args.size}, float32, {args.threads} threads ({pinned}); "
    f"jax {jax.__version__} on {jax.devices()[0].platform}, torch {torch.__version__}; "
    f"median of {args.repeats} after {args.warmup} warm-up",
    flush=True,
  )
  rows = []
  for name, ours, ref in build_pairs(args.models.split(","), torch):
    if isinstance(ours, str):
      print(f"{name}: {ours}", file=sys.stderr)
      rows.append(f"| {name} | – | – | – | {ours} |")
      continue
    t0 = time.perf_counter()
    run_jax, n_jax = jax_step(ours, args.batch, args.size)
    for _ in range(args.warmup):
      run_jax()
    compile_s = time.perf_counter() - t0
    run_torch, n_torch = torch_step(ref, args.batch, args.size, torch)
    for _ in range(args.warmup):
      run_torch()
    times = {"jax": [], "torch": []}
    for _ in range(args.repeats):
      for key, fn in (("jax", run_jax), ("torch", run_torch)):
        t = time.perf_counter()
        fn()
        times[key].append(time.perf_counter() - t)
    tj, tt = statistics.median(times["jax"]), statistics.median(times["torch"])
    note = f"params {n_jax:,} / {n_torch:,}; JAX compile + warm-up {compile_s:.1f} s"
    rows.append(f"| {name} | {1e3 * tj:.0f} | {1e3 * tt:.0f} | {tt / tj:.2f} | {note} |")
    print(f"{name}: jax {1e3 * tj:.0f} ms, torch {1e3 * tt:.0f} ms", file=sys.stderr, flush=True)
  print()
  print("| model | JAX fwd+bwd (ms) | PyTorch fwd+bwd (ms) | ratio PyTorch / JAX | notes |")
  print("|---|---|---|---|---|")
  print("\n".join(rows))
  return 0


if __name__ == "__main__":
  sys.exit(main())
