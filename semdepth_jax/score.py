r"""``semdepth score``: score saved predictions against ground truth with a named protocol.

Works on folders of files, so any model's outputs can be scored the same way::

  semdepth score --pred preds/ --gt nyu/joint --gt_pattern 'depth_gt_{stem}.png' --gt_scale 5000 \\
      --protocol nyu_eigen --out metrics.json
  semdepth score --pred_seg preds/ --gt_seg nyu/joint --gt_seg_pattern 'segm_gt_{stem}.png' \\
      --num_classes 40

File formats: depth as single-channel 8/16-bit PNG (metres = value / scale, ``--pred_scale`` /
``--gt_scale``, required when PNGs are read) or ``.npy`` float arrays in metres ((H, W), (H, W, 1) or
(1, H, W)); labels as single-channel (or palette) PNG or integer ``.npy``.

Stem matching rule: only ``*.png`` and ``*.npy`` files directly inside a folder are considered. A pattern
is a file-name template with exactly one ``{stem}`` and optional ``*`` wildcards (``.*`` = either
extension); each ground-truth file matching its pattern defines a stem, and its prediction is the first
of the prediction patterns (tried in the order given) that names an existing file with the same stem.
Defaults: ground truth ``{stem}.*``; depth predictions ``{stem}_depth.npy``, then ``{stem}_depth.png``
(so the output folder of ``semdepth predict``, which holds both, is scored from its float32 metres), then
``{stem}.*``; label predictions ``{stem}_seg.*`` then ``{stem}.*``. A ground-truth file without a prediction, two files with
the same stem, or an unreadable file is an error naming the file.

Predictions whose size differs from the ground truth are resized to it (bilinear for depth, nearest for
labels; ``metrics.resize_prediction``) and a note says how many were. Non-finite (NaN/inf) depth
predictions are scored as they are, counted (``nonfinite_values``, ``nonfinite_files``) and named in a note.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import pathlib
import re
import sys

import numpy as np

from semdepth_jax import metrics

_EXTS = (".png", ".npy")
DEFAULT_GT_PATTERN = "{stem}.*"
# ``semdepth predict`` writes both <stem>_depth.npy (float32 metres) and <stem>_depth.png (quantised): the
# exact one first.
DEFAULT_DEPTH_PRED_PATTERNS = ("{stem}_depth.npy", "{stem}_depth.png", "{stem}.*")
DEFAULT_SEG_PRED_PATTERNS = ("{stem}_seg.*", "{stem}.*")


class ScoreError(Exception):
  """A user-facing problem with the inputs of ``semdepth score`` (missing/unreadable files, bad args)."""


def add_parser(subparsers) -> argparse.ArgumentParser:
  """Registers the ``score`` sub-command on ``subparsers`` (see ``semdepth_jax.main``)."""
  p = subparsers.add_parser(
    "score",
    help="score saved predictions against ground truth with a named protocol",
    description=__doc__.split("\n\n")[0],
    epilog="Protocols: "
    + ", ".join(sorted(metrics.PROTOCOLS))
    + ". Crop presets: "
    + ", ".join(sorted(metrics.CROP_PRESETS))
    + ".",
  )
  d = p.add_argument_group("depth")
  d.add_argument("--pred", type=pathlib.Path, help="folder of depth predictions (.png / .npy)")
  d.add_argument("--gt", type=pathlib.Path, help="folder of ground-truth depth (.png / .npy)")
  d.add_argument(
    "--pred_scale",
    type=float,
    help="PNG predictions: metres = value / pred_scale (default: the PNG's depth_scale chunk)",
  )
  d.add_argument("--gt_scale", type=float, help="PNG ground truth: metres = value / gt_scale")
  d.add_argument(
    "--pred_pattern",
    action="append",
    help=f"prediction file template with {{stem}}; repeatable (default {DEFAULT_DEPTH_PRED_PATTERNS})",
  )
  d.add_argument(
    "--gt_pattern", default=DEFAULT_GT_PATTERN, help="ground-truth template (default %(default)s)"
  )
  d.add_argument(
    "--protocol", help="depth protocol name (default: standard, or --dataset's settings)"
  )
  d.add_argument("--crop", help="override the crop: preset name, 'top,bottom,left,right' or 'none'")
  d.add_argument("--min_depth", type=float, help="override the protocol's min_depth (metres)")
  d.add_argument("--max_depth", type=float, help="override the protocol's max_depth (metres)")
  d.add_argument(
    "--norm_m",
    type=float,
    help="paper 000 protocols: inputs are metres, converted to inverted normalised depth with this norm",
  )
  s = p.add_argument_group("segmentation")
  s.add_argument("--pred_seg", type=pathlib.Path, help="folder of predicted label maps")
  s.add_argument("--gt_seg", type=pathlib.Path, help="folder of ground-truth label maps")
  s.add_argument(
    "--pred_seg_pattern",
    action="append",
    help=f"prediction label template; repeatable (default {DEFAULT_SEG_PRED_PATTERNS})",
  )
  s.add_argument(
    "--gt_seg_pattern",
    default=DEFAULT_GT_PATTERN,
    help="ground-truth template (default %(default)s)",
  )
  s.add_argument("--num_classes", type=int, help="number of classes C (labels 0..C-1)")
  s.add_argument("--ignore_index", type=int, help="ignored ground-truth label (default 255)")
  p.add_argument(
    "--dataset",
    help="dataset meta name (semdepth_jax.data.meta): default num_classes, ignore_index and depth "
    "protocol (its min/max depth and eval crop, per image)",
  )
  p.add_argument("--out", type=pathlib.Path, help="write the metrics as JSON here")
  p.set_defaults(func=run)
  return p


def run(args: argparse.Namespace) -> int:
  """Handler of ``semdepth score``; returns 0 on success, 2 on a user error (message on stderr)."""
  try:
    report = score(args)
  except (ScoreError, KeyError, ValueError) as e:
    msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
    print(f"semdepth score: error: {msg}", file=sys.stderr)
    return 2
  print(format_report(report))
  if args.out is not None:
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(_jsonable(report), indent=2) + "\n")
    print(f"wrote {args.out}")
  return 0


def score(args: argparse.Namespace) -> dict:
  """Scores the folders named in ``args``; returns ``{"depth": ..., "segmentation": ..., "notes": [...]}``.

  Raises:
    ScoreError: missing arguments, missing counterpart files, unreadable files, bad label values.
    KeyError: unknown protocol / crop preset / dataset.
  """
  want_depth = args.pred is not None or args.gt is not None
  want_seg = args.pred_seg is not None or args.gt_seg is not None
  if not want_depth and not want_seg:
    raise ScoreError(
      "nothing to score: give --pred and --gt (depth) and/or --pred_seg and --gt_seg"
    )
  meta = None
  if args.dataset:
    from semdepth_jax.data import meta as meta_lib

    meta = meta_lib.get_meta(args.dataset)
  report: dict = {"notes": []}
  if want_depth:
    if args.pred is None or args.gt is None:
      raise ScoreError("depth scoring needs both --pred and --gt")
    report["depth"] = _score_depth(args, meta, report["notes"])
  if want_seg:
    if args.pred_seg is None or args.gt_seg is None:
      raise ScoreError("segmentation scoring needs both --pred_seg and --gt_seg")
    report["segmentation"] = _score_seg(args, meta, report["notes"])
  return report


# ---------------------------------------------------------------------------------------------------------
# File matching and reading.
# ---------------------------------------------------------------------------------------------------------
def _pattern_regex(pattern: str) -> re.Pattern:
  if pattern.count("{stem}") != 1:
    raise ScoreError(f"file pattern {pattern!r} must contain exactly one '{{stem}}'")
  head, tail = pattern.split("{stem}")

  def lit(s: str) -> str:
    return ".*".join(re.escape(part) for part in s.split("*"))

  return re.compile("^" + lit(head) + "(?P<stem>.+)" + lit(tail) + "$")


def _list_files(folder: pathlib.Path, what: str) -> list[pathlib.Path]:
  if not folder.is_dir():
    raise ScoreError(f"{what} folder {folder} does not exist or is not a directory")
  return sorted(f for f in folder.iterdir() if f.is_file() and f.suffix.lower() in _EXTS)


def _stems(folder: pathlib.Path, pattern: str, what: str) -> dict[str, pathlib.Path]:
  regex = _pattern_regex(pattern)
  out: dict[str, pathlib.Path] = {}
  for f in _list_files(folder, what):
    m = regex.match(f.name)
    if not m:
      continue
    stem = m.group("stem")
    if stem in out:
      raise ScoreError(
        f"two {what} files have the stem {stem!r} under {pattern!r}: {out[stem]} and {f}"
      )
    out[stem] = f
  return out


def match_files(
  pred_dir: pathlib.Path,
  gt_dir: pathlib.Path,
  gt_pattern: str,
  pred_patterns: tuple[str, ...] | list[str],
) -> tuple[list[tuple[str, pathlib.Path, pathlib.Path]], int]:
  """Pairs ground-truth files with predictions by stem (rule in the module docstring).

  Returns:
    (pairs, unmatched_predictions): ``(stem, pred_path, gt_path)`` sorted by stem, and the number of
    prediction files that no ground-truth file used.

  Raises:
    ScoreError: no ground-truth file matches, a ground-truth file has no prediction, duplicate stems.
  """
  gts = _stems(gt_dir, gt_pattern, "ground-truth")
  if not gts:
    raise ScoreError(
      f"no .png/.npy file in {gt_dir} matches the ground-truth pattern {gt_pattern!r}"
    )
  pred_files = _list_files(pred_dir, "prediction")
  by_pattern = [(pat, _pattern_regex(pat)) for pat in pred_patterns]
  # Per pattern: stem -> every file it names. Two files under one pattern are an error only when that
  # pattern is the one a ground-truth stem is paired through.
  index: list[tuple[str, dict[str, list[pathlib.Path]]]] = []
  for pat, regex in by_pattern:
    found: dict[str, list[pathlib.Path]] = {}
    for f in pred_files:
      m = regex.match(f.name)
      if m:
        found.setdefault(m.group("stem"), []).append(f)
    index.append((pat, found))
  pairs, used = [], set()
  for stem in sorted(gts):
    hit = next(((pat, found[stem]) for pat, found in index if stem in found), None)
    if hit is None:
      raise ScoreError(
        f"no prediction for ground-truth file {gts[stem]} (stem {stem!r}) in {pred_dir}; tried "
        f"patterns {list(pred_patterns)}"
      )
    pat, files = hit
    if len(files) > 1:
      raise ScoreError(
        f"two prediction files have the stem {stem!r} under {pat!r}: {files[0]} and {files[1]}"
      )
    pred = files[0]
    pairs.append((stem, pred, gts[stem]))
    used.add(pred)
  return pairs, len(set(pred_files) - used)


def _read_array(path: pathlib.Path) -> np.ndarray:
  try:
    if path.suffix.lower() == ".npy":
      arr = np.load(path, allow_pickle=False)
    else:
      from PIL import Image

      with Image.open(path) as im:
        arr = np.array(im)
  except Exception as e:  # noqa: BLE001 (any decoder failure is reported with the file name)
    raise ScoreError(f"cannot read {path}: {type(e).__name__}: {e}") from e
  if arr.ndim == 3 and arr.shape[-1] == 1:
    arr = arr[..., 0]
  elif arr.ndim == 3 and arr.shape[0] == 1:
    arr = arr[0]
  if arr.ndim != 2:
    raise ScoreError(
      f"{path}: expected a single-channel (H, W) map, got an array of shape {arr.shape}"
    )
  return arr


def png_depth_scale(path: pathlib.Path) -> float | None:
  """The ``depth_scale`` text chunk that ``semdepth predict`` writes into its depth PNGs, or None."""
  from PIL import Image

  try:
    with Image.open(path) as im:
      value = getattr(im, "text", {}).get("depth_scale")
    return float(value) if value else None
  except (OSError, ValueError):
    return None


def read_depth(path: pathlib.Path, scale: float | None, what: str) -> np.ndarray:
  """Reads a depth map as float32 metres (PNG: value / scale; .npy: as stored).

  A PNG without an explicit ``scale`` uses its ``depth_scale`` text chunk (``semdepth predict``'s PNGs).

  Raises:
    ScoreError: unreadable file, wrong shape, PNG without a scale.
  """
  arr = _read_array(path)
  if path.suffix.lower() == ".png":
    if scale is None:
      scale = png_depth_scale(path)
    if scale is None:
      raise ScoreError(
        f"{path} is a PNG: give --{what}_scale (metres = value / scale; e.g. 5000 for NYU, 256 for "
        "KITTI, 1000 for millimetres)"
      )
    return arr.astype(np.float32) / np.float32(scale)
  if not np.issubdtype(arr.dtype, np.number):
    raise ScoreError(f"{path}: expected a numeric depth array, got dtype {arr.dtype}")
  return arr.astype(np.float32)


def read_labels(path: pathlib.Path) -> np.ndarray:
  """Reads a label map as int32 (PNG palette/grey indices or integer .npy).

  Raises:
    ScoreError: unreadable file, wrong shape or a non-integer array.
  """
  arr = _read_array(path)
  if not np.issubdtype(arr.dtype, np.integer) and arr.dtype != bool:
    raise ScoreError(f"{path}: expected integer labels, got dtype {arr.dtype}")
  return arr.astype(np.int32)


# ---------------------------------------------------------------------------------------------------------
# Scoring.
# ---------------------------------------------------------------------------------------------------------
def _parse_crop(text: str):
  if text.lower() == "none":
    return None
  if text in metrics.CROP_PRESETS:
    return text
  try:
    vals = tuple(int(v) for v in text.split(","))
  except ValueError:
    vals = ()
  if len(vals) != 4:
    raise ScoreError(
      f"--crop must be a preset ({', '.join(sorted(metrics.CROP_PRESETS))}), 'none' or "
      f"'top,bottom,left,right', got {text!r}"
    )
  return vals


def _protocol(args, meta) -> metrics.Protocol:
  if args.protocol:
    proto = metrics.get_protocol(args.protocol)
  elif meta is not None:
    proto = metrics.dataset_protocol(meta)
  else:
    proto = metrics.get_protocol("standard")
  changes = {}
  if args.crop is not None:
    changes["crop"] = _parse_crop(args.crop)
  if args.min_depth is not None:
    changes["min_depth"] = args.min_depth
  if args.max_depth is not None:
    changes["max_depth"] = args.max_depth
  if changes:
    if proto.kind != "standard":
      raise ScoreError(
        f"--crop/--min_depth/--max_depth cannot change protocol {proto.name!r}: it reproduces a fixed "
        "script"
      )
    if ("min_depth" in changes or "max_depth" in changes) and proto.clip is not None:
      changes["clip"] = None  # clamp follows the new range.
    proto = dataclasses.replace(proto, name=proto.name + "+overrides", **changes)
  return proto


def _score_depth(args, meta, notes: list[str]) -> dict:
  proto = _protocol(args, meta)
  pairs, unmatched = match_files(
    args.pred, args.gt, args.gt_pattern, tuple(args.pred_pattern or DEFAULT_DEPTH_PRED_PATTERNS)
  )
  ev = metrics.ProtocolEvaluator(proto, norm_m=args.norm_m)
  resized = 0
  # prediction file -> NaN/inf values (they reach the metrics as NaN/inf).
  nonfinite: dict[str, int] = {}
  for _, pred_path, gt_path in pairs:
    gt = read_depth(gt_path, args.gt_scale, "gt")
    pred = read_depth(pred_path, args.pred_scale, "pred")
    bad = int(np.size(pred) - np.count_nonzero(np.isfinite(pred)))
    if bad:
      nonfinite[str(pred_path)] = bad
    if pred.shape != gt.shape:
      pred = proto.resize_prediction(
        pred, gt.shape
      )  # the protocol's rule (half-pixel / align-corners)
      resized += 1
    ev.add(pred[None], gt[None])
  if resized:
    notes.append(
      f"depth: {resized} prediction(s) resized ({proto.resize}) to the ground-truth size"
    )
  if unmatched:
    notes.append(
      f"depth: {unmatched} prediction file(s) in {args.pred} had no ground truth (ignored)"
    )
  if nonfinite:
    worst = max(nonfinite, key=nonfinite.get)
    notes.append(
      f"depth: {len(nonfinite)} prediction file(s) hold {sum(nonfinite.values())} non-finite value(s) "
      f"(NaN/inf; expected finite metres), most in {worst} ({nonfinite[worst]}); they are scored as "
      "they are, so the metrics can be inf/NaN"
    )
  result = ev.result()
  result["nonfinite_values"] = sum(nonfinite.values())
  result["nonfinite_files"] = sorted(nonfinite)
  result["description"] = proto.description
  result["reproduces"] = proto.reproduces
  result["files"] = len(pairs)
  result["metric_keys"] = list(proto.metric_keys)
  return result


def _score_seg(args, meta, notes: list[str]) -> dict:
  num_classes = args.num_classes if args.num_classes is not None else (meta and meta.num_classes)
  if not num_classes:
    raise ScoreError("segmentation scoring needs --num_classes (or --dataset)")
  ignore = args.ignore_index
  if ignore is None:
    ignore = meta.ignore_index if meta is not None else 255
  pairs, unmatched = match_files(
    args.pred_seg,
    args.gt_seg,
    args.gt_seg_pattern,
    tuple(args.pred_seg_pattern or DEFAULT_SEG_PRED_PATTERNS),
  )
  import jax

  acc = metrics.SegAccumulator(num_classes=int(num_classes), ignore_index=int(ignore))
  update = jax.jit(acc.update)
  state = acc.init()
  resized = 0
  for _, pred_path, gt_path in pairs:
    gt = read_labels(gt_path)
    bad = (gt != ignore) & ((gt < 0) | (gt >= num_classes))
    if bad.any():
      raise ScoreError(
        f"{gt_path}: ground-truth labels {sorted(np.unique(gt[bad]).tolist())[:10]} are outside "
        f"0..{num_classes - 1} and not the ignore index {ignore}"
      )
    pred = read_labels(pred_path)
    if pred.shape != gt.shape:
      pred = metrics.resize_prediction(pred, gt.shape, method="nearest")
      resized += 1
    state = update(state, pred[None], gt[None])
  if resized:
    notes.append(
      f"segmentation: {resized} prediction(s) resized (nearest) to the ground-truth size"
    )
  if unmatched:
    notes.append(
      f"segmentation: {unmatched} prediction file(s) in {args.pred_seg} had no ground truth (ignored)"
    )
  out = acc.finish(state)
  if out["num_invalid_pred"]:
    notes.append(
      f"segmentation: {out['num_invalid_pred']} predicted label(s) outside 0..{num_classes - 1} "
      "counted as wrong"
    )
  out["num_classes"] = int(num_classes)
  out["ignore_index"] = int(ignore)
  out["files"] = len(pairs)
  return out


# ---------------------------------------------------------------------------------------------------------
# Output.
# ---------------------------------------------------------------------------------------------------------
def _jsonable(x):
  if isinstance(x, dict):
    return {str(k): _jsonable(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [_jsonable(v) for v in x]
  if isinstance(x, np.ndarray):
    return _jsonable(x.tolist())
  if isinstance(x, (np.integer,)):
    return int(x)
  if isinstance(x, (float, np.floating)):
    x = float(x)
    return x if math.isfinite(x) else None
  return x


def format_report(report: dict) -> str:
  """Human-readable table of a ``score`` report."""
  lines = []
  if "depth" in report:
    d = report["depth"]
    lines.append(
      f"depth: protocol {d['protocol']} ({d['averaging']}), {d['files']} file(s), "
      f"{d['num_images']} image(s) with valid pixels"
    )
    for key in d["metric_keys"]:
      lines.append(f"  {key:<16s} {d[key]:.6g}")
  if "segmentation" in report:
    s = report["segmentation"]
    lines.append(
      f"segmentation: {s['num_classes']} classes, ignore {s['ignore_index']}, {s['files']} file(s), "
      f"{s['num_pixels']} pixels"
    )
    for key in metrics.SEG_METRIC_KEYS:
      lines.append(f"  {key:<16s} {s[key]:.6g}")
  for note in report.get("notes", []):
    lines.append(f"note: {note}")
  return "\n".join(lines)
