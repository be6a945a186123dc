"""Paper 002's claim: depth as classification over SID bins beats plain regression with the same network.

::

  nice -n 10 python benchmarks/sid_vs_regression.py --size tiny --seeds 5 --dataset synthetic_city \
      --root runs/sid_vs_regression [--data_dir DIR] [--models sid,regression,log_regression] \
      [--steps N] [--expectation] [--kitti ../shared/data/kitti_samples/depth_sparse]

Trains ``configs/deeplab_sid.py`` presets that differ only in the head and the loss, for every seed
(``benchmarks/preset_seeds.run_one``: one run per ``ROOT/deeplab_sid/<model>/<size>/<dataset>/seed<N>``,
finished runs are reused), and evaluates each on the validation split through ``semdepth_jax.evaluate``:

* ``sid``: the paper: K = 71 SID classes over [1 m, 80 m], softmax cross-entropy, argmax -> DORN mid-point;
* ``regression``: the same network with a one-channel ASPP head regressing metres, masked L1 (the "plain
  regression" the paper's framing argues against);
* ``log_regression``: the same head regressing natural-log metres, masked L1 (a stronger regression);
* ``sid_expectation`` (with ``--expectation``): the ``sid`` runs decoded by the soft expectation over the
  bins instead of the argmax mid-point (no retraining; ``bin_decode='expectation'``).

With ``--kitti DIR`` (default: ``<--shared>/kitti_samples/depth_sparse`` when it exists; ``--kitti ''``
turns it off) every run is also evaluated on the real KITTI frames of ``DIR`` (``rgb/*.png``, sparse
LiDAR ``depth/*.png`` / 256 = metres, 0 = none; resized to ``KITTI_INPUT`` = the training height at KITTI's
aspect ratio and back) under the paper's protocol: Garg crop, 1e-3 < y < 80 m, prediction clamped, per-image
averages (``metrics.depth_metrics``; docs/model_spec.md §3.4, §8.5), next to the mean training depth. This is a
synthetic-to-real transfer of a network trained at 48 rows, reported, not expected to be good.

Every model has the same backbone, ASPP, upsampling, optimiser, schedule, augmentation and steps. On a CPU
the network is the DeepLab-v2 structure (Caffe bottlenecks, ceil-mode stem, output stride 8, summed ASPP,
bilinear upsampling) at the ``tiny`` / ``small`` preset's reduced widths and depths with trained BatchNorm,
not ResNet-101 (far too slow on a CPU; ``configs/deeplab_sid.py``).

Writes ``ROOT/sid_vs_regression.md`` / ``.json``: per model mean ± std over seeds for each metric, and per
regression baseline the paired (same seed) difference SID - baseline, mean ± std, with the number of seeds on
which the classification is better, for ``sid`` and ``sid_expectation`` against each regression. A metric
counts as "better" when the mean difference is in the classification's favour by more than one standard
deviation of the paired differences; the verdict lines say which metrics agree with the paper.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys

import numpy as np

METRICS = ("abs_rel", "sq_rel", "rmse", "rmse_log", "silog", "delta1", "delta2", "delta3")
HIGHER_IS_BETTER = {"delta1", "delta2", "delta3"}


def _preset_seeds():
  path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "preset_seeds.py")
  spec = importlib.util.spec_from_file_location("preset_seeds", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def expectation_results(run: dict, workdir: str, data_dir: str | None) -> dict:
  """``run`` (a ``sid`` result) re-evaluated with ``bin_decode='expectation'`` (cached in ``workdir``)."""
  from semdepth_jax import evaluate, predict

  done = os.path.join(workdir, "expectation_results.json")
  if os.path.isfile(done):
    with open(done, encoding="utf-8") as f:
      return json.load(f)
  config = predict.load_config_for(workdir)
  config.model.bin_decode = "expectation"
  report = evaluate.evaluate_workdir(
    workdir, config=config, split="validation", data_dir=data_dir, write=False
  )
  out = {**run, "model": evaluate.report_scalars(report)}
  with open(done, "w", encoding="utf-8") as f:
    json.dump(out, f, indent=2)
  return out


KITTI_INPUT = (48, 160)
"""Model input for KITTI frames: the tiny training height (48 rows) at KITTI's aspect ratio, a multiple of 8."""


def kitti_frames(folder: str) -> tuple[np.ndarray, np.ndarray]:
  """``(images uint8 (N, H, W, 3), depth float32 (N, H, W) metres)`` of ``folder``'s rgb/ and depth/ pngs.

  Raises:
    FileNotFoundError: no ``rgb/*.png`` or a frame without its ``depth/`` png (names the file).
    ValueError: a depth png that is not 16-bit (names the file and the mode).
  """
  from PIL import Image

  rgb = sorted(f for f in os.listdir(os.path.join(folder, "rgb")) if f.endswith(".png"))
  if not rgb:
    raise FileNotFoundError(f"{folder}/rgb: no .png frames")
  images, depths = [], []
  for name in rgb:
    path = os.path.join(folder, "depth", name)
    if not os.path.isfile(path):
      raise FileNotFoundError(f"{path}: missing depth png for rgb/{name}")
    with Image.open(path) as im:
      if im.mode not in ("I;16", "I"):
        raise ValueError(f"{path}: expected a 16-bit png (png / 256 = metres), got mode {im.mode}")
      depths.append(np.asarray(im, np.float32) / 256.0)
    with Image.open(os.path.join(folder, "rgb", name)) as im:
      images.append(np.asarray(im.convert("RGB")))
  return np.stack(images), np.stack(depths)


