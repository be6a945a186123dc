"""Does semantic input (or a semantic head) help depth? Paper 003's claims on Replica with NYU-40 labels.

::

  JAX_COMPILATION_CACHE_DIR=DIR nice -n 10 python benchmarks/semantic_md_compare.py --seeds 3 \
      --size tiny --image_size 64,96 --steps 400 \
      --root runs/semantic_md_compare --data_dir DIR [--shared ../shared/data] [--onehot 40]

Runs, each over the seeds (``configs/semantic_md.py`` presets on ``replica/nyu40``, built from
``--shared`` if missing):

1. ``seg``: the semantic-only U-Net (the predictor of "predicted semantics");
2. ``baseline`` (sigmoid depth, L1);
3. ``1hot-N (GT)``: one-hot planes of the ground-truth top-N classes, trained and evaluated on ground truth
   (the paper's setting), and also evaluated on run 1's predictions (``1hot-N (GT -> pred.)``: train on ground truth, deploy on a
   segmenter's output; only ``config.model.semantic_source`` changes);
4. ``2-head``: depth + 40-class semantics, CE x 0.07;
5. ``1hot-N (pred.)``: the 1hot-N model trained and evaluated on the arg-max of run 1's predictions
   (``semantics=predicted``), which the paper does not test.

Training reads the train split from memory, each example resized once to cover the input (the same
``transforms.resize_to_cover`` the pipeline applies, so batches are what ``semdepth train`` would produce;
Replica's 1200x680 PNGs would otherwise make decoding the bottleneck). Every run is scored with

* the R3 protocol (``metrics`` protocol ``r3_semantic_md``: the paper's script; images cover-resized and
  centre-cropped to the model input as R3 evaluates, prediction clamped to 1e-4 x 15 m, delta over all
  pixels, pooled per batch of 32);
* the standard protocol through ``quickstart.evaluate_with_baselines`` (``semdepth_jax.evaluate``, the one
  evaluation path: predictions resized to the stored 680x1200 ground truth, dataset mask 1e-3 < y < 10 m,
  per image), next to the trivial mean-depth baseline.

Writes ``ROOT/summary.md`` / ``summary.json`` (mean +- std over seeds, per-seed values, and whether the
paper's claims hold: 1hot-N better than baseline, 2-head at least as good). Finished runs are reused.

At 100 steps no trained model beat the trivial mean depth on the standard protocol; at 400 steps (the
command above) every one does, and the README's table is that run's.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time

import numpy as np

DATASET = "replica/nyu40"
SHARED_FOLDER = "replica_office0"
R3_KEYS = ("rmse", "abs_rel", "log10", "delta1", "delta2", "delta3")  # Table 1's column order
STD_KEYS = ("abs_rel", "rmse", "rmse_log", "delta1")
LOWER_IS_BETTER = {"rmse", "abs_rel", "log10", "rmse_log", "sq_rel"}


@dataclasses.dataclass(frozen=True)
class Run:
  """One trained configuration: ``key`` names its folder and row."""

  key: str
  label: str
  preset: str
  semantics: str = "gt"


def _runs(n: int) -> list[Run]:
  return [
    Run("seg", "segmentation (predictor)", "seg"),
    Run("baseline", "baseline (l1)", "baseline"),
    Run(f"1hot{n}_gt", f"1hot-{n} (GT)", f"1hot{n}"),
    Run("2head", "2-head", "2head"),
    Run(f"1hot{n}_pred", f"1hot-{n} (pred.)", f"1hot{n}", "predicted"),
  ]


def _ensure_built(data_dir: str | None, shared: str) -> None:
  from semdepth_jax.train import loop

  loop.ensure_dataset(DATASET, data_dir, manual_dir=os.path.join(shared, SHARED_FOLDER))


def load_train_examples(data_dir: str | None, image_size: tuple[int, int]) -> list[dict]:
  """The train split as decoded examples, each resized once to cover ``image_size``."""
  from semdepth_jax.data import pipeline, transforms

  source = pipeline.open_source(DATASET, "train", data_dir)
  out = []
  for i in range(len(source)):
    ex = dict(source[i])
    out.append(transforms.resize_to_cover(ex, image_size))
  return out


def _components(config, examples):
  """The library's loop components with the training stream read from ``examples`` (no evaluation)."""
  from semdepth_jax.data import pipeline
  from semdepth_jax.train import loop

  comps = loop.default_components(config)
  augment = {k: v for k, v in config.augment.to_dict().items()}

  def train_iterator(batch_size, seed):
    ds = pipeline.train_dataset(
      examples,
      batch_size=batch_size,
      image_size=tuple(config.image_size),
      seed=seed,
      augment=augment,
      process_index=0,
      process_count=1,
    )
    return pipeline.to_iterator(ds, num_threads=0, prefetch=0)

  return dataclasses.replace(
    comps,
    train_iterator=train_iterator,
    num_train_examples=lambda: len(examples),
    make_evaluation=None,
  )


