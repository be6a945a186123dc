"""``semdepth quickstart``: the main job — build, train, evaluate and predict in about 10 minutes on a CPU.

What it does (re-running continues where it stopped; every step is resumable or idempotent):

1. builds the embedded ``synthetic_city`` dataset (400 train / 100 validation / 100 test street scenes,
   exact depth and 14 classes) into the TFDS data dir if it is not there yet;
2. trains SSegDep-Net (paper 000) at ``size=small`` (64x96, reduced widths) with both stages of the
   paper — stage ``seg``: the U-Net with Keras BCE and Adam, 500 batches of 8; stage ``depth``: the
   3D CNN-UP on ground-truth OHESS planes with the code's loss on inverted normalised depth, 300 batches
   (``configs/ssegdepnet.py``; Adam instead of the paper's plain SGD, which needs its 50 epochs) — into
   ``--workdir`` (checkpoints, ``metrics.jsonl``, TensorBoard events);
3. evaluates the composed model (U-Net -> thresholded OHESS -> 3D CNN-UP, the paper's inference path) on
   the held-out ``test`` split with the streaming metrics, next to two trivial baselines computed from the
   training split: the mean training depth everywhere and the majority training class everywhere;
4. writes prediction images (RGB | GT depth | predicted depth | GT labels | predicted labels) to
   ``<workdir>/predictions/`` and all numbers to ``<workdir>/quickstart_results.json``.
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

# Quickstart length (batches of 8 per stage) at size=small; tuned for ~10 minutes on 2 CPU cores.
SEG_STEPS = 500
DEPTH_STEPS = 300
# Deviation from the paper's recipe, for a run of minutes instead of 50 epochs: the depth stage uses Adam
# (lr 1e-3, Keras eps) instead of plain SGD 1e-3 (configs/ssegdepnet.py keeps the paper's SGD).
QUICKSTART_OVERRIDES = (
  "--config.stages.depth.optimizer.name=adam",
  "--config.stages.depth.optimizer.eps=1e-07",
)

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
  extra += [*QUICKSTART_OVERRIDES, "--config.eval.at_stage_end=False"]
  extra += ["--config.checkpoint.every_steps=50"]
  if data_dir:
    extra.append(f"--config.data_dir={data_dir}")
  return config_utils.load_config(f"{path}:{arg}", [*extra, *overrides])


def training_baselines(config, *, max_batches: int = 0) -> dict[str, Any]:
  """Mean training depth (metres, over valid pixels) and the majority training class.

  Read at the evaluation resolution from the train split (no augmentation).
  """
  from semdepth_jax.data import pipeline

  meta = get_meta(config.dataset)
  it = pipeline.make_eval_iterator(
    config.dataset,
    data_dir=config.data_dir or None,
    split=config.train_split,
    batch_size=config.eval.batch_size,
    image_size=tuple(config.eval.image_size or config.image_size),
    mode=config.eval.mode,
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
  config, model, variables, *, split: str = EVAL_SPLIT, max_batches: int = 0
) -> dict[str, dict[str, float]]:
  """Streaming metrics of ``model`` and of the two trivial baselines on ``split``.

  Returns:
    ``{'model': metrics, 'mean_depth_baseline': depth metrics, 'majority_class_baseline': seg metrics,
    'baselines': {...}}``.
  """
  import jax
  import jax.numpy as jnp

  from semdepth_jax.data import pipeline
  from semdepth_jax.train import loop
  from semdepth_jax.train import mesh as mesh_lib
  from semdepth_jax.train import step as step_lib

  meta = get_meta(config.dataset)
  base = training_baselines(config)
  mesh = mesh_lib.make_mesh(tuple(config.mesh_shape))
  num_classes = loop.resolved_num_classes(config)
  evaluator = step_lib.StreamingEvaluator.for_model(
    model, meta, num_classes=num_classes, depth_norm=loop.depth_norm_of(config)
  )

  def eval_iterator():
    return pipeline.make_eval_iterator(
      config.dataset,
      data_dir=config.data_dir or None,
      split=split,
      batch_size=config.eval.batch_size,
      image_size=tuple(config.eval.image_size or config.image_size),
      mode=config.eval.mode,
    )

  run = loop.make_evaluate_fn(model, evaluator, mesh, compute_dtype=config.compute_dtype)
  model_metrics = run(variables, eval_iterator(), max_batches)

  # Baselines: constant predictions through the same accumulators (metres, full resolution).
  const = step_lib.StreamingEvaluator(
    num_classes=num_classes,
    ignore_index=meta.ignore_index,
    min_depth=meta.min_depth,
    max_depth=meta.max_depth,
    crop=meta.eval_crop,
  )

  @jax.jit
  def update(acc, batch):
    shape = batch["depth"].shape
    outputs = {
      "depth": jnp.full(shape + (1,), base["mean_depth"], jnp.float32),
      "seg_logits": jax.nn.one_hot(
        jnp.full(shape, base["majority_class"], jnp.int32), num_classes, dtype=jnp.float32
      ),
    }
    return const.update(acc, outputs, batch)

  acc = const.init()
  for i, batch in enumerate(eval_iterator()):
    if max_batches and i >= max_batches:
      break
    acc = update(acc, step_lib.device_batch(batch))
  baseline_metrics = const.finish(acc)
  return {"model": model_metrics, "baseline": baseline_metrics, "baselines": base}


def write_predictions(config, model, variables, out_dir: str, *, num_images: int = 4) -> list[str]:
  """Saves ``RGB | GT depth | predicted depth | GT labels | predicted labels`` PNGs of the test split."""
  from PIL import Image

  from semdepth_jax.data import pipeline
  from semdepth_jax.train import loop

  it = pipeline.make_eval_iterator(
    config.dataset,
    data_dir=config.data_dir or None,
    split=EVAL_SPLIT,
    batch_size=config.eval.batch_size,
    image_size=tuple(config.eval.image_size or config.image_size),
    mode=config.eval.mode,
  )
  batch = next(iter(it))
  images = loop.eval_summary_images(config, model, variables, batch, num_images)
  os.makedirs(out_dir, exist_ok=True)
  paths = []
  names = batch.get("file_name")
  for tag, img in images.items():
    i = int(tag.split("/")[-1])
    name = str(names[i]) if names is not None else f"{i:03d}"
    # Upscale small images 3x (nearest) so the panels are easy to look at.
    img = np.repeat(np.repeat(np.asarray(img, np.uint8), 3, axis=0), 3, axis=1)
    path = os.path.join(out_dir, f"{name}.png")
    Image.fromarray(img).save(path)
    paths.append(path)
  return paths


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
  overrides: Sequence[str] = (),
  num_images: int = 4,
) -> dict[str, Any]:
  """Runs the main job (see the module docstring); returns the results dict (also written as JSON).

  Raises:
    FloatingPointError: training diverged (names the step).
  """
  from semdepth_jax.train import loop

  t0 = time.perf_counter()
  config = quickstart_config(size, steps=steps, data_dir=data_dir, overrides=overrides)
  loop.ensure_dataset(config.dataset, config.data_dir or None)
  t_data = time.perf_counter() - t0
  result = loop.train(config, workdir)
  t_train = time.perf_counter() - t0 - t_data
  variables = result.state.variables()
  results = evaluate_with_baselines(config, result.model, variables)
  paths = write_predictions(
    config, result.model, variables, os.path.join(workdir, "predictions"), num_images=num_images
  )
  results["timing_s"] = {
    "dataset": round(t_data, 1),
    "train": round(t_train, 1),
    "total": round(time.perf_counter() - t0, 1),
  }
  results["step"] = result.step
  results["predictions"] = paths
  with open(os.path.join(workdir, "quickstart_results.json"), "w", encoding="utf-8") as f:
    json.dump(results, f, indent=2, default=float)
  return results


def add_parser(subparsers) -> argparse.ArgumentParser:
  """Registers ``semdepth quickstart``."""
  parser = subparsers.add_parser(
    "quickstart",
    help="the main job: build, train, evaluate and predict (~10 min)",
    description=__doc__.split("\n\n")[0],
  )
  parser.add_argument("--workdir", default=DEFAULT_WORKDIR, help="output folder (resumable)")
  parser.add_argument("--data_dir", default=None, help="TFDS data dir (default: TFDS_DATA_DIR)")
  parser.add_argument(
    "--size", default="small", choices=("small", "tiny"), help="model/resolution preset"
  )
  parser.add_argument("--steps", type=int, default=None, help="batches per stage (default: tuned)")
  parser.set_defaults(func=main)
  return parser


def main(args: argparse.Namespace) -> int:
  """Handler of ``semdepth quickstart``; prints the metrics table; returns the exit status."""
  from semdepth_jax.train.cli import setup_logging

  setup_logging()
  try:
    results = run(args.workdir, data_dir=args.data_dir, size=args.size, steps=args.steps)
  except FloatingPointError as e:
    print(f"semdepth quickstart: {e}", file=sys.stderr)
    return 1
  print(f"\nHeld-out '{EVAL_SPLIT}' split of synthetic_city ({results['step']} training steps):")
  print(format_table(results))
  print(f"\nprediction images: {os.path.dirname(results['predictions'][0])}")
  print(f"time: {results['timing_s']}")
  return 0