def kitti_results(
  run: dict, workdir: str, folder: str, mean_depth: float, decode: str | None = None
) -> dict:
  """``run`` evaluated on the KITTI frames of ``folder`` (module docstring; cached in ``workdir``).

  ``mean_depth``: the mean training depth in metres (the constant baseline); ``decode``: a ``bin_decode``
  override for SID runs.
  """
  import jax
  import jax.numpy as jnp

  from semdepth_jax import metrics, predict

  name = "kitti_results.json" if decode is None else f"kitti_results_{decode}.json"
  done = os.path.join(workdir, name)
  if os.path.isfile(done):
    with open(done, encoding="utf-8") as f:
      return json.load(f)
  config = predict.load_config_for(workdir)
  if decode is not None:
    config.model.bin_decode = decode
  model, variables, _ = predict.restore_for_inference(workdir, config=config)
  images, gt = kitti_frames(folder)
  dense = jax.jit(predict.InferenceModel(model, input_size=KITTI_INPUT).dense)
  pred = np.stack(
    [
      np.asarray(dense(variables, jnp.asarray(im[None], jnp.float32) / 255.0)["depth"][0])
      for im in images
    ]
  )
  kw = {"min_depth": 1e-3, "max_depth": 80.0, "crop": "kitti_garg"}
  out = {
    **run,
    "model": metrics.depth_metrics(pred, gt, **kw),
    "baseline": metrics.depth_metrics(np.full_like(gt, mean_depth), gt, **kw),
  }
  with open(done, "w", encoding="utf-8") as f:
    json.dump(out, f, indent=2)
  return out


CLASSIFICATION = ("sid", "sid_expectation")
"""Models that classify over bins; every other model is a regression baseline."""


def summarise(runs: dict[str, list[dict]]) -> tuple[list[dict], list[dict]]:
  """Per-model mean ± std rows and paired ``classification - regression`` rows (module docstring)."""
  rows, pairs = [], []
  for model, results in runs.items():
    for k in METRICS:
      vals = np.array([r["model"][k] for r in results], np.float64)
      rows.append(
        {
          "model": model,
          "metric": k,
          "mean": float(vals.mean()),
          "std": float(vals.std(ddof=1)) if len(vals) > 1 else 0.0,
          "baseline": float(results[0]["baseline"][k]),
        }
      )
  for cls in (m for m in runs if m in CLASSIFICATION):
    for model, results in runs.items():
      if model in CLASSIFICATION:
        continue
      for k in METRICS:
        a = np.array([r["model"][k] for r in runs[cls]], np.float64)
        b = np.array([r["model"][k] for r in results], np.float64)
        diff = a - b
        sign = 1.0 if k in HIGHER_IS_BETTER else -1.0
        mean, std = float(diff.mean()), float(diff.std(ddof=1)) if len(diff) > 1 else 0.0
        pairs.append(
          {
            "classification": cls,
            "versus": model,
            "metric": k,
            "diff_mean": mean,
            "diff_std": std,
            "seeds_cls_better": int(np.sum(sign * diff > 0)),
            "seeds": int(len(diff)),
            "cls_better": bool(sign * mean > std),
            "cls_worse": bool(-sign * mean > std),
          }
        )
  return rows, pairs


