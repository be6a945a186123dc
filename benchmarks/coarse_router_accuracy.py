"""Paper 004's coarse router (docs/model_spec.md §5.4 (b)) on the real images of ``../shared/data``.

::

  nice -n 10 python benchmarks/coarse_router_accuracy.py --seeds 3 --size tiny \
      --root runs/coarse_router [--steps N] [--loss reg] [--outdoor synthetic_city/tiny] [--sigma 5.89] \
      [--override=--config.KEY=VALUE] [--data_dir DIR] [--shared ../shared/data]
  python benchmarks/coarse_router_accuracy.py --oracle [--sigma 5.89]   # the rule on ground-truth depth

For every seed it trains ``configs/ds_sidenet.py:model=coarse,size=<size>`` (the low-range network over
0.7-80 m bins on its mixture, replica indoor + synthetic_city outdoor at ``tiny`` / ``small``) in
``ROOT/[steps<N>/]<size>/seed<N>`` (finished runs are reused), loads it as
``semdepth_jax.routed.CoarseRouter`` (maximum predicted depth against ``sigma``, paper 5.89 m) and routes
one image at a time, at its stored size, every real image of :data:`SETS`: true range ``low`` (indoor)
for NYU and the Replica validation frames, ``high`` (outdoor) for KITTI, SHIFT and CamVid.

Writes ``ROOT/[steps<N>/]coarse_router_accuracy.md`` / ``.json``: per seed and set the accuracy, the
number of images and the median / min / max of the routed maximum depth, and the overall accuracy over
all images, averaged over the sets, and over the indoor and the outdoor images separately (CamVid's 367
frames dominate the overall number).

Every statistic of ``semdepth_jax.routing.STATISTICS`` (max = the paper's rule, p95, median) is scored
from the same predictions; ``--override=--config.KEY=VALUE`` (repeatable) changes every run (use its own
``--root``).

Measured (2-core x86-64 VM, loaded; ``--size tiny --seeds 3 --steps 600 --loss reg``, the preset's
min_width 8 and jitter, synthetic_city default config as the outdoor member; 150-170 s per run): stable over
seeds. Max rule: Replica val 21/21, KITTI 4/4, CamVid 367/367 on every seed, SHIFT 1-2 / 2, NYU 1-2 / 10
(indoor images 0.720 +- 0.019, outdoor 0.998 +- 0.002). Median rule: NYU 6-7 / 10, Replica 21/21, KITTI 3-4
/ 4, CamVid 365/367, SHIFT 0/2 (indoor 0.882 +- 0.019, outdoor 0.988 +- 0.002). Predicted max depth: Replica
val 2.7-4.4 m, KITTI 49-71 m, CamVid 37-87 m, NYU 3.3-57 m: the network has learnt "Replica's office vs
everything else" more than "indoor vs outdoor"; with one indoor room to learn from, NYU's rooms look far.
Before the width floor and jitter (``--override=--config.model.min_width=1
--override=--config.augment.jitter=False --outdoor synthetic_city/tiny``, same length) seed 1 collapsed to
2.27 m everywhere (every image low) and seeds 0 / 2 routed NYU 0 / 10 under the max rule. Earlier (100 steps, soft_reg): the classification
branch had not learnt, every prediction saturated near 7 m (about sqrt(0.7 x 80) m, the expectation of a
near-uniform distribution over the bins) and every image went high.

``--oracle`` applies the rule to the ground-truth depth instead (what a perfect coarse network would
route). Measured: Replica val 21/21, KITTI 3/3, SHIFT 2/2, but NYU 1/5: four of the five NYU frames with
depth have a valid pixel beyond 5.89 m (their maxima 5.23-8.27 m, median 6.45 m). The paper's sigma was
set on ScanNet; on NYU rooms even a perfect coarse network fails the max rule, so ">= 90 % on NYU" cannot
be reached with it. The 95th percentile routes NYU 3/5, the median 5/5 (every set correct).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

SETS = (
  ("nyu", "low", ("nyu_depth_v2_samples/joint", "nyu_depth_v2_samples/seg_only",
                  "nyu_depth_v2_samples/depth_only/rgb")),
  ("replica_val", "low", ("replica_office0/rgb",)),
  ("kitti", "high", ("kitti_samples/depth_sparse/rgb", "kitti_samples/seg")),
  ("shift", "high", ("shift_samples/front/007b-4e72", "shift_samples/left_90/007b-4e72")),
  ("camvid", "high", ("camvid/train",)),
)  # fmt: skip
"""``(name, true range, folders under the shared data dir)`` of the routed real images."""

REPLICA_VALIDATION = range(60, 81)
"""Replica office_0 frames of the validation split (the shared data README's suggested split)."""


def image_files(shared: str, folders: tuple[str, ...], name: str) -> list[str]:
  """The RGB image files of one set (ground-truth / label images are left out).

  Raises:
    FileNotFoundError: a set with no image (names the folders).
  """
  out = []
  for folder in folders:
    d = os.path.join(shared, folder)
    for f in sorted(os.listdir(d)):
      stem, ext = os.path.splitext(f)
      if ext.lower() not in (".png", ".jpg", ".jpeg"):
        continue
      if stem.startswith(("depth_gt_", "segm_gt_", "norm_gt_")) or stem.endswith("_mask"):
        continue
      if "_depth_" in stem or "_semseg_" in stem:  # SHIFT ground truth
        continue
      if name == "replica_val" and int(stem) not in REPLICA_VALIDATION:
        continue
      out.append(os.path.join(d, f))
  if not out:
    raise FileNotFoundError(f"{name}: no image in {', '.join(folders)} under {shared}")
  return out


def route_sets(router, shared: str) -> dict[str, dict]:
  """Routes every image of :data:`SETS` with ``router`` (``routed.CoarseRouter``), one at a time.

  Every statistic of ``routing.STATISTICS`` is scored from the same prediction (the router's own
  ``statistic`` only decides its ``is_low``, which is not used here).

  Returns:
    ``{set: {'truth', 'n', 'correct': {statistic: int}, 'accuracy': {statistic: float},
    'depth': {statistic: [metres per image]}}}``.
  """
  import jax.numpy as jnp

  from semdepth_jax import predict, routing

  out = {}
  for name, truth, folders in SETS:
    depths: dict[str, list[float]] = {k: [] for k in routing.STATISTICS}
    for f in image_files(shared, folders, name):
      img = predict.read_image(f)
      r = router(jnp.asarray(img[None], jnp.float32) / 255.0)
      for k in routing.STATISTICS:
        depths[k].append(float(np.asarray(r[f"{k}_depth"]).reshape(-1)[0]))
    correct = {
      k: int(np.sum((np.array(v) > router.sigma) == (truth == "high"))) for k, v in depths.items()
    }
    n = len(depths["max"])
    out[name] = {
      "truth": truth,
      "n": n,
      "correct": correct,
      "accuracy": {k: c / n for k, c in correct.items()},
      "depth": depths,
    }
  return out


ORACLE_DEPTH = (
  ("nyu", "low", "nyu_depth_v2_samples/joint", "depth_gt_*.png", "mm5"),
  ("nyu", "low", "nyu_depth_v2_samples/depth_only/depth", "*.png", "mm"),
  ("replica_val", "low", "replica_office0/depth_mm", "*.png", "mm"),
  ("kitti", "high", "kitti_samples/depth_sparse/depth", "*.png", "kitti"),
  ("shift", "high", "shift_samples/*/007b-4e72", "*_depth_*.png", "rgb24"),
)  # fmt: skip
"""Ground-truth depth of the routed sets (CamVid has none): ``(set, true range, folder glob, file glob,
encoding)``, encodings as in the shared data README: ``mm5`` m = v / 5000, ``mm`` m = v / 1000, ``kitti``
m = v / 256, ``rgb24`` m = (R + 256 G + 65536 B) / (256^3 - 1) * 1000; 0 = invalid."""


def _decode_depth(path: str, encoding: str) -> np.ndarray:
  from PIL import Image

  v = np.asarray(Image.open(path))
  if encoding == "rgb24":
    v = v[..., :3].astype(np.float64)
    return (v[..., 0] + 256.0 * v[..., 1] + 65536.0 * v[..., 2]) / (256.0**3 - 1) * 1000.0
  return v.astype(np.float64) / {"mm5": 5000.0, "mm": 1000.0, "kitti": 256.0}[encoding]


def oracle(shared: str, sigma: float) -> str:
  """The sigma rule applied to ground-truth depth: the accuracy a perfect coarse network would reach.

  Per set: how many images a "max depth > sigma -> high" rule routes correctly when the maximum is taken
  over the valid ground-truth pixels, with the max and, for comparison, the 95th percentile and the median.
  Returns the markdown report.
  """
  import glob

  rows: dict[str, dict] = {}
  for name, truth, folder, pattern, enc in ORACLE_DEPTH:
    files = sorted(glob.glob(os.path.join(shared, folder, pattern)))
    if name == "replica_val":
      files = [
        f for f in files if int(os.path.splitext(os.path.basename(f))[0]) in REPLICA_VALIDATION
      ]
    r = rows.setdefault(name, {"truth": truth, "stats": []})
    for f in files:
      d = _decode_depth(f, enc)
      v = d[np.isfinite(d) & (d > 0)]
      r["stats"].append((float(v.max()), float(np.percentile(v, 95)), float(np.median(v))))
  lines = [
    f"sigma rule on ground-truth depth (sigma = {sigma} m): images routed correctly / images",
    "",
    "| set (truth) | max > sigma | p95 > sigma | median > sigma | GT max depth, m: median [min, max] |",
    "|---|---|---|---|---|",
  ]
  for name, r in rows.items():
    st = np.array(r["stats"])
    low = r["truth"] == "low"
    cells = [f"{int(np.sum((st[:, i] > sigma) != low))}/{len(st)}" for i in range(3)]
    m = st[:, 0]
    lines.append(
      f"| {name} ({r['truth']}) | "
      + " | ".join(cells)
      + f" | {np.median(m):.2f} [{m.min():.2f}, {m.max():.2f}] |"
    )
  return "\n".join(lines) + "\n"


def train_router(
  seed: int,
  size: str,
  workdir: str,
  data_dir: str | None,
  steps: int,
  outdoor: str = "",
  loss: str = "soft_reg",
  overrides: tuple[str, ...] = (),
) -> float:
  """Trains the coarse preset into ``workdir`` unless it is finished; returns the training seconds.

  ``outdoor``: replaces the mixture's outdoor member (e.g. ``synthetic_city/tiny``); '' keeps the preset's.
  ``loss``: the preset's ``loss=`` (Table 6 row; ``reg`` decodes the regression branch).
  ``overrides``: further ``--config.KEY=VALUE`` arguments (e.g. ``--config.augment.jitter=True``).
  """
  from semdepth_jax.train import config_utils, loop

  done = os.path.join(workdir, "router_trained.json")
  if os.path.isfile(done):
    with open(done, encoding="utf-8") as f:
      return float(json.load(f)["train_s"])
  config_utils.ensure_configs_importable()
  import configs

  path = os.path.join(os.path.dirname(configs.__file__), "ds_sidenet.py")
  ov = [
    f"--config.seed={seed}",
    "--config.progress_bar=False",
    "--config.eval.split=",
    "--config.mesh_shape=(1, 1)",
  ]
  if data_dir:
    ov.append(f"--config.data_dir={data_dir}")
  if outdoor:
    ov.append(f"--config.train_mixture=(('replica', 1.0), ('{outdoor}', 1.0))")
  ov += list(overrides)
  config = config_utils.load_config(
    f"{path}:model=coarse,loss={loss},size={size},steps={steps}", ov
  )
  t0 = time.perf_counter()
  loop.train(config, workdir)
  t = time.perf_counter() - t0
  with open(done, "w", encoding="utf-8") as f:
    json.dump({"train_s": t}, f)
  return t


def summarize(sets: dict[str, dict], statistic: str) -> dict[str, float]:
  """Accuracy of one statistic's rule over all images, averaged over sets, and per true range."""
  n = sum(v["n"] for v in sets.values())
  out = {
    "accuracy": sum(v["correct"][statistic] for v in sets.values()) / n,
    "mean_set_accuracy": float(np.mean([v["accuracy"][statistic] for v in sets.values()])),
  }
  for truth in ("low", "high"):
    part = [v for v in sets.values() if v["truth"] == truth]
    out[f"{truth}_accuracy"] = sum(v["correct"][statistic] for v in part) / sum(
      v["n"] for v in part
    )
  return out


def _mean_std(values: list[float]) -> str:
  v = np.asarray(values, np.float64)
  return f"{v.mean():.3f} ± {v.std(ddof=1) if len(v) > 1 else 0.0:.3f}"


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--size", default="tiny", choices=("tiny", "small"))
  parser.add_argument("--seeds", type=int, default=3)
  parser.add_argument("--steps", type=int, default=0, help="batches per run (0 = the preset's)")
  parser.add_argument(
    "--outdoor", default="", help="outdoor mixture member (e.g. synthetic_city/tiny; '' = preset's)"
  )
  parser.add_argument("--sigma", type=float, default=None, help="metres (default: paper 5.89)")
  parser.add_argument(
    "--loss", default="soft_reg", choices=("soft_reg", "soft", "hard", "reg"), help="Table 6 row"
  )
  parser.add_argument(
    "--override",
    action="append",
    default=[],
    help="--config.KEY=VALUE for every run (repeatable; use a separate --root per setting)",
  )
  parser.add_argument("--root", default=os.path.join("runs", "coarse_router"))
  parser.add_argument("--data_dir", default=None)
  parser.add_argument("--shared", default=os.path.join("..", "shared", "data"))
  parser.add_argument(
    "--oracle",
    action="store_true",
    help="only apply the sigma rule to ground-truth depth (no training): a perfect router's accuracy",
  )
  args = parser.parse_args(argv)
  if args.oracle:
    from semdepth_jax import routing

    print(oracle(args.shared, routing.SIGMA_M if args.sigma is None else args.sigma))
    return 0

  from semdepth_jax import predict, routed, routing
  from semdepth_jax.train import loop
  from semdepth_jax.train.cli import setup_logging

  setup_logging()
  sigma = routing.SIGMA_M if args.sigma is None else args.sigma
  loop.ensure_dataset(
    "replica", args.data_dir, manual_dir=os.path.join(args.shared, "replica_office0")
  )
  loop.ensure_dataset(args.outdoor or "synthetic_city", args.data_dir)
  root = args.root if not args.steps else os.path.join(args.root, f"steps{args.steps}")
  if args.outdoor:
    root = os.path.join(root, args.outdoor.replace("/", "_"))
  if args.loss != "soft_reg":
    root = os.path.join(root, args.loss)
  results = []
  for s in range(args.seeds):
    workdir = os.path.join(root, args.size, f"seed{s}")
    t = train_router(
      s,
      args.size,
      workdir,
      args.data_dir,
      args.steps,
      args.outdoor,
      args.loss,
      tuple(args.override),
    )
    router = routed.CoarseRouter(predict.load_trained(workdir), sigma=sigma)
    t0 = time.perf_counter()
    sets = route_sets(router, args.shared)
    res = {"seed": s, "train_s": t, "route_s": time.perf_counter() - t0, "sets": sets}
    res["by_statistic"] = {k: summarize(sets, k) for k in routing.STATISTICS}
    results.append(res)
    print(
      f"seed {s} (train {t:.0f} s): "
      + "; ".join(
        f"{k}: all {res['by_statistic'][k]['accuracy']:.3f}, "
        + ", ".join(f"{n} {v['accuracy'][k]:.3f}" for n, v in sets.items())
        for k in routing.STATISTICS
      ),
      flush=True,
    )
  command = (
    f"python benchmarks/coarse_router_accuracy.py --size {args.size} --seeds {args.seeds}"
    + (f" --steps {args.steps}" if args.steps else "")
    + (f" --outdoor {args.outdoor}" if args.outdoor else "")
    + (f" --loss {args.loss}" if args.loss != "soft_reg" else "")
    + (f" --sigma {args.sigma}" if args.sigma is not None else "")
    + "".join(f" --override={o}" for o in args.override)
  )
  names = [n for n, _, _ in SETS]
  lines = [
    f"Coarse router ({args.size}), sigma {sigma} m, real images of the shared data; command: {command}",
    "",
    "Accuracy per statistic of the predicted depth compared with sigma (max = the paper's rule):",
    "",
    "| statistic | seed | "
    + " | ".join(f"{n} ({results[0]['sets'][n]['n']})" for n in names)
    + " | all images | mean over sets | indoor images | outdoor images |",
    "|---" * (len(names) + 6) + "|",
  ]
  for k in routing.STATISTICS:
    for r in results:
      b = r["by_statistic"][k]
      lines.append(
        f"| {k} | {r['seed']} | "
        + " | ".join(f"{r['sets'][n]['accuracy'][k]:.3f}" for n in names)
        + f" | {b['accuracy']:.3f} | {b['mean_set_accuracy']:.3f} | {b['low_accuracy']:.3f} | "
        f"{b['high_accuracy']:.3f} |"
      )
    m = {
      q: [r["by_statistic"][k][q] for r in results]
      for q in ("accuracy", "mean_set_accuracy", "low_accuracy", "high_accuracy")
    }
    lines.append(
      f"| {k} | mean ± std | "
      + " | ".join(_mean_std([r["sets"][n]["accuracy"][k] for r in results]) for n in names)
      + " | "
      + " | ".join(_mean_std(v) for v in m.values())
      + " |"
    )
  lines += [
    "",
    "Predicted depth statistic per image, metres, median [min, max] over the set's images:",
    "",
  ]
  lines += ["| statistic | seed | " + " | ".join(names) + " |", "|---" * (len(names) + 2) + "|"]
  for k in routing.STATISTICS:
    for r in results:
      cells = []
      for n in names:
        d = np.array(r["sets"][n]["depth"][k])
        cells.append(f"{np.median(d):.2f} [{d.min():.2f}, {d.max():.2f}]")
      lines.append(f"| {k} | {r['seed']} | " + " | ".join(cells) + " |")
  md = "\n".join(lines) + "\n"
  os.makedirs(root, exist_ok=True)
  with open(os.path.join(root, "coarse_router_accuracy.json"), "w", encoding="utf-8") as f:
    json.dump(results, f, indent=2)
  with open(os.path.join(root, "coarse_router_accuracy.md"), "w", encoding="utf-8") as f:
    f.write(md)
  print(md)
  return 0


if __name__ == "__main__":
  sys.exit(main())
