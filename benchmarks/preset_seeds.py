"""Does every preset learn within its default length? Trains presets over seeds and compares to baselines.

::

  python benchmarks/preset_seeds.py --models unet,cnn3d_up --sizes tiny --datasets replica,synthetic_city \
      --seeds 5 --root runs/preset_seeds [--data_dir DIR] [--shared ../shared/data]
  python benchmarks/preset_seeds.py --config configs/deeplab_sid.py --models sid,regression,joint \
      --sizes tiny --datasets synthetic_city --seeds 3 --root runs/preset_seeds

For each preset (``model=``) of the config file (default ``configs/ssegdepnet.py``), size and dataset it
trains the preset with its default number of steps for every seed in
``ROOT/[<config>/]<model>/<size>/<dataset>/seed<N>`` (the config name only for other files than
``ssegdepnet.py``; finished runs are reused), evaluates the validation split through
``semdepth_jax.evaluate.Evaluation`` (the one evaluation path) next to the two trivial baselines of
``semdepth_jax.quickstart`` (mean training depth, majority training class, as ``evaluate.ConstantModel``),
and writes ``ROOT/summary.md`` / ``summary.json``: mean ± std, min and max per metric and whether every seed
beats the baseline. Real datasets missing from the TFDS data dir are built from ``--shared`` (replica from
``replica_office0``). Exit status 1 if any seed of any preset fails to beat a baseline.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

DEPTH_METRICS = ("abs_rel", "sq_rel", "rmse", "rmse_log", "delta1")
SEG_METRICS = ("miou", "pixel_acc")
LOWER_IS_BETTER = {"abs_rel", "sq_rel", "rmse", "rmse_log"}
SHARED_FOLDERS = {"replica": "replica_office0", "camvid": "camvid"}


def _ensure_built(dataset: str, data_dir: str | None, shared: str) -> None:
  """Builds ``dataset`` on first use: from ``shared/<SHARED_FOLDERS entry>`` when it needs files."""
  from semdepth_jax.train import loop

  folder = SHARED_FOLDERS.get(dataset.split("/")[0])
  loop.ensure_dataset(dataset, data_dir, manual_dir=folder and os.path.join(shared, folder))


def _metric_keys(model: str) -> tuple[str, ...]:
  # Segmentation-only presets: unet (ssegdepnet.py), seg (deeplab_sid.py); joint ones report both.
  if model in ("unet", "seg"):
    return SEG_METRICS
  if model in ("ssegdepnet", "joint"):
    return DEPTH_METRICS + SEG_METRICS
  return DEPTH_METRICS


def run_one(model, size, dataset, seed, root, data_dir, overrides, config="ssegdepnet.py"):
  """Trains one preset/seed (or reuses a finished run); returns its results dict.

  ``config``: file name in ``configs/`` (or a path) whose ``get_config`` takes ``model=, size=, dataset=``.
  """
  from semdepth_jax import quickstart
  from semdepth_jax.train import config_utils, loop

  stem = os.path.splitext(os.path.basename(config))[0]
  parts = [root] + ([] if stem == "ssegdepnet" else [stem])
  workdir = os.path.join(*parts, model, size, dataset.replace("/", "_"), f"seed{seed}")
  done = os.path.join(workdir, "preset_results.json")
  if os.path.isfile(done):
    with open(done, encoding="utf-8") as f:
      return json.load(f)
  config_utils.ensure_configs_importable()
  import configs

  path = config if os.sep in config else os.path.join(os.path.dirname(configs.__file__), config)
  ov = [f"--config.seed={seed}", "--config.progress_bar=False", "--config.eval.split=", *overrides]
  if data_dir:
    ov.append(f"--config.data_dir={data_dir}")
  config = config_utils.load_config(f"{path}:model={model},size={size},dataset={dataset}", ov)
  t0 = time.perf_counter()
  result = loop.train(config, workdir)
  t_train = time.perf_counter() - t0
  res = quickstart.evaluate_with_baselines(config, workdir, split="validation")
  out = {
    "model": res["model"],
    "baseline": res["baseline"],
    "steps": result.step,
    "train_s": t_train,
    "seed": seed,
  }
  with open(done, "w", encoding="utf-8") as f:
    json.dump(out, f, indent=2)
  return out


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument(
    "--config", default="ssegdepnet.py", help="config file (configs/ name or path)"
  )
  parser.add_argument("--models", default="unet,scrx_rgb,scrx_ohess,cnn3d_s,cnn3d_up,ssegdepnet")
  parser.add_argument("--sizes", default="tiny")
  parser.add_argument("--datasets", default="synthetic_city,replica")
  parser.add_argument("--seeds", type=int, default=5)
  parser.add_argument("--root", default=os.path.join("runs", "preset_seeds"))
  parser.add_argument("--data_dir", default=None)
  parser.add_argument("--shared", default=os.path.join("..", "shared", "data"))
  parser.add_argument(
    "--override", action="append", default=[], help="--config.KEY=VALUE (repeatable)"
  )
  args = parser.parse_args(argv)

  from semdepth_jax.train.cli import setup_logging

  setup_logging()
  rows, ok = [], True
  for dataset in args.datasets.split(","):
    _ensure_built(dataset, args.data_dir, args.shared)
    for size in args.sizes.split(","):
      for model in args.models.split(","):
        runs = [
          run_one(model, size, dataset, s, args.root, args.data_dir, args.override, args.config)
          for s in range(args.seeds)
        ]
        for k in _metric_keys(model):
          vals = np.array([r["model"][k] for r in runs])
          base = runs[0]["baseline"][k]
          beats = bool((vals < base).all() if k in LOWER_IS_BETTER else (vals > base).all())
          ok &= beats
          rows.append(
            {
              "model": model, "size": size, "dataset": dataset, "metric": k,
              "mean": float(vals.mean()), "std": float(vals.std(ddof=1)) if len(vals) > 1 else 0.0,
              "min": float(vals.min()), "max": float(vals.max()), "baseline": float(base),
              "every_seed_beats_baseline": beats, "steps": runs[0]["steps"],
              "train_s": float(np.mean([r["train_s"] for r in runs])),
            }
          )  # fmt: skip
        print(f"{model} {size} {dataset}: " + ", ".join(
          f"{r['metric']} {r['mean']:.3f}±{r['std']:.3f} (base {r['baseline']:.3f})"
          for r in rows if (r["model"], r["size"], r["dataset"]) == (model, size, dataset)
        ), flush=True)  # fmt: skip
  os.makedirs(args.root, exist_ok=True)
  with open(os.path.join(args.root, "summary.json"), "w", encoding="utf-8") as f:
    json.dump(rows, f, indent=2)
  lines = [
    f"| preset | size | dataset | steps | metric | mean ± std ({args.seeds} seeds) | min .. max | "
    "baseline | every seed better |",
    "|---|---|---|---|---|---|---|---|---|",
  ]
  for r in rows:
    lines.append(
      f"| {r['model']} | {r['size']} | {r['dataset']} | {r['steps']} | {r['metric']} | "
      f"{r['mean']:.3f} ± {r['std']:.3f} | {r['min']:.3f} .. {r['max']:.3f} | {r['baseline']:.3f} | "
      f"{'yes' if r['every_seed_beats_baseline'] else '**no**'} |"
    )
  md = "\n".join(lines) + "\n"
  with open(os.path.join(args.root, "summary.md"), "w", encoding="utf-8") as f:
    f.write(md)
  print(md)
  return 0 if ok else 1


if __name__ == "__main__":
  sys.exit(main())
