"""Training throughput (images/s) and MFU of every family at its paper input size, batch 1, 4, 16, ...

For each preset in ``--presets`` (``config_file:preset args``; default: one per family of papers 000-004)
and each ``--dtypes`` entry, the library's jitted train step (``make_train_step`` with the config's first
stage: its loss, optimiser and model overrides; ``compute_dtype`` float32 or bfloat16) runs on random data
at the config's ``image_size`` for batch 1, f, f^2, ... (``--batch_factor`` f, 4; or the ``--batches``
list) until the step does not fit (an XLA resource-exhausted error), ``--max_batch`` or the time budget:
each (family, dtype) gets an equal share of what is left of ``--budget_s`` and always its first point.
Per (family, dtype, batch): compile seconds, median step seconds over ``--steps`` steps, images/s, XLA's
FLOP count of the step (HLO cost analysis of the step as lowered for the host CPU,
``benchmarks/xla_flops.py``: on GPUs the compiled module's own count leaves out the cuDNN convolutions),
MFU = FLOPs / step time / device peak (:data:`PEAK_TFLOPS`) and whether the loss stayed finite.
Then the input pipeline (``semdepth_jax.data.pipeline.make_train_iterator`` on ``synthetic_city``
(``synthetic_city/tiny`` with ``--smoke``; built into ``--data_dir`` first) with
``transforms.EIGEN_AUGMENT``, as ``benchmarks/bench_pipeline.py``; threads in this process and, with >= 4
CPUs, grain worker processes, the faster counts) in examples/s, next to the best step rate at that size:
the pipeline must deliver >= 2x the step rate or the table says what it falls short by.
``--pipeline_only`` adds that measurement to an earlier run's ``--out`` (the suite runs the sweep with
``--no-pipeline`` while the dataset builds in the background).

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
  "ds_sidenet.py:model=low",
  "semantic_md.py",
  "deeplab_sid.py:model=sid",
  "hybridnet.py:model=a2",
  "ssegdepnet.py:model=cnn3d_up",
  "ssegdepnet.py:model=cnn3d_s",
)
"""One preset per family (papers 000-004), the 3D CNNs last (on an H200 the batch-16 3D CNN-S step took
75 s to compile); ``--size`` (paper) is appended (``size=tiny`` in smoke)."""


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


def init_variables(fam: dict) -> Any:
  """The family's variables (``model.init`` on one random image; the same for every batch and dtype)."""
  import jax

  from semdepth_jax.train import step as step_lib

  data = random_batch(1, fam["image_size"], fam["num_classes"])
  model = fam["model"]
  init_kw = {"labels": data["segmentation"]} if step_lib.accepts_labels(model) else {}
  return jax.jit(lambda x, **k: model.init(jax.random.key(0), x, train=False, **k))(
    data["image"], **init_kw
  )