def markdown(rows: list[dict], pairs: list[dict], header: str) -> str:
  """The model table, the paired tables and the verdicts as Markdown."""
  models = list(dict.fromkeys(r["model"] for r in rows))
  out = [header, "", "| metric | " + " | ".join(models) + " | mean-depth baseline |"]
  out.append("|---" * (len(models) + 2) + "|")
  for k in METRICS:
    cells = [
      f"{r['mean']:.3f} ± {r['std']:.3f}"
      for m in models
      for r in rows
      if (r["model"], r["metric"]) == (m, k)
    ]
    base = next(r["baseline"] for r in rows if r["metric"] == k)
    arrow = "↑" if k in HIGHER_IS_BETTER else "↓"
    out.append(f"| {k} {arrow} | " + " | ".join(cells) + f" | {base:.3f} |")
  for cls, versus in dict.fromkeys((p["classification"], p["versus"]) for p in pairs):
    out += ["", f"Paired difference {cls} - {versus} (same seed):", ""]
    out += [f"| metric | mean ± std | seeds where {cls} is better | verdict |", "|---|---|---|---|"]
    better, worse = [], []
    for p in pairs:
      if (p["classification"], p["versus"]) != (cls, versus):
        continue
      verdict = (
        "better" if p["cls_better"] else ("worse" if p["cls_worse"] else "no clear difference")
      )
      (better if p["cls_better"] else worse if p["cls_worse"] else []).append(p["metric"])
      out.append(
        f"| {p['metric']} | {p['diff_mean']:+.3f} ± {p['diff_std']:.3f} | "
        f"{p['seeds_cls_better']} / {p['seeds']} | {cls} {verdict} |"
      )
    out += [
      "",
      f"{cls} vs {versus} (difference larger than one std of the paired differences): better on "
      f"{', '.join(better) or 'no metric'}; worse on {', '.join(worse) or 'no metric'}.",
    ]
  return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--models", default="sid,regression,log_regression")
  parser.add_argument("--size", default="tiny", choices=("tiny", "small"))
  parser.add_argument("--dataset", default="synthetic_city")
  parser.add_argument("--seeds", type=int, default=5)
  parser.add_argument("--steps", type=int, default=0, help="batches per run (0 = the preset's)")
  parser.add_argument("--root", default=os.path.join("runs", "sid_vs_regression"))
  parser.add_argument("--data_dir", default=None)
  parser.add_argument("--shared", default=os.path.join("..", "shared", "data"))
  parser.add_argument(
    "--expectation", action="store_true", help="add the sid runs decoded by soft expectation"
  )
  parser.add_argument(
    "--kitti", default=None, help="KITTI rgb/ + depth/ folder (default: under --shared; '' = off)"
  )
  args = parser.parse_args(argv)
  models = args.models.split(",")
  if "sid" not in models or len(models) < 2:
    parser.error("--models needs 'sid' and at least one regression model")

  from semdepth_jax.train.cli import setup_logging

  setup_logging()
  ps = _preset_seeds()
  ps._ensure_built(args.dataset, args.data_dir, args.shared)
  overrides = [f"--config.stages.train.num_steps={args.steps}"] if args.steps else []
  root = args.root if not args.steps else os.path.join(args.root, f"steps{args.steps}")
  runs = {}
  for model in models:
    runs[model] = [
      ps.run_one(
        model, args.size, args.dataset, s, root, args.data_dir, overrides, "deeplab_sid.py"
      )
      for s in range(args.seeds)
    ]
    print(
      f"{model}: "
      + ", ".join(f"{k} {np.mean([r['model'][k] for r in runs[model]]):.3f}" for k in METRICS),
      flush=True,
    )
  if args.expectation:
    runs["sid_expectation"] = [
      expectation_results(r, _workdir(root, "sid", args.size, args.dataset, s), args.data_dir)
      for s, r in enumerate(runs["sid"])
    ]
  rows, pairs = summarise(runs)
  steps = runs["sid"][0]["steps"]
  command = (
    f"python benchmarks/sid_vs_regression.py --size {args.size} --seeds {args.seeds} --dataset "
    f"{args.dataset}"
    + (f" --steps {args.steps}" if args.steps else "")
    + (" --expectation" if args.expectation else "")
  )
  header = (
    f"DeepLab-v2 ({args.size} preset) on {args.dataset} validation, {steps} steps, {args.seeds} seeds "
    f"(mean ± std); command: {command}"
  )
  md = markdown(rows, pairs, header)
  kitti = (
    os.path.join(args.shared, "kitti_samples", "depth_sparse") if args.kitti is None else args.kitti
  )
  kitti_runs = {}
  if kitti and os.path.isdir(kitti):
    from semdepth_jax import predict, quickstart

    first = _workdir(root, "sid", args.size, args.dataset, 0)
    mean_depth = float(quickstart.training_baselines(predict.load_config_for(first))["mean_depth"])
    for model, results in runs.items():
      name, decode = ("sid", "expectation") if model == "sid_expectation" else (model, None)
      kitti_runs[model] = [
        kitti_results(
          r, _workdir(root, name, args.size, args.dataset, s), kitti, mean_depth, decode
        )
        for s, r in enumerate(results)
      ]
    k_rows, k_pairs = summarise(kitti_runs)
    md += "\n" + markdown(
      k_rows,
      k_pairs,
      f"The same runs on the {len(kitti_frames(kitti)[0])} KITTI frames of {os.path.basename(kitti)} "
      f"(sparse LiDAR, Garg crop, 80 m cap, input {KITTI_INPUT[0]} x {KITTI_INPUT[1]}; baseline = mean "
      f"training depth {mean_depth:.2f} m); command: {command}",
    )
  os.makedirs(root, exist_ok=True)
  with open(os.path.join(root, "sid_vs_regression.json"), "w", encoding="utf-8") as f:
    json.dump({"rows": rows, "pairs": pairs, "runs": runs, "kitti_runs": kitti_runs}, f, indent=2)
  with open(os.path.join(root, "sid_vs_regression.md"), "w", encoding="utf-8") as f:
    f.write(md)
  print(md)
  return 0


def _workdir(root: str, model: str, size: str, dataset: str, seed: int) -> str:
  """The run folder of ``preset_seeds.run_one`` for ``configs/deeplab_sid.py``."""
  return os.path.join(root, "deeplab_sid", model, size, dataset.replace("/", "_"), f"seed{seed}")


if __name__ == "__main__":
  sys.exit(main())