def _config(run: Run, args, seed: int, seg_workdir: str | None):
  from semdepth_jax.train import config_utils

  config_utils.ensure_configs_importable()
  import configs

  path = os.path.join(os.path.dirname(configs.__file__), "semantic_md.py")
  arg = f"model={run.preset},size={args.size},dataset={DATASET}"
  if args.steps:
    arg += f",steps={args.steps}"
  if run.semantics == "predicted":
    arg += f",semantics=predicted,seg_workdir={seg_workdir}"
  ov = [
    f"--config.seed={seed}",
    "--config.progress_bar=False",
    "--config.eval.split=",
    f"--config.image_size=({args.image_size[0]}, {args.image_size[1]})",
    "--config.checkpoint.async_save=False",
  ]
  if args.data_dir:
    ov.append(f"--config.data_dir={args.data_dir}")
  return config_utils.load_config(f"{path}:{arg}", ov)


def r3_metrics(config, workdir: str, semantic_source: dict | None = None) -> dict[str, float]:
  """R3-protocol depth metrics of a workdir on the validation split at the model input (R3's setting).

  Images and ground truth are cover-resized and centre-cropped to ``config.image_size`` (R3 resizes
  HyperSim to 342x256 and centre-crops 256x256), predictions decoded to metres by the model's ``decode``
  and scored by ``metrics.ProtocolEvaluator('r3_semantic_md')``. ``semantic_source`` overrides the model's
  source (evaluate a ground-truth-trained model on predictions).
  """
  import jax

  from semdepth_jax import metrics, predict
  from semdepth_jax.data import pipeline

  cfg = config
  if semantic_source is not None:
    cfg = _with_source(config, semantic_source)
  trained = predict.load_trained(workdir, config=cfg)
  inference = predict.InferenceModel(trained.model, input_size=tuple(cfg.image_size))
  apply = jax.jit(inference.dense)
  ev = metrics.ProtocolEvaluator("r3_semantic_md")
  it = pipeline.make_eval_iterator(
    DATASET,
    data_dir=cfg.data_dir or None,
    split="validation",
    batch_size=8,
    image_size=tuple(cfg.image_size),
    mode="cover_crop",
    num_threads=0,
    prefetch=0,
  )
  for batch in it:
    labels = batch["segmentation"] if inference.pass_labels else None
    pred = apply(trained.variables, batch["image"], labels)
    ev.add(np.asarray(pred["depth"]), batch["depth"], batch["mask"])
  res = ev.result()
  return {k: float(res[k]) for k in R3_KEYS}


def _with_source(config, source: dict):
  import ml_collections

  from semdepth_jax.train import config_utils

  d = config_utils.to_dict(config)
  d["model"]["semantic_source"] = {**d["model"].get("semantic_source", {}), **source}
  return ml_collections.ConfigDict(d)


def standard_metrics(config, workdir: str, semantic_source: dict | None = None) -> dict:
  """Standard protocol through the library's evaluation path, with the mean-depth baseline."""
  from semdepth_jax import evaluate, quickstart

  if semantic_source is None:
    res = quickstart.evaluate_with_baselines(config, workdir, split="validation")
    return {"model": res["model"], "baseline": res["baseline"]}
  report = evaluate.evaluate_workdir(
    workdir,
    config=_with_source(config, semantic_source),
    split="validation",
    data_dir=config.data_dir or None,
    write=False,
  )
  return {"model": evaluate.report_scalars(report)}


def run_one(run: Run, args, seed: int, examples) -> dict:
  """Trains one run (or reuses it) and scores it; returns its results."""
  from semdepth_jax.train import loop

  workdir = os.path.join(args.root, run.key, f"seed{seed}")
  done = os.path.join(workdir, "compare_results.json")
  seg_workdir = os.path.join(args.root, "seg", f"seed{seed}")
  config = _config(run, args, seed, seg_workdir)
  pred = {"source": "predicted", "workdir": seg_workdir}
  on_pred = run.semantics == "gt" and run.key.startswith("1hot")
  if os.path.isfile(done):
    with open(done, encoding="utf-8") as f:
      out = json.load(f)
  else:
    t0 = time.perf_counter()
    result = loop.train(config, workdir, components=_components(config, examples))
    out = {"run": run.key, "seed": seed, "steps": result.step, "train_s": time.perf_counter() - t0}
    if run.preset != "seg":
      out["r3"] = r3_metrics(config, workdir)
    if on_pred:
      out["r3_on_pred"] = r3_metrics(config, workdir, pred)
  if not args.skip_standard and "standard" not in out:
    std = standard_metrics(config, workdir)
    out["standard"] = std["model"]
    out["standard_baseline"] = std["baseline"]
    if on_pred:
      out["standard_on_pred"] = standard_metrics(config, workdir, pred)["model"]
  with open(done, "w", encoding="utf-8") as f:
    json.dump(out, f, indent=2)
  return out


