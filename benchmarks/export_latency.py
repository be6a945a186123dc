"""Exported-model latency and parity per model family: JAX CPU vs StableHLO vs onnxruntime CPU.

::

  python benchmarks/export_latency.py [--models unet,ds_sidenet,...] [--widths paper|tiny] [--batch 1]
      [--reps 10] [--out export_latency.md]

For each registered model (default: every one that reads images only) at its paper input size
(``configs/*.py`` ``IMAGE_SIZES['paper']``) and paper widths (or the tests' tiny widths), with random weights:

* JAX CPU: ``jax.jit`` of the model + its ``decode`` (``semdepth_jax.export.serving_fn``);
* StableHLO: the ``semdepth export`` artifact reloaded with ``jax.export.deserialize`` (same XLA CPU);
* ONNX: the ``jax2onnx`` artifact in ``onnxruntime`` (CPUExecutionProvider), where the family converts.

It prints the median wall time per batch over ``reps`` calls after one warm-up, and the largest
difference of each artifact's outputs from JAX's on random images relative to the output's scale,
``max |artifact - jax| / max(1, max |jax|)`` over depth (metres) and class probabilities, the paper-width
parity check of issue 17 (random paper-width weights give depths far outside any real range, e.g.
thousands of metres, so absolute differences are not comparable between families; the table lists the
largest |depth|). A family that cannot be exported gets the one-line reason.
Not a test; run it on a quiet machine (the README quotes no latency measured under load).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from benchmarks.compare import PAPER_SIZE  # noqa: E402  (paper input (H, W) per family)
from semdepth_jax import export, models  # noqa: E402

PAPER_OVERRIDES = {"scrx": {"use_ohess": False, "depth_norm": 20.0}}
"""SCRX as its RGB-only variant (the OHESS variant reads ground-truth labels)."""


def _time(fn, x, reps: int) -> float:
  fn(x)  # warm-up (compiles)
  ts = []
  for _ in range(reps):
    t0 = time.perf_counter()
    fn(x)
    ts.append(time.perf_counter() - t0)
  return statistics.median(ts)


def bench(name: str, widths: str, batch: int, reps: int, tmp: str) -> dict:
  from tests.test_export import TINY, random_variables, reference

  kw = TINY[name] if widths == "tiny" else PAPER_OVERRIDES.get(name, {})
  size = (32, 48) if widths == "tiny" else PAPER_SIZE[name]
  model = models.get_model(name, **kw)
  variables = random_variables(model, size)
  x = np.random.default_rng(1).uniform(size=(batch, *size, 3)).astype(np.float32)
  row: dict = {"model": name, "size": f"{size[0]}x{size[1]}"}
  ref = reference(model, variables, x)
  row["depth_max_m"] = float(np.max(np.abs(ref["depth"]))) if "depth" in ref else None
  fn = jax.jit(export.serving_fn(model, variables))
  row["jax_ms"] = 1e3 * _time(lambda a: jax.block_until_ready(fn(jnp.asarray(a))), x, reps)
  for fmt, ext in (("stablehlo", "shlo"), ("onnx", "onnx")):
    try:
      path = export.export_model(
        model, variables, f"{tmp}/{name}.{ext}", fmt=fmt, input_size=size, batch=batch
      )
      art = export.load_exported(path)
      row[f"{fmt}_ms"] = 1e3 * _time(art.run, x, reps)
      got = art.run(x)
      row[f"{fmt}_maxdiff"] = max(float(np.max(np.abs(got[k] - ref[k]))) for k in ref)
      row[f"{fmt}_reldiff"] = max(
        float(np.max(np.abs(got[k] - ref[k])) / max(1.0, float(np.max(np.abs(ref[k])))))
        for k in ref
      )
    except (export.ExportError, ValueError) as e:
      row[f"{fmt}_ms"] = None
      row[f"{fmt}_error"] = str(e)
  return row


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  names = [n for n in models.known_models() if n not in ("cnn3d_s", "cnn3d_up")]
  p.add_argument("--models", default=",".join(names))
  p.add_argument("--widths", choices=("paper", "tiny"), default="paper")
  p.add_argument("--batch", type=int, default=1)
  p.add_argument("--reps", type=int, default=10)
  p.add_argument("--out", default=None, help="also write the table (markdown) here")
  args = p.parse_args()
  head = (
    f"# export latency ({args.widths} widths, batch {args.batch}, median of {args.reps})\n\n"
    f"machine: {platform.platform()}, {os.cpu_count()} CPUs, jax {jax.__version__}\n\n"
    "| model | input | JAX CPU ms | StableHLO ms | rel. diff | onnxruntime CPU ms | rel. diff | "
    "max abs depth |\n"
    "| --- | --- | --- | --- | --- | --- | --- | --- |"
  )
  lines = [head]
  print(head, flush=True)
  with tempfile.TemporaryDirectory() as tmp:
    for name in args.models.split(","):
      r = bench(name, args.widths, args.batch, args.reps, tmp)

      def cell(fmt, r=r):
        if r.get(f"{fmt}_ms") is None:
          return "n/a", r.get(f"{fmt}_error", "")
        return f"{r[f'{fmt}_ms']:.1f}", f"{r[f'{fmt}_reldiff']:.1e}"

      s, sd = cell("stablehlo")
      o, od = cell("onnx")
      dmax = "–" if r["depth_max_m"] is None else f"{r['depth_max_m']:.3g}"
      line = f"| {name} | {r['size']} | {r['jax_ms']:.1f} | {s} | {sd} | {o} | {od} | {dmax} |"
      lines.append(line)
      print(line, flush=True)
  if args.out:
    with open(args.out, "w", encoding="utf-8") as f:
      f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
  main()
