"""``semdepth quickstart``: the main job: build, train, evaluate, predict (~11 min on 2 CPU cores).

What it does (re-running continues where it stopped; every step is resumable or idempotent):

1. builds the embedded ``synthetic_city`` dataset (400 train / 100 validation / 100 test street scenes,
   exact depth and 14 classes) into the TFDS data dir if it is not there yet;
2. trains SSegDep-Net (paper 000) at ``size=small`` (64x96, reduced widths) with both stages of the
   paper — stage ``seg``: the U-Net, 500 batches of 8; stage ``depth``: the 3D CNN-UP on ground-truth
   OHESS planes, 300 batches — with the small preset's fast recipe (softmax cross-entropy for the U-Net,
   log-depth L1 for the 3D CNN-UP, Adam with warm-up and cosine decay, flips; ``configs/ssegdepnet.py``;
   the paper's plain SGD needs its 50 epochs) into ``--workdir`` (checkpoints, ``metrics.jsonl``,
   TensorBoard events);
3. evaluates the composed model (U-Net -> argmax OHESS -> 3D CNN-UP) on the held-out ``test`` split at the
   stored resolution through ``semdepth_jax.evaluate`` (the path ``semdepth evaluate`` runs), next to two
   trivial baselines computed from the training split: the mean training depth everywhere and the
   majority training class everywhere;
4. writes figures (ground truth above prediction: RGB | depth | labels) to ``<workdir>/predictions/``,
   the test frames themselves to ``<workdir>/samples/`` (to try ``semdepth predict`` on) with their
   ground truth in ``<workdir>/samples_gt/`` (for ``semdepth score``), and all numbers to
   ``<workdir>/quickstart_results.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from semdepth_jax.data.meta import get_meta

DEFAULT_WORKDIR = os.path.join("runs", "quickstart")
EVAL_SPLIT = "test"

# Quickstart length (batches of 8 per stage) at size=small: about 11 minutes on 2 unloaded CPU cores
# (benchmarks/quickstart_seeds.py). The recipe is the small preset's (configs/ssegdepnet.py: the fast recipe,
# not the paper's 50-epoch SGD).
SEG_STEPS = 500
DEPTH_STEPS = 300

_log = logging.getLogger(__name__)


def quickstart_config(
  size: str = "small",
  *,
  steps: int | None = None,
  data_dir: str | None = None,
  overrides: Sequence[str] = (),
):
  """The quickstart's config: ``configs/ssegdepnet.py:model=ssegdepnet,size=<size>`` plus its lengths.

  Args:
    size: ``small`` (default) or ``tiny`` (tests).
    steps: batches per stage (default: SEG_STEPS / DEPTH_STEPS at ``small``, the preset's at ``tiny``).
    data_dir: TFDS data dir (None = TFDS default).
    overrides: extra ``--config.key=value`` strings.
  """
  from semdepth_jax.train import config_utils

  config_utils.ensure_configs_importable()
  import configs

  path = os.path.join(os.path.dirname(os.path.abspath(configs.__file__)), "ssegdepnet.py")
  arg = f"model=ssegdepnet,dataset=synthetic_city,size={size}"
  extra = []
  if steps is not None:
    arg += f",steps={int(steps)}"
  elif size == "small":
    extra += [f"--config.stages.seg.num_steps={SEG_STEPS}"]
    extra += [f"--config.stages.depth.num_steps={DEPTH_STEPS}"]
  extra += ["--config.eval.at_stage_end=False"]
  extra += ["--config.checkpoint.every_steps=50"]
  if data_dir:
    extra.append(f"--config.data_dir={data_dir}")
  return config_utils.load_config(f"{path}:{arg}", [*extra, *overrides])


def training_baselines(config, *, max_batches: int = 0) -> dict[str, Any]:
  """Mean training depth (metres, over valid pixels) and the majority training class.

  Read at the stored resolution from the train split (no augmentation), the resolution the evaluation
  scores at.
  """
  from semdepth_jax.data import pipeline

  meta = get_meta(config.dataset)
  it = pipeline.make_eval_iterator(
    config.dataset,
    data_dir=config.data_dir or None,
    split=config.train_split,
    batch_size=config.eval.batch_size,
    image_size=None,
    num_threads=0,
    prefetch=0,
  )
  depth_sum, depth_n = 0.0, 0
  hist = np.zeros(meta.num_classes, np.int64)
  for i, batch in enumerate(it):
    if max_batches and i >= max_batches:
      break
    m = batch["mask"] & batch["has_depth"]
    d = batch["depth"][m]
    valid = d > meta.min_depth
    if meta.max_depth is not None:
      valid &= d < meta.max_depth
    depth_sum += float(d[valid].sum(dtype=np.float64))
    depth_n += int(valid.sum())
    s = batch["segmentation"][batch["mask"] & batch["has_segmentation"]]
    s = s[(s >= 0) & (s < meta.num_classes)]
    hist += np.bincount(s.ravel(), minlength=meta.num_classes)[: meta.num_classes]
  return {
    "mean_depth": depth_sum / max(depth_n, 1),
    "majority_class": int(np.argmax(hist)),
    "majority_class_name": meta.class_names[int(np.argmax(hist))],
  }


def evaluate_with_baselines(
  config, workdir: str, *, split: str = EVAL_SPLIT, max_batches: int = 0
) -> dict[str, Any]:
  """The trained workdir and the two trivial baselines on ``split``, through the one evaluation path.

  The model is evaluated by ``semdepth_jax.evaluate.evaluate_workdir`` (what ``semdepth evaluate --split
  test`` runs; its report is written to ``workdir/eval/...``); the baselines are
  ``evaluate.ConstantModel`` instances run by the same ``evaluate.Evaluation``, so every number comes from
  the same accumulators, protocol and resolution.

  Returns:
    ``{'model': flat metrics, 'baseline': flat metrics, 'baselines': training_baselines(), 'report': the
    model's full report}``.
  """
  from semdepth_jax import evaluate
  from semdepth_jax.train import loop
  from semdepth_jax.train import mesh as mesh_lib

  report = evaluate.evaluate_workdir(
    workdir, split=split, data_dir=config.data_dir or None, max_batches=max_batches
  )
  base = training_baselines(config)
  constant = evaluate.ConstantModel(
    depth=float(base["mean_depth"]),
    label=int(base["majority_class"]),
    num_classes=loop.resolved_num_classes(config),
  )
  settings = evaluate.EvalSettings(split=split, max_batches=max_batches)
  mesh = mesh_lib.make_mesh(tuple(config.mesh_shape))
  baseline = evaluate.Evaluation(constant, config, settings, mesh=mesh).run({})
  return {
    "model": evaluate.report_scalars(report),
    "baseline": evaluate.report_scalars(baseline),
    "baselines": base,
    "report": report,
  }


def write_predictions(
  config,
  model,
  variables,
  out_dir: str,
  *,
  num_images: int = 4,
  split: str = EVAL_SPLIT,
  samples_dir: str | None = None,
) -> list[str]:
  """Saves one figure per test image: ground truth above the prediction, with colour bars and legends.

  With ``samples_dir``, the RGB frames themselves are also saved there as ``<name>.png`` (uint8 RGB at the
  stored size): images to try ``semdepth predict`` on; their ground truth goes to ``<samples_dir>_gt/``
  as ``<name>_depth.npy`` (float32 metres, 0 = invalid) and ``<name>_labels.png`` (uint8 training ids,
  255 = ignore), the layout ``semdepth score`` reads.

  Predictions come from ``predict.InferenceModel`` (the model's ``decode``) at the stored image size, as the
  evaluation scores them; figures are ``viz.example_grid`` rows (RGB | depth + colour bar in metres |
  labels + legend of the classes present), like ``semdepth predict``'s ``<stem>_figure.png``.
  """
  import jax

  from semdepth_jax import predict, viz
  from semdepth_jax.data import pipeline
  from semdepth_jax.train import step as step_lib

  meta = get_meta(config.dataset)
  it = pipeline.make_eval_iterator(
    config.dataset,
    data_dir=config.data_dir or None,
    split=split,
    batch_size=max(int(num_images), 1),
    num_threads=0,
    prefetch=0,
  )
  batch = next(iter(it))
  inference = predict.InferenceModel(
    model, input_size=tuple(config.image_size), **predict.conv_switches(config)
  )
  dev = step_lib.device_batch(batch)
  labels = dev.get("segmentation") if inference.pass_labels else None
  preds = jax.device_get(jax.jit(inference.dense)(variables, dev["image"], labels))
  os.makedirs(out_dir, exist_ok=True)
  paths = []
  vmin, vmax = meta.depth_vis_range
  for i in range(min(int(num_images), int(batch["mask"].sum()))):
    name = str(batch["file_name"][i]) if "file_name" in batch else f"{i:03d}"
    rows = [
      {k: batch[k][i] for k in ("image", "depth", "segmentation", "has_depth", "has_segmentation")},
      {
        "image": batch["image"][i],
        "depth": preds["depth"][i] if "depth" in preds else None,
        "segmentation": np.argmax(preds["probs"][i], -1) if "probs" in preds else None,
        "has_depth": "depth" in preds,
        "has_segmentation": "probs" in preds,
      },
    ]
    fig = viz.dataset_grid(
      [{k: v for k, v in r.items() if v is not None} for r in rows],
      meta,
      titles=[f"{name}: ground truth", f"{name}: prediction"],
      column_titles=("RGB", f"depth (fixed {vmin:g}-{vmax:g} m)", "labels"),
    )
    paths.append(viz.save_figure(fig, os.path.join(out_dir, f"{_safe_name(name)}.png")))
    if samples_dir:
      from PIL import Image

      gt_dir = samples_dir.rstrip(os.sep) + "_gt"
      os.makedirs(samples_dir, exist_ok=True)
      os.makedirs(gt_dir, exist_ok=True)
      stem = _safe_name(name)
      rgb = np.clip(np.rint(np.asarray(batch["image"][i]) * 255.0), 0, 255).astype(np.uint8)
      Image.fromarray(rgb).save(os.path.join(samples_dir, f"{stem}.png"))
      depth = np.where(batch["has_depth"][i], np.asarray(batch["depth"][i], np.float32), 0.0)
      np.save(os.path.join(gt_dir, f"{stem}_depth.npy"), depth.astype(np.float32))
      labels = np.asarray(batch["segmentation"][i])
      labels = np.where((labels >= 0) & (labels < 255), labels, 255).astype(np.uint8)
      Image.fromarray(labels).save(os.path.join(gt_dir, f"{stem}_labels.png"))
  return paths


def _safe_name(name: str) -> str:
  return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name) or "image"


def format_table(results: dict[str, dict[str, float]]) -> str:
  """Metric table: model vs baseline, with the better value marked."""
  from semdepth_jax import metrics as metrics_lib

  rows = [
    ("abs_rel", "depth"),
    ("sq_rel", "depth"),
    ("rmse", "depth"),
    ("rmse_log", "depth"),
    ("delta1", "depth"),
    ("delta2", "depth"),
    ("delta3", "depth"),
    ("miou", "seg"),
    ("pixel_acc", "seg"),
    ("mean_class_acc", "seg"),
  ]
  base = results["baselines"]
  lines = [
    f"{'metric':<16}{'SSegDep-Net':>14}{'baseline':>14}   baseline = "
    f"mean train depth {base['mean_depth']:.2f} m / majority class '{base['majority_class_name']}'",
  ]
  model, baseline = results["model"], results["baseline"]
  for key, _ in rows:
    if key not in model or key not in baseline:
      continue
    m, b = model[key], baseline[key]
    better = metrics_lib.metric_sign(key) * (m - b) > 0
    lines.append(
      f"{key:<16}{m:>14.4f}{b:>14.4f}   {'model better' if better else 'BASELINE BETTER'}"
    )
  return "\n".join(lines)


def run(
  workdir: str = DEFAULT_WORKDIR,
  *,
  data_dir: str | None = None,
  size: str = "small",
  steps: int | None = None,
  seed: int = 0,
  overrides: Sequence[str] = (),
  num_images: int = 4,
) -> dict[str, Any]:
  """Runs the main job (see the module docstring); returns the results dict (also written as JSON).

  Raises:
    FloatingPointError: training diverged (names the step).
  """
  from semdepth_jax.train import loop

  t0 = time.perf_counter()
  config = quickstart_config(
    size, steps=steps, data_dir=data_dir, overrides=[f"--config.seed={int(seed)}", *overrides]
  )
  loop.ensure_dataset(config.dataset, config.data_dir or None)
  timing = {"dataset": time.perf_counter() - t0}
  result = loop.train(config, workdir)
  timing.update({f"train_{k}": v for k, v in result.stage_seconds.items()})
  t1 = time.perf_counter()
  results = evaluate_with_baselines(config, workdir)
  timing["evaluation"] = time.perf_counter() - t1
  t1 = time.perf_counter()
  variables = result.state.variables()
  paths = write_predictions(
    config,
    result.model,
    variables,
    os.path.join(workdir, "predictions"),
    num_images=num_images,
    samples_dir=os.path.join(workdir, "samples"),
  )
  timing["predictions"] = time.perf_counter() - t1
  timing["total"] = time.perf_counter() - t0
  results["timing_s"] = {k: round(v, 1) for k, v in timing.items()}
  results["step"] = result.step
  results["seed"] = int(seed)
  results["predictions"] = paths
  with open(os.path.join(workdir, "quickstart_results.json"), "w", encoding="utf-8") as f:
    json.dump({k: v for k, v in results.items() if k != "report"}, f, indent=2, default=float)
  return results


def add_parser(subparsers) -> argparse.ArgumentParser:
  """Registers ``semdepth quickstart``."""
  parser = subparsers.add_parser(
    "quickstart",
    help="the main job: build, train, evaluate and predict (~11 min on 2 CPU cores)",
    description=__doc__.split("\n\n")[0],
  )
  parser.add_argument("--workdir", default=DEFAULT_WORKDIR, help="output folder (resumable)")
  parser.add_argument("--data_dir", default=None, help="TFDS data dir (default: TFDS_DATA_DIR)")
  parser.add_argument(
    "--size", default="small", choices=("small", "tiny"), help="model/resolution preset"
  )
  parser.add_argument("--steps", type=int, default=None, help="batches per stage (default: tuned)")
  parser.add_argument("--seed", type=int, default=0, help="random seed (parameters, data order)")
  parser.set_defaults(func=main)
  return parser


def main(args: argparse.Namespace) -> int:
  """Handler of ``semdepth quickstart``; prints the metrics table; returns the exit status."""
  from semdepth_jax.train.cli import setup_logging

  setup_logging()
  try:
    results = run(
      args.workdir, data_dir=args.data_dir, size=args.size, steps=args.steps, seed=args.seed
    )
  except FloatingPointError as e:
    print(f"semdepth quickstart: {e}", file=sys.stderr)
    return 1
  print(f"\nHeld-out '{EVAL_SPLIT}' split of synthetic_city ({results['step']} training steps):")
  print(format_table(results))
  print(f"\nprediction images: {os.path.dirname(results['predictions'][0])}")
  print(f"time: {results['timing_s']}")
  return 0