def _stats(values: list[float]) -> tuple[float, float]:
  a = np.asarray(values, np.float64)
  return float(a.mean()), float(a.std(ddof=1)) if len(a) > 1 else 0.0


def _better(a: float, b: float, key: str) -> bool:
  return a < b if key in LOWER_IS_BETTER else a > b


def summarise(results: dict[str, list[dict]], n: int) -> tuple[str, dict]:
  """Markdown tables and the claims (``results``: run key -> per-seed results)."""
  rows = []  # (label, per-seed r3 dicts, per-seed standard dicts)
  base_key, gt_key, pred_key = "baseline", f"1hot{n}_gt", f"1hot{n}_pred"
  for key, label, r3_field, std_field in (
    (base_key, "baseline (l1)", "r3", "standard"),
    (gt_key, f"1hot-{n} (GT)", "r3", "standard"),
    (pred_key, f"1hot-{n} (pred., trained on pred.)", "r3", "standard"),
    (gt_key, f"1hot-{n} (trained on GT, evaluated on pred.)", "r3_on_pred", "standard_on_pred"),
    ("2head", "2-head", "r3", "standard"),
  ):
    runs = results.get(key, [])
    if not runs or any(r3_field not in r for r in runs):
      continue  # not (yet) trained: the table shows what has finished
    std = [r[std_field] for r in runs] if all(std_field in r for r in runs) else None
    rows.append((label, [r[r3_field] for r in runs], std))
  seeds = len(results.get(base_key, []))
  lines = [
    f"R3 protocol (`r3_semantic_md`), {seeds} seeds, mean ± std:",
    "",
    "| model | " + " | ".join(R3_KEYS) + " |",
    "|---|" + "---|" * len(R3_KEYS),
  ]
  for label, r3, _ in rows:
    cells = [f"{m:.3f} ± {s:.3f}" for m, s in (_stats([r[k] for r in r3]) for k in R3_KEYS)]
    lines.append(f"| {label} | " + " | ".join(cells) + " |")
  base_std = next(
    (r["standard_baseline"] for runs in results.values() for r in runs if "standard_baseline" in r),
    None,
  )
  lines += [
    "",
    "Standard protocol (`semdepth_jax.evaluate`, replica/nyu40 validation at 680x1200, "
    "1e-3 < y < 10 m, per image), mean ± std:",
    "",
    "| model | " + " | ".join(STD_KEYS) + " |",
    "|---|" + "---|" * len(STD_KEYS),
  ]
  for label, _, std in rows:
    if std is None:
      lines.append(f"| {label} | " + " | ".join("not evaluated" for _ in STD_KEYS) + " |")
      continue
    cells = [f"{m:.3f} ± {s:.3f}" for m, s in (_stats([r[k] for r in std]) for k in STD_KEYS)]
    lines.append(f"| {label} | " + " | ".join(cells) + " |")
  if base_std is not None:
    lines.append(
      "| mean training depth (trivial) | "
      + " | ".join(f"{base_std[k]:.3f}" for k in STD_KEYS)
      + " |"
    )
  seg = [r for r in results.get("seg", []) if "standard" in r]
  if seg:
    m, s = _stats([r["standard"]["miou"] for r in seg])
    p, q = _stats([r["standard"]["pixel_acc"] for r in seg])
    lines.append(
      f"\nPredictor (model=seg) on validation: mIoU {m:.3f} ± {s:.3f}, pixel acc {p:.3f} ± {q:.3f}."
    )
  if results.get("2head") and all("standard" in r for r in results["2head"]):
    m, s = _stats([r["standard"]["miou"] for r in results["2head"]])
    lines.append(f"2-head semantic head on validation: mIoU {m:.3f} ± {s:.3f}.")

  claims = {}

  def compare(a_label, a, b, strict: bool):
    """Per metric: means better (or equal within 1 std for >=) and the count of seeds that agree."""
    out = {}
    for proto, a_runs, b_runs, keys in (
      ("r3", a[1], b[1], R3_KEYS),
      ("standard", a[2], b[2], STD_KEYS),
    ):
      if a_runs is None or b_runs is None:
        continue  # standard protocol not evaluated (--skip_standard)
      for k in keys:
        av, bv = [r[k] for r in a_runs], [r[k] for r in b_runs]
        (am, asd), (bm, bsd) = _stats(av), _stats(bv)
        wins = sum(_better(x, y, k) for x, y in zip(av, bv, strict=True))
        if strict:
          holds = _better(am, bm, k)
        else:
          holds = _better(am, bm, k) or abs(am - bm) <= max(asd, bsd)
        out[f"{proto}/{k}"] = {"holds": bool(holds), "seed_wins": f"{wins}/{len(av)}"}
    return out

  by_label = {r[0]: r for r in rows}
  base = by_label.get("baseline (l1)")
  others = [
    (f"{label} > baseline", label, True)
    for label in (
      f"1hot-{n} (GT)",
      f"1hot-{n} (pred., trained on pred.)",
      f"1hot-{n} (trained on GT, evaluated on pred.)",
    )
  ] + [("2-head >= baseline", "2-head", False)]
  for claim, label, strict in others:
    a = by_label.get(label)
    if base is None or a is None or len(a[1]) != len(base[1]):
      continue  # compared seed by seed: both need the same seeds
    claims[claim] = compare(label, a, base, strict=strict)
  lines += [
    "",
    "Claims (per metric: holds on the mean; seeds where the model beats the baseline):",
    "",
  ]
  for claim, per in claims.items():
    held = [k for k, v in per.items() if v["holds"]]
    lines.append(
      f"* **{claim}**: holds on {len(held)}/{len(per)} metrics ("
      + ", ".join(f"{k} {'yes' if v['holds'] else 'no'} [{v['seed_wins']}]" for k, v in per.items())
      + ")"
    )
  return "\n".join(lines) + "\n", claims


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--seeds", type=int, default=3)
  parser.add_argument("--size", default="tiny", choices=("tiny", "small"))
  parser.add_argument("--image_size", default="64,96", help="H,W (Replica is 680x1200)")
  parser.add_argument("--steps", type=int, default=0, help="batches per run (0 = the preset's)")
  parser.add_argument("--onehot", type=int, default=40, choices=(40, 20, 3))
  parser.add_argument("--root", default=os.path.join("runs", "semantic_md_compare"))
  parser.add_argument("--data_dir", default=None)
  parser.add_argument("--shared", default=os.path.join("..", "shared", "data"))
  parser.add_argument(
    "--skip_standard",
    action="store_true",
    help="R3 protocol only (at the model input; cheap); a later run without it adds the standard one",
  )
  parser.add_argument(
    "--summary_only",
    action="store_true",
    help="summarise the finished runs under --root, train none",
  )
  args = parser.parse_args(argv)
  args.image_size = tuple(int(v) for v in args.image_size.split(","))

  from semdepth_jax.train.cli import setup_logging

  setup_logging()
  if not args.summary_only:
    _ensure_built(args.data_dir, args.shared)
    examples = load_train_examples(args.data_dir, args.image_size)
  results: dict[str, list[dict]] = {}
  # Run by run (all seeds of one configuration, then the next): the predictor's seeds come first, and
  # seeds after the first reuse the compiled step from JAX's persistent cache when one is configured
  # (JAX_COMPILATION_CACHE_DIR). The summary is rewritten after every run.
  for run in _runs(args.onehot):
    for seed in range(args.seeds):
      if args.summary_only:
        done = os.path.join(args.root, run.key, f"seed{seed}", "compare_results.json")
        if not os.path.isfile(done):
          continue
        with open(done, encoding="utf-8") as f:
          res = json.load(f)
      else:
        res = run_one(run, args, seed, examples)
      results.setdefault(run.key, []).append(res)
      print(
        f"{run.label} seed {seed}: {res['steps']} steps, {res['train_s']:.0f}s; "
        + ", ".join(f"{k} {v:.3f}" for k, v in (res.get("r3") or res.get("standard", {})).items()),
        flush=True,
      )
      md = _write_summary(results, args)
  print(md)
  return 0


def _write_summary(results: dict[str, list[dict]], args) -> str:
  md, claims = summarise(results, args.onehot)
  os.makedirs(args.root, exist_ok=True)
  with open(os.path.join(args.root, "summary.json"), "w", encoding="utf-8") as f:
    json.dump({"results": results, "claims": claims, "args": vars(args)}, f, indent=2)
  with open(os.path.join(args.root, "summary.md"), "w", encoding="utf-8") as f:
    f.write(md)
  return md


if __name__ == "__main__":
  sys.exit(main())