def measure(fam: dict, batch: int, dtype: str, steps: int, variables: Any) -> dict:
  """One (family, batch, dtype) point: compile time, step times, FLOPs. Raises on OOM.

  ``variables``: from :func:`init_variables`.
  """
  import jax
  import jax.numpy as jnp

  from benchmarks import xla_flops
  from semdepth_jax.train import step as step_lib
  from semdepth_jax.train.state import create_state, param_count, split_variables

  data = random_batch(batch, fam["image_size"], fam["num_classes"])
  model = fam["model"]
  # Copies: the step donates its state, and ``variables`` serves the family's next points.
  params, stats = jax.tree.map(jnp.array, split_variables(variables))
  state = create_state(params, stats, fam["tx"].init(params), jax.random.key(1))
  compute = {"f32": "float32", "bf16": "bfloat16"}[dtype]
  raw = step_lib.make_train_step(model, fam["loss_fn"], fam["tx"], compute_dtype=compute)
  flops = xla_flops.program_flops(raw, state, data)
  fn = jax.jit(raw, donate_argnums=(0,))
  t0 = time.perf_counter()
  compiled = fn.lower(state, data).compile()
  compile_s = time.perf_counter() - t0
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

  bench_pipeline.ensure_built(dataset, data_dir)
  cpus = os.cpu_count() or 1
  # Threads in this process (GIL-bound), then worker processes (grain's mp_prefetch): the best is the rate.
  setups = {"threads": (min(8, cpus), 0)}
  if cpus >= 4:
    setups["workers"] = (1, min(8, cpus // 2))
  rates = {}
  for label, (threads, workers) in setups.items():
    rate, _ = bench_pipeline.setting_rate(
      dataset, data_dir, batch, tuple(size), threads, workers, num_batches, warmup=1
    )
    rates[f"{label} (num_threads={threads}, worker_count={workers})"] = rate
  best = max(rates, key=rates.get)
  return {
    "examples_per_s": rates[best],
    "setup": best,
    "rates": rates,
    "size": list(size),
    "batch": batch,
    "dataset": dataset,
  }


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
    "TFLOP/step | TFLOP/s | MFU | loss finite |",
    "|---|---|---|---|---|---|---|---|---|---|---|---|",
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
          f"{tf} | {mfu} | {'yes' if p.get('loss_finite') else 'no'} |"
        )
      if run.get("stopped"):
        lines.append(
          f"| {fam['preset']} | | | {run['dtype']} | stopped: {run['stopped']} |" + " |" * 7
        )
    if fam.get("error"):
      lines.append(f"| {fam['preset']} | error: {fam['error']} |" + " |" * 10)
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
  p.add_argument(
    "--batch_factor", type=int, default=4, help="batch sizes 1, f, f^2, ... up to --max_batch"
  )
  p.add_argument(
    "--batches",
    default="",
    help="explicit comma-separated batch sizes instead of the 1, f, f^2, ... sweep (e.g. 16)",
  )
  p.add_argument("--steps", type=int, default=5)
  p.add_argument(
    "--budget_s", type=float, default=330.0, help="stop starting new points after this"
  )
  p.add_argument(
    "--smoke", action="store_true", help="size=tiny, batch 1, 1 step, tiny pipeline, no budget"
  )
  p.add_argument(
    "--size", default="paper", choices=("tiny", "small", "paper"), help="the presets' size argument"
  )
  p.add_argument("--pipeline", action=argparse.BooleanOptionalAction, default=True)
  p.add_argument(
    "--pipeline_only",
    action="store_true",
    help="no sweep: measure the input pipeline against the step rates already in --out and add it there",
  )
  p.add_argument("--data_dir", default="/tmp/semdepth_bench_tfds")
  p.add_argument("--out", default="", help="results JSON path (the markdown goes next to it)")
  args = p.parse_args(argv)
  size = "tiny" if args.smoke else args.size
  if args.smoke:  # every point is compiled: keep it to batch 1, no time budget (it must not skip)
    args.max_batch, args.steps, args.budget_s, args.batches = 1, 1, float("inf"), ""
  start = time.perf_counter()
  env = environment()
  results: dict[str, Any] = {
    "environment": env,
    "args": vars(args),
    "families": [],
    "complete": False,  # True once every preset and the pipeline ran (a killed run stays False)
  }
  presets = [s for s in args.presets.split(",") if s]
  if args.pipeline_only:
    if not args.out or not pathlib.Path(args.out).is_file():
      p.error(f"--pipeline_only: expected --out to name an earlier run's JSON, got {args.out!r}")
    results = json.loads(pathlib.Path(args.out).read_text())
    presets, args.pipeline = [], True
  if args.batches:
    batches = [int(b) for b in args.batches.split(",") if b]
  else:
    factor, batches = max(2, args.batch_factor), [1]
    while batches[-1] * factor <= args.max_batch:
      batches.append(batches[-1] * factor)
  dtypes = [d for d in args.dtypes.split(",") if d]
  for i, preset in enumerate(presets):
    fam_rec: dict[str, Any] = {"preset": preset, "runs": []}
    results["families"].append(fam_rec)
    try:
      fam = build_family(preset, size)
    except Exception as e:  # noqa: BLE001  (one broken preset must not hide the others)
      fam_rec["error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"
      continue
    fam_rec.update(model=fam["model_name"], size="x".join(map(str, fam["image_size"])))
    try:
      variables = init_variables(fam)
    except Exception as e:  # noqa: BLE001
      fam_rec["error"] = f"init: {type(e).__name__}: {str(e).splitlines()[0][:300]}"
      continue
    for j, dtype in enumerate(dtypes):
      # Each (family, dtype) gets an equal share of what is left of the budget, and always its first
      # point: on an H200 one compile took 4-75 s, so a shared deadline would leave the last
      # families without a single number.
      now = time.perf_counter()
      runs_left = (len(presets) - i) * len(dtypes) - j
      deadline = now + (start + args.budget_s - now) / runs_left
      run: dict[str, Any] = {"dtype": dtype, "points": []}
      fam_rec["runs"].append(run)
      for batch in batches:
        if run["points"] and time.perf_counter() > deadline:
          run["stopped"] = f"time budget at batch {batch}"
          break
        try:
          point = measure(fam, batch, dtype, args.steps, variables)
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
        f"input pipeline {pipe['examples_per_s']:.1f} examples/s at {hw[0]}x{hw[1]} with "
        f"{pipe['setup']} vs the best train "
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
    if args.out:  # the verdict alone, for the suite's results file
      pathlib.Path(args.out).with_name(pathlib.Path(args.out).stem + "_pipeline.md").write_text(
        pipe["verdict"] + "\n"
      )
  if args.pipeline_only:  # the sweep's own completeness stands
    results["pipeline"]["elapsed_s"] = time.perf_counter() - start
  else:
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
