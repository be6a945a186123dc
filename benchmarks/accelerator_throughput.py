"""Training throughput (images/s) and MFU of every family at its paper input size, batch 1, 2, 4, ...

For each preset in ``--presets`` (``config_file:preset args``; default: one per family of papers 000-004)
and each ``--dtypes`` entry, the library's jitted train step (``make_train_step`` with the config's first
stage: its loss, optimiser and model overrides; ``compute_dtype`` float32 or bfloat16) runs on random data
at the config's ``image_size`` for batch 1, 2, 4, ... until the step does not fit (an XLA resource-
exhausted error), ``--max_batch`` or the time budget. Per (family, dtype, batch): compile seconds, median
step seconds over ``--steps`` steps, images/s, XLA's FLOP count of the compiled step
(``cost_analysis()['flops']``) and MFU = FLOPs / step time / device peak (:data:`PEAK_TFLOPS`).
Then the input pipeline (``semdepth_jax.data.pipeline.make_train_iterator`` on ``synthetic_city``
(``synthetic_city/tiny`` with ``--smoke``; built into ``--data_dir`` first)
with ``transforms.EIGEN_AUGMENT``, as ``benchmarks/bench_pipeline.py``) in examples/s, next to the best
step rate at that size: the pipeline must deliver >= 2x the step rate or the table says what it falls short by.

  python benchmarks/accelerator_throughput.py --out results.json --budget_s 330     # the GPU run
  python benchmarks/accelerator_throughput.py --smoke --out /tmp/t.json             # CPU, seconds

Run by ``benchmarks/accelerator_suite.sh``. Numbers from a shared, loaded machine are not results.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import platform
import statistics
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _ROOT not in sys.path:
  sys.path.insert(0, _ROOT)

PEAK_TFLOPS = {
  # Dense (no sparsity) peaks, TFLOP/s. NVIDIA H100 Tensor Core GPU datasheet, SXM5 column: BF16 Tensor
  # Core 1,979 with sparsity = 989 dense; FP32 67. NVIDIA H200 Tensor Core GPU datasheet, SXM column: the
  # same compute (BF16 1,979 sparse / 989 dense, FP32 67). f32 MFU uses the FP32 (non-tensor) peak; XLA may
  # run float32 convolutions on TF32 tensor cores (494 dense), so f32 MFU can exceed what FP32 allows.
  "H100": {"bf16": 989.0, "f32": 67.0},
  "H200": {"bf16": 989.0, "f32": 67.0},
}
"""Device kind substring -> peak TFLOP/s per dtype (``None`` MFU for devices not listed, e.g. CPUs)."""

DEFAULT_PRESETS = (
  "ssegdepnet.py:model=unet",
  "ssegdepnet.py:model=scrx_ohess",
  "ssegdepnet.py:model=cnn3d_s",
  "ssegdepnet.py:model=cnn3d_up",
  "hybridnet.py:model=a2",
  "deeplab_sid.py:model=sid",
  "semantic_md.py",
  "ds_sidenet.py:model=low",
)
"""One preset per family (papers 000-004); the suite appends ``size=paper`` (``size=tiny`` in smoke)."""


def peak_tflops(device_kind: str, dtype: str) -> float | None:
  """Peak TFLOP/s of ``device_kind`` for ``dtype`` ('f32' / 'bf16'), None when unknown."""
  for key, peaks in PEAK_TFLOPS.items():
    if key.lower() in device_kind.lower():
      return peaks[dtype]
  return None


def _is_oom(e: BaseException) -> bool:
  text = f"{type(e).__name__}: {e}"
  return "RESOURCE_EXHAUSTED" in text or "Out of memory" in text or "out of memory" in text


def build_family(preset: str, size: str) -> dict:
  """Model, loss, optimiser and input size of ``preset`` (``file.py[:args]`` under configs/)."""
  from semdepth_jax.models import get_model
  from semdepth_jax.train import config_utils, loop, optim

  file, _, extra = preset.partition(":")
  arg = ",".join(a for a in (extra, f"size={size}") if a)
  cfg = config_utils.load_config(f"{os.path.join(_ROOT, 'configs', file)}:{arg}")
  st = cfg.stages[cfg.stage_order[0]]
  kw = loop.model_kwargs(cfg, st)
  name = kw.pop("name")
  tx = optim.make_optimizer(st.optimizer, optim.make_schedule(st.schedule, 1e-3, 1000))
  return {
    "preset": preset,
    "model_name": name,
    "model": get_model(name, **kw),
    "loss_fn": loop.default_loss_builder(cfg)(st.loss),
    "tx": tx,
    "image_size": tuple(int(v) for v in cfg.image_size),
    "num_classes": int(kw.get("num_classes") or 2),
  }


def random_batch(batch: int, size: Sequence[int], num_classes: int, seed: int = 0) -> dict:
  """Random image [0, 1], depth 1-60 m, labels < num_classes, all flags set (jax arrays)."""
  import jax.numpy as jnp

  rng = np.random.default_rng(seed)
  h, w = size
  return {
    "image": jnp.asarray(rng.random((batch, h, w, 3)), jnp.float32),
    "depth": jnp.asarray(1 + 59 * rng.random((batch, h, w)), jnp.float32),
    "segmentation": jnp.asarray(rng.integers(0, num_classes, (batch, h, w)), jnp.int32),
    "has_depth": jnp.ones(batch, bool),
    "has_segmentation": jnp.ones(batch, bool),
  }


def measure(fam: dict, batch: int, dtype: str, steps: int) -> dict:
  """One (family, batch, dtype) point: compile time, step times, FLOPs. Raises on OOM."""
  import jax

  from semdepth_jax.train import step as step_lib
  from semdepth_jax.train.state import create_state, param_count, split_variables

  data = random_batch(batch, fam["image_size"], fam["num_classes"])
  model = fam["model"]
  init_kw = {"labels": data["segmentation"][:1]} if step_lib.accepts_labels(model) else {}
  variables = jax.jit(lambda x, **k: model.init(jax.random.key(0), x, train=False, **k))(
    data["image"][:1], **init_kw
  )
  params, stats = split_variables(variables)
  state = create_state(params, stats, fam["tx"].init(params), jax.random.key(1))
  compute = {"f32": "float32", "bf16": "bfloat16"}[dtype]
  fn = jax.jit(
    step_lib.make_train_step(model, fam["loss_fn"], fam["tx"], compute_dtype=compute),
    donate_argnums=(0,),
  )
  t0 = time.perf_counter()
  compiled = fn.lower(state, data).compile()
  compile_s = time.perf_counter() - t0
  cost = compiled.cost_analysis()
  if isinstance(cost, (list, tuple)):
    cost = cost[0] if cost else {}
  flops = float(cost["flops"]) if cost and "flops" in cost else None
  state, metrics = compiled(state, data)  # warm-up
  jax.block_until_ready(metrics)
  times = []
  for _ in range(steps):
    t0 = time.perf_counter()
    state, metrics = compiled(state, data)
    jax.block_until_ready(metrics)
    times.append(time.perf_counter() - t0)
  med = statistics.median(times)
  return {
    "batch": batch,
    "params": param_count(params),
    "compile_s": compile_s,
    "step_s": med,
    "step_s_min_max": [min(times), max(times)],
    "images_per_s": batch / med,
    "flops": flops,
    "tflops_per_s": flops / med / 1e12 if flops else None,
    "loss_finite": bool(metrics["finite"]),
  }


def pipeline_rate(
  size: Sequence[int], batch: int, num_batches: int, data_dir: str, dataset: str = "synthetic_city"
) -> dict:
  """Examples/s of the training input pipeline at ``size`` (``bench_pipeline``'s augment; built first)."""
  os.environ.setdefault("TFDS_DISABLE_GCS", "1")
  sys.path.insert(0, os.path.join(_ROOT, "benchmarks"))
  import bench_pipeline

  from semdepth_jax.data import pipeline
  from semdepth_jax.data import transforms as tr

  bench_pipeline.ensure_built(dataset, data_dir)
  it = pipeline.make_train_iterator(
    dataset,
    data_dir=data_dir,
    batch_size=batch,
    image_size=tuple(size),
    seed=0,
    augment=tr.EIGEN_AUGMENT,
    process_index=0,
    process_count=1,
    num_threads=min(8, os.cpu_count() or 1),
    worker_count=0,
  )
  rate, _ = bench_pipeline.time_iterator(it, batch, num_batches, warmup=1)
  close = getattr(it, "close", None)
  if close is not None:
    close()
  return {"examples_per_s": rate, "size": list(size), "batch": batch, "dataset": dataset}


def environment() -> dict:
  """Device name and versions."""
  import jax
  import jaxlib

  dev = jax.devices()[0]
  env = {
    "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    "device_kind": getattr(dev, "device_kind", str(dev)),
    "device_count": jax.device_count(),
    "jax": jax.__version__,
    "jaxlib": jaxlib.__version__,
    "backend": jax.default_backend(),
    "python": platform.python_version(),
    "cpu_count": os.cpu_count(),
  }
  try:
    import torch

    env["torch"] = torch.__version__
  except ImportError:
    env["torch"] = None
  return env


def markdown(results: dict) -> str:
  """Throughput table (one row per family, dtype and batch) and the pipeline line."""
  env = results["environment"]
  lines = [
    f"{env['device_kind']} ({env['backend']}), jax {env['jax']}, jaxlib {env['jaxlib']}, torch "
    f"{env['torch']}; {env['date']}",
    "",
    "| family (preset) | model | size | dtype | batch | images/s | step s | compile s | "
    "TFLOP/step | TFLOP/s | MFU |",
    "|---|---|---|---|---|---|---|---|---|---|---|",
  ]
  for fam in results["families"]:
    for run in fam["runs"]:
      for p in run["points"]:
        mfu = f"{100 * p['mfu']:.1f}%" if p.get("mfu") is not None else "–"
        fl = f"{p['flops'] / 1e12:.3g}" if p.get("flops") else "–"
        tf = f"{p['tflops_per_s']:.3g}" if p.get("tflops_per_s") else "–"
        lines.append(
          f"| {fam['preset']} | {fam.get('model', '–')} | {fam.get('size', '–')} | {run['dtype']} | "
          f"{p['batch']} | {p['images_per_s']:.3g} | {p['step_s']:.4g} | {p['compile_s']:.1f} | {fl} | "
          f"{tf} | {mfu} |"
        )
      if run.get("stopped"):
        lines.append(
          f"| {fam['preset']} | | | {run['dtype']} | stopped: {run['stopped']} |" + " |" * 6
        )
    if fam.get("error"):
      lines.append(f"| {fam['preset']} | error: {fam['error']} |" + " |" * 9)
  if not results.get("complete"):
    lines += ["", "(incomplete: the run was stopped before the end)"]
  pipe = results.get("pipeline")
  if pipe:
    lines += ["", pipe.get("verdict", json.dumps(pipe))]
  return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> dict:
  """Runs the sweep; writes ``--out`` (JSON) and ``--out`` with ``.md``; returns the results."""
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--presets", default=",".join(DEFAULT_PRESETS), help="comma-separated presets")
  p.add_argument("--dtypes", default="bf16,f32")
  p.add_argument("--max_batch", type=int, default=64)
  p.add_argument("--steps", type=int, default=5)
  p.add_argument(
    "--budget_s", type=float, default=330.0, help="stop starting new points after this"
  )
  p.add_argument(
    "--smoke", action="store_true", help="size=tiny, batch 1, 1 step, tiny pipeline, no budget"
  )
  p.add_argument("--pipeline", action=argparse.BooleanOptionalAction, default=True)
  p.add_argument("--data_dir", default="/tmp/semdepth_bench_tfds")
  p.add_argument("--out", default="", help="results JSON path (the markdown goes next to it)")
  args = p.parse_args(argv)
  size = "tiny" if args.smoke else "paper"
  if args.smoke:  # every point is compiled: keep it to batch 1, no time budget (it must not skip)
    args.max_batch, args.steps, args.budget_s = 1, 1, float("inf")
  start = time.perf_counter()
  env = environment()
  results: dict[str, Any] = {
    "environment": env,
    "args": vars(args),
    "families": [],
    "complete": False,  # True once every preset and the pipeline ran (a killed run stays False)
  }
  presets = [s for s in args.presets.split(",") if s]
  for i, preset in enumerate(presets):
    fam_rec: dict[str, Any] = {"preset": preset, "runs": []}
    results["families"].append(fam_rec)
    try:
      fam = build_family(preset, size)
    except Exception as e:  # noqa: BLE001  (one broken preset must not hide the others)
      fam_rec["error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"
      continue
    fam_rec.update(model=fam["model_name"], size="x".join(map(str, fam["image_size"])))
    # Share what is left of the budget among the remaining families.
    now = time.perf_counter()
    fam_deadline = now + (start + args.budget_s - now) / (len(presets) - i)
    for dtype in args.dtypes.split(","):
      run: dict[str, Any] = {"dtype": dtype, "points": []}
      fam_rec["runs"].append(run)
      batch = 1
      while batch <= args.max_batch:
        if time.perf_counter() > fam_deadline:
          run["stopped"] = f"time budget at batch {batch}"
          break
        try:
          point = measure(fam, batch, dtype, args.steps)
        except Exception as e:  # noqa: BLE001
          run["stopped"] = (
            f"out of memory at batch {batch}"
            if _is_oom(e)
            else f"{type(e).__name__} at batch {batch}: {str(e).splitlines()[0][:200]}"
          )
          break
        peak = peak_tflops(env["device_kind"], dtype)
        point["mfu"] = point["tflops_per_s"] / peak if peak and point["tflops_per_s"] else None
        run["points"].append(point)
        print(json.dumps({"preset": preset, "dtype": dtype, **point}), file=sys.stderr, flush=True)
        _save(results, args.out)
        batch *= 2
  if args.pipeline:
    hw = (32, 48) if args.smoke else (192, 320)  # paper 000's crops (ssegdepnet.py tiny / paper)
    best = max(
      (
        pt["images_per_s"]
        for f in results["families"]
        if f.get("size") == f"{hw[0]}x{hw[1]}"
        for r in f["runs"]
        for pt in r["points"]
      ),
      default=0.0,
    )
    try:
      pipe = (
        pipeline_rate(hw, 2, 2, args.data_dir, "synthetic_city/tiny")
        if args.smoke
        else pipeline_rate(hw, 16, 20, args.data_dir)
      )
      need = 2.0 * best
      ok = pipe["examples_per_s"] >= need
      pipe["best_step_images_per_s"] = best
      pipe["verdict"] = (
        f"input pipeline {pipe['examples_per_s']:.1f} examples/s at {hw[0]}x{hw[1]} vs the best train "
        f"step rate at that size {best:.1f} images/s: "
        + (
          "keeps up (>= 2x)"
          if ok
          else f"too slow: needs {need:.1f}/s (>= 2x), i.e. "
          f"{need / max(pipe['examples_per_s'], 1e-9):.1f}x more (threads, worker processes, or "
          "pre-resized data)"
        )
      )
    except Exception as e:  # noqa: BLE001
      pipe = {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"}
      pipe["verdict"] = f"input pipeline not measured: {pipe['error']}"
    results["pipeline"] = pipe
  results["elapsed_s"] = time.perf_counter() - start
  results["complete"] = True
  print(_save(results, args.out))
  return results


def _save(results: dict, out: str) -> str:
  """Writes the JSON and markdown (also after every point, so a killed run leaves its results)."""
  table = markdown(results)
  if out:
    path = pathlib.Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1, default=str))
    path.with_suffix(".md").write_text(table)
  return table


if __name__ == "__main__":
  main()
