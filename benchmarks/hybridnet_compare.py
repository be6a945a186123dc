"""Paper 001's comparison at a CPU-feasible size: HybridNet A1 vs A2 vs the single-task baselines.

::

  nice -n 10 python benchmarks/hybridnet_compare.py --datasets replica,synthetic_city --seeds 3 \
      --root runs/hybridnet_compare [--size tiny] [--data_dir DIR] [--shared ../shared/data] \
      [--eval_size replica=170,300] [--train_size replica=170,300] [--override --config.KEY=VALUE ...]

For every dataset and seed it trains the ``configs/hybridnet.py`` presets ``a1``, ``a2`` (joint depth and
segmentation), ``deeplab_vgg`` (segmentation only) and ``depthnet`` (depth only) with their default number of
steps into ``ROOT/<dataset>/<model>/seed<N>`` (finished runs are reused), evaluates the validation split
through ``semdepth_jax.evaluate.Evaluation`` (the one evaluation path; ``--eval_size`` resizes images and
ground truth first, nearest for the ground truth, to keep the full-resolution Replica frames cheap) next to
the trivial baselines (mean training depth, majority training class; ``evaluate.ConstantModel``), and
writes ``ROOT/summary.md`` / ``summary.json``: mean ± std over seeds per model and metric, and whether the
paper's ordering holds (A2 better than A1 on both tasks; paper 001 Tables 1-4), judged on the seed means
of abs_rel / rmse / delta1 (depth) and mIoU / pixel accuracy (segmentation). Missing real datasets are
built from ``--shared`` (replica from ``replica_office0``).

``--train_size name=H,W`` decodes that dataset's training split once, downscales it to H x W
(``transforms.resize``: RGB bilinear, depth and labels nearest) and trains from that list in memory
(``pipeline.train_dataset``) instead of decoding the stored frames at every step, as
tests/train/test_real_data_hybridnet.py does: the presets' resize-to-cover then gives the same scale (Replica
680 x 1200 -> 170 x 300 -> 65 x 115 before the tiny 65 x 97 crops). It makes the Replica sweep several times
cheaper on a CPU; evaluation still reads the stored validation split (resized by ``--eval_size``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

MODELS = ("a1", "a2", "deeplab_vgg", "depthnet")
DEPTH_METRICS = ("abs_rel", "rmse", "delta1")
SEG_METRICS = ("miou", "pixel_acc")
LOWER_IS_BETTER = {"abs_rel", "rmse"}
SHARED_FOLDERS = {"replica": "replica_office0"}


def _ensure_built(dataset: str, data_dir: str | None, shared: str) -> None:
  """Builds ``dataset`` on first use: from ``shared/<SHARED_FOLDERS entry>`` when it needs files."""
  from semdepth_jax.train import loop

  folder = SHARED_FOLDERS.get(dataset.split("/")[0])
  loop.ensure_dataset(dataset, data_dir, manual_dir=folder and os.path.join(shared, folder))


def _config(model, size, dataset, seed, data_dir, overrides):
  from semdepth_jax.train import config_utils

  config_utils.ensure_configs_importable()
  import configs

  path = os.path.join(os.path.dirname(configs.__file__), "hybridnet.py")
  ov = [
    f"--config.seed={seed}",
    "--config.progress_bar=False",
    "--config.eval.split=",
    "--config.mesh_shape=(1, 1)",
    *overrides,
  ]
  if data_dir:
    ov.append(f"--config.data_dir={data_dir}")
  return config_utils.load_config(f"{path}:model={model},size={size},dataset={dataset}", ov)


def _evaluate(model, variables, config, eval_size, baseline=False):
  from semdepth_jax import evaluate, quickstart
  from semdepth_jax.train import loop
  from semdepth_jax.train import mesh as mesh_lib

  mesh = mesh_lib.make_mesh(tuple(config.mesh_shape))
  settings = evaluate.EvalSettings(
    split="validation", image_size=None if eval_size is None else tuple(eval_size)
  )
  if baseline:
    base = quickstart.training_baselines(config)
    model = evaluate.ConstantModel(
      depth=float(base["mean_depth"]),
      label=int(base["majority_class"]),
      num_classes=loop.resolved_num_classes(config),
    )
    variables = {}
  report = evaluate.Evaluation(model, config, settings, mesh=mesh).run(variables)
  return evaluate.report_scalars(report)


_TRAIN_FRAMES: dict = {}


def _train_frames(dataset, data_dir, size):
  """The training split decoded once and downscaled to ``size`` (cached per dataset)."""
  from semdepth_jax.data import pipeline, transforms

  if dataset not in _TRAIN_FRAMES:
    source = pipeline.open_source(dataset, "train", data_dir)
    _TRAIN_FRAMES[dataset] = [transforms.resize(dict(source[i]), size) for i in range(len(source))]
  return _TRAIN_FRAMES[dataset]


def _components(config, frames):
  """``loop.default_components`` with the training iterator over in-memory ``frames``."""
  import dataclasses

  from semdepth_jax.data import pipeline
  from semdepth_jax.train import loop

  comps = loop.default_components(config)
  augment = loop._augment_dict(config)

  def train_iterator(batch_size, seed):
    ds = pipeline.train_dataset(
      frames, batch_size=batch_size, image_size=tuple(config.image_size), seed=seed, augment=augment
    )
    return pipeline.to_iterator(ds, num_threads=0, prefetch=0)

  return dataclasses.replace(comps, train_iterator=train_iterator)


def run_one(model, size, dataset, seed, root, data_dir, eval_size, overrides, train_size=None):
  """Trains one preset / seed (or reuses a finished run); returns its metrics."""
  from semdepth_jax.train import loop

  workdir = os.path.join(root, dataset.replace("/", "_"), model, f"seed{seed}")
  done = os.path.join(workdir, "compare_results.json")
  if os.path.isfile(done):
    with open(done, encoding="utf-8") as f:
      return json.load(f)
  config = _config(model, size, dataset, seed, data_dir, overrides)
  t0 = time.perf_counter()
  comps = None
  if train_size is not None:
    comps = _components(config, _train_frames(dataset, data_dir, train_size))
  result = loop.train(config, workdir, components=comps)
  train_s = time.perf_counter() - t0
  metrics = _evaluate(result.model, result.state.variables(), config, eval_size)
  out = {"model": model, "seed": seed, "steps": result.step, "train_s": train_s, "metrics": metrics}
  with open(done, "w", encoding="utf-8") as f:
    json.dump(out, f, indent=2)
  return out


def baseline_metrics(size, dataset, root, data_dir, eval_size, overrides):
  """Trivial baselines (mean training depth, majority class) on the validation split, cached."""
  path = os.path.join(root, dataset.replace("/", "_"), "baseline.json")
  if os.path.isfile(path):
    with open(path, encoding="utf-8") as f:
      return json.load(f)
  config = _config("a1", size, dataset, 0, data_dir, overrides)
  metrics = _evaluate(None, None, config, eval_size, baseline=True)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w", encoding="utf-8") as f:
    json.dump(metrics, f, indent=2)
  return metrics


def _better(a: float, b: float, key: str) -> bool:
  return a < b if key in LOWER_IS_BETTER else a > b


def summarise(runs: dict, baseline: dict, seeds: int) -> tuple[list[dict], dict]:
  """Mean ± std rows per model and the A2-vs-A1 verdict per metric."""
  rows = []
  means = {}
  for model, rs in runs.items():
    row = {
      "model": model,
      "steps": rs[0]["steps"],
      "train_s": float(np.mean([r["train_s"] for r in rs])),
    }
    for k in DEPTH_METRICS + SEG_METRICS:
      vals = [r["metrics"][k] for r in rs if k in r["metrics"]]
      if vals:
        row[k] = (float(np.mean(vals)), float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0)
        means[(model, k)] = row[k][0]
    rows.append(row)
  verdict = {}
  for k in DEPTH_METRICS + SEG_METRICS:
    if ("a1", k) in means and ("a2", k) in means:
      verdict[k] = _better(means[("a2", k)], means[("a1", k)], k)
  verdict["depth"] = all(verdict.get(k, False) for k in DEPTH_METRICS)
  verdict["segmentation"] = all(verdict.get(k, False) for k in SEG_METRICS)
  verdict["paper_ordering_holds"] = verdict["depth"] and verdict["segmentation"]
  return rows, verdict


def markdown(
  dataset: str, size: str, seeds: int, rows: list[dict], baseline: dict, verdict: dict
) -> str:
  keys = DEPTH_METRICS + SEG_METRICS
  lines = [
    f"### {dataset}, size={size}, {seeds} seeds (mean ± std; validation split)",
    "",
    "| model | steps | " + " | ".join(keys) + " |",
    "|---|---|" + "---|" * len(keys),
  ]
  for r in rows:
    cells = [f"{r[k][0]:.3f} ± {r[k][1]:.3f}" if k in r else "-" for k in keys]
    lines.append(f"| {r['model']} | {r['steps']} | " + " | ".join(cells) + " |")
  base = [f"{baseline[k]:.3f}" if k in baseline else "-" for k in keys]
  lines.append("| trivial baseline | - | " + " | ".join(base) + " |")
  lines.append("")
  per = ", ".join(f"{k}: {'yes' if verdict[k] else 'no'}" for k in keys if k in verdict)
  lines.append(
    f"A2 better than A1 on depth: {'yes' if verdict['depth'] else 'no'}, on segmentation: "
    f"{'yes' if verdict['segmentation'] else 'no'} ({per}); paper ordering holds: "
    f"**{'yes' if verdict['paper_ordering_holds'] else 'no'}**."
  )
  return "\n".join(lines) + "\n"


def _eval_sizes(text: str) -> dict[str, tuple[int, int]]:
  out = {}
  for item in filter(None, text.split(";")):
    name, size = item.split("=")
    h, w = (int(v) for v in size.split(","))
    out[name] = (h, w)
  return out


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--models", default=",".join(MODELS))
  parser.add_argument("--size", default="tiny")
  parser.add_argument("--datasets", default="replica,synthetic_city")
  parser.add_argument("--seeds", type=int, default=3)
  parser.add_argument("--root", default=os.path.join("runs", "hybridnet_compare"))
  parser.add_argument("--data_dir", default=None)
  parser.add_argument("--shared", default=os.path.join("..", "shared", "data"))
  parser.add_argument(
    "--eval_size",
    default="replica=170,300",
    help="per-dataset evaluation size, 'name=H,W;name=H,W' (default: Replica at 1/4 resolution)",
  )
  parser.add_argument(
    "--train_size",
    default="",
    help="per-dataset in-memory training size, 'name=H,W;...' (default: read the stored frames)",
  )
  parser.add_argument(
    "--override", action="append", default=[], help="--config.KEY=VALUE (repeatable)"
  )
  args = parser.parse_args(argv)

  from semdepth_jax.train.cli import setup_logging

  setup_logging()
  sizes = _eval_sizes(args.eval_size)
  train_sizes = _eval_sizes(args.train_size)
  md, summary = [], {}
  for dataset in args.datasets.split(","):
    _ensure_built(dataset, args.data_dir, args.shared)
    eval_size = sizes.get(dataset.split("/")[0])
    baseline = baseline_metrics(
      args.size, dataset, args.root, args.data_dir, eval_size, args.override
    )
    runs = {}
    for model in args.models.split(","):
      runs[model] = [
        run_one(
          model,
          args.size,
          dataset,
          s,
          args.root,
          args.data_dir,
          eval_size,
          args.override,
          train_sizes.get(dataset.split("/")[0]),
        )
        for s in range(args.seeds)
      ]
      print(f"{dataset} {model}: " + json.dumps([r["metrics"] for r in runs[model]]), flush=True)
    rows, verdict = summarise(runs, baseline, args.seeds)
    summary[dataset] = {"rows": rows, "baseline": baseline, "verdict": verdict}
    md.append(markdown(dataset, args.size, args.seeds, rows, baseline, verdict))
    _write(args.root, summary, md)  # after every dataset, so a long sweep leaves partial results
  print("\n".join(md))
  return 0


def _write(root: str, summary: dict, md: list[str]) -> None:
  os.makedirs(root, exist_ok=True)
  with open(os.path.join(root, "summary.json"), "w", encoding="utf-8") as f:
    json.dump(summary, f, indent=2)
  with open(os.path.join(root, "summary.md"), "w", encoding="utf-8") as f:
    f.write("\n".join(md))


if __name__ == "__main__":
  sys.exit(main())
