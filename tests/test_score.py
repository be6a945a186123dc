"""Tests of the ``semdepth score`` command (semdepth_jax.score) through semdepth_jax.main.main."""

import json
import math

import numpy as np
import pytest
from PIL import Image

from semdepth_jax.main import main


def ref_standard(preds, gts, *, min_depth=1e-3, max_depth=None, crop=None):
  """Per-image mean of abs_rel, rmse, delta1, log10, silog (numpy, float64), from model_spec §8.1."""
  hi = np.inf if max_depth is None else max_depth
  vals = {"abs_rel": [], "rmse": [], "delta1": [], "log10": [], "silog": [], "rmse_log": []}
  for p, g in zip(preds, gts, strict=True):
    p = np.asarray(p, np.float64)
    g = np.asarray(g, np.float64)
    keep = np.zeros(g.shape, bool)
    if crop is None:
      keep[:] = True
    else:
      keep[crop[0] : crop[1], crop[2] : crop[3]] = True
    v = keep & (g > min_depth) & (g < hi)
    if not v.any():
      continue
    y, x = g[v], np.clip(p[v], min_depth, hi)
    e = np.log(x) - np.log(y)
    vals["abs_rel"].append(np.mean(np.abs(x - y) / y))
    vals["rmse"].append(np.sqrt(np.mean((x - y) ** 2)))
    vals["delta1"].append(np.mean(np.maximum(x / y, y / x) < 1.25))
    vals["log10"].append(np.mean(np.abs(np.log10(x) - np.log10(y))))
    vals["silog"].append(100 * np.sqrt(np.mean(e**2) - np.mean(e) ** 2))
    vals["rmse_log"].append(np.sqrt(np.mean(e**2)))
  return {k: float(np.mean(v)) for k, v in vals.items()}


def write_png16(path, arr):
  Image.fromarray(np.asarray(arr, np.uint16)).save(path)


@pytest.fixture()
def depth_dirs(tmp_path):
  rng = np.random.default_rng(0)
  gt_dir, pred_dir = tmp_path / "gt", tmp_path / "pred"
  gt_dir.mkdir()
  pred_dir.mkdir()
  gts, preds = [], []
  for i, stem in enumerate(["a", "b", "c"]):
    mm = rng.integers(500, 9000, (6, 8))
    mm[rng.random((6, 8)) < 0.2] = 0
    write_png16(gt_dir / f"{stem}.png", mm)
    gts.append(mm / 1000.0)
    if i == 0:  # <stem>_depth.npy, metres.
      p = (mm / 1000.0 * rng.uniform(0.8, 1.2, mm.shape)).astype(np.float32)
      np.save(pred_dir / f"{stem}_depth.npy", p)
    elif i == 1:  # <stem>.png, millimetres.
      pmm = np.clip(mm * 1.1 + 100, 0, 65535).astype(np.uint16)
      write_png16(pred_dir / f"{stem}.png", pmm)
      p = pmm / 1000.0
    else:  # smaller constant map: resized (bilinear) to 6x8, stays 2.0 m.
      np.save(pred_dir / f"{stem}.npy", np.full((3, 4), 2.0, np.float32))
      p = np.full((6, 8), 2.0)
    preds.append(p)
  return gt_dir, pred_dir, preds, gts


def test_score_depth_folders_against_reference(depth_dirs, tmp_path, capsys):
  gt_dir, pred_dir, preds, gts = depth_dirs
  out = tmp_path / "m.json"
  rc = main([
    "score", "--pred", str(pred_dir), "--gt", str(gt_dir), "--gt_scale", "1000",
    "--pred_scale", "1000", "--out", str(out),
  ])  # fmt: skip
  assert rc == 0
  report = json.loads(out.read_text())
  d = report["depth"]
  assert d["protocol"] == "standard" and d["averaging"] == "per_image"
  assert d["files"] == 3 and d["num_images"] == 3
  want = ref_standard(preds, gts)
  for k, v in want.items():
    assert d[k] == pytest.approx(v, rel=1e-4), k
  assert any("1 prediction(s) resized" in n for n in report["notes"])
  printed = capsys.readouterr().out
  assert "abs_rel" in printed and "protocol standard" in printed


def test_score_protocol_crop_and_overrides(depth_dirs, tmp_path):
  gt_dir, pred_dir, preds, gts = depth_dirs
  out = tmp_path / "m.json"
  args = ["score", "--pred", str(pred_dir), "--gt", str(gt_dir), "--gt_scale", "1000"]
  args += ["--pred_scale", "1000", "--crop", "1,5,2,7", "--max_depth", "6", "--out", str(out)]
  assert main(args) == 0
  d = json.loads(out.read_text())["depth"]
  want = ref_standard(preds, gts, max_depth=6.0, crop=(1, 5, 2, 7))
  for k, v in want.items():
    assert d[k] == pytest.approx(v, rel=1e-4), k
  # Paper protocols reproduce fixed scripts: no overrides.
  assert main(args[:-2] + ["--protocol", "r0_ssegdepnet"]) == 2
  args = ["score", "--pred", str(pred_dir), "--gt", str(gt_dir), "--gt_scale", "1000"]
  args += ["--pred_scale", "1000", "--protocol", "kitti_benchmark", "--out", str(out)]
  assert main(args) == 0
  d = json.loads(out.read_text())["depth"]
  assert set(d["metric_keys"]) == {"silog", "sq_error_rel", "abs_error_rel", "irmse"}
  assert d["silog"] == pytest.approx(ref_standard(preds, gts, min_depth=0.0)["silog"], rel=1e-4)


def test_score_segmentation(tmp_path):
  gt_dir, pred_dir = tmp_path / "gt", tmp_path / "pred"
  gt_dir.mkdir()
  pred_dir.mkdir()
  gt = np.array([[0, 0, 1], [1, 2, 255], [2, 2, 0]], np.uint8)
  pred = np.array([[0, 1, 1], [1, 2, 0], [0, 2, 2]], np.int64)
  Image.fromarray(gt).save(gt_dir / "segm_gt_x.png")
  np.save(pred_dir / "x_seg.npy", pred)
  out = tmp_path / "s.json"
  rc = main([
    "score", "--pred_seg", str(pred_dir), "--gt_seg", str(gt_dir), "--gt_seg_pattern",
    "segm_gt_{stem}.png", "--num_classes", "3", "--out", str(out),
  ])  # fmt: skip
  assert rc == 0
  s = json.loads(out.read_text())["segmentation"]
  # Valid (gt, pred): (0,0) (0,1) (1,1) (1,1) (2,2) (2,0) (2,2) (0,2): 5 of 8 correct.
  assert s["pixel_acc"] == pytest.approx(5 / 8)
  # IoU: class 0: 1 / (3 + 2 - 1); class 1: 2 / (2 + 3 - 2); class 2: 2 / (3 + 3 - 2).
  assert s["miou"] == pytest.approx((1 / 4 + 2 / 3 + 2 / 4) / 3)
  assert s["confusion_matrix"] == [[1, 1, 1], [0, 2, 0], [1, 0, 2]]


def test_score_real_dataset_meta_and_label_errors(tmp_path, capsys):
  gt_dir, pred_dir = tmp_path / "gt", tmp_path / "pred"
  gt_dir.mkdir()
  pred_dir.mkdir()
  Image.fromarray(np.array([[0, 50]], np.uint8)).save(gt_dir / "x.png")
  np.save(pred_dir / "x.npy", np.array([[0, 1]], np.int32))
  args = ["score", "--pred_seg", str(pred_dir), "--gt_seg", str(gt_dir), "--num_classes", "40"]
  assert main(args) == 2
  err = capsys.readouterr().err
  assert "x.png" in err and "[50]" in err
  assert main(args[:-2] + ["--dataset", "camvid"]) == 2  # 11 classes: 50 is still out of range.


def test_score_errors_name_the_file(depth_dirs, capsys):
  gt_dir, pred_dir, _, _ = depth_dirs
  base = ["score", "--pred", str(pred_dir), "--gt", str(gt_dir), "--pred_scale", "1000"]
  assert main(base) == 2
  err = capsys.readouterr().err
  assert "--gt_scale" in err and ".png" in err
  (pred_dir / "b.png").unlink()
  assert main(base + ["--gt_scale", "1000"]) == 2
  err = capsys.readouterr().err
  assert "b.png" in err and "no prediction" in err
  (pred_dir / "b.npy").write_bytes(b"not an npy file")
  assert main(base + ["--gt_scale", "1000"]) == 2
  err = capsys.readouterr().err
  assert "b.npy" in err and "cannot read" in err
  assert main(base + ["--gt_scale", "1000", "--protocol", "nope"]) == 2
  assert "nyu_eigen" in capsys.readouterr().err
  assert main(["score"]) == 2
  assert "nothing to score" in capsys.readouterr().err


def test_score_help():
  with pytest.raises(SystemExit) as e:
    main(["score", "--help"])
  assert e.value.code == 0


@pytest.mark.real_data
def test_score_real_nyu_frames_nyu_eigen(shared_data, tmp_path):
  joint = shared_data / "nyu_depth_v2_samples" / "joint"
  files = sorted(joint.glob("depth_gt_*.png"))
  assert len(files) == 2
  pred_dir = tmp_path / "pred"
  pred_dir.mkdir()
  preds, gts = [], []
  for f in files:
    raw = np.array(Image.open(f))
    assert raw.dtype == np.uint16 and raw.shape == (480, 640)
    gt = raw.astype(np.float64) / 5000.0
    noise = 0.05 * np.sin(np.arange(gt.size).reshape(gt.shape) * 0.37)  # deterministic.
    pred = (gt * 1.1 + noise).astype(np.float32)
    np.save(pred_dir / f"{f.stem[len('depth_gt_') :]}.npy", pred)
    preds.append(pred)
    gts.append(gt)
  out = tmp_path / "nyu.json"
  rc = main([
    "score", "--pred", str(pred_dir), "--gt", str(joint), "--gt_pattern", "depth_gt_{stem}.png",
    "--gt_scale", "5000", "--protocol", "nyu_eigen", "--out", str(out),
  ])  # fmt: skip
  assert rc == 0
  d = json.loads(out.read_text())["depth"]
  assert d["protocol"] == "nyu_eigen" and d["num_images"] == 2
  want = ref_standard(preds, gts, max_depth=10.0, crop=(45, 471, 41, 601))
  for k, v in want.items():
    assert d[k] == pytest.approx(v, rel=1e-4), k
  assert 0.09 < d["abs_rel"] < 0.12 and math.isfinite(d["silog"])


def test_score_prefers_predicts_float_depth_over_its_png(tmp_path, capsys):
  # `semdepth predict` writes <stem>_depth.npy (metres) and <stem>_depth.png (quantised) side by side; the
  # default patterns score the .npy. The PNG here is deliberately wrong (all 1 m) to tell them apart.
  gt_dir, pred_dir = tmp_path / "gt", tmp_path / "pred"
  gt_dir.mkdir()
  pred_dir.mkdir()
  gt = np.full((4, 6), 2000, np.uint16)
  write_png16(gt_dir / "f.png", gt)
  np.save(pred_dir / "f_depth.npy", np.full((4, 6), 2.5, np.float32))
  write_png16(pred_dir / "f_depth.png", np.full((4, 6), 1000, np.uint16))
  out = tmp_path / "m.json"
  argv = ["score", "--pred", str(pred_dir), "--gt", str(gt_dir), "--gt_scale", "1000"]
  assert main([*argv, "--pred_scale", "1000", "--out", str(out)]) == 0
  assert json.loads(out.read_text())["depth"]["abs_rel"] == pytest.approx(0.25)


def test_score_resizes_with_the_protocols_rule(tmp_path):
  """2x2 -> 4x4: align-corners samples rows/columns at 0, 1/3, 2/3, 1; half-pixel at 0, 1/4, 3/4, 1."""
  gt_dir, pred_dir = tmp_path / "gt", tmp_path / "pred"
  gt_dir.mkdir()
  pred_dir.mkdir()
  np.save(gt_dir / "a.npy", np.full((4, 4), 5.0, np.float32))
  np.save(pred_dir / "a.npy", np.array([[1.0, 2.0], [3.0, 4.0]], np.float32))
  # p = 1 + u + 2 v with u, v the sample positions; mean 2.5 on both grids, so the squared error to 5 m
  # is 2.5^2 + var(u) + 4 var(v): var = 5/36 (align corners) or 5/32 (half-pixel).
  want = {"nyu_eigen_ac": math.sqrt(6.25 + 25 / 36), "standard": math.sqrt(6.25 + 25 / 32)}
  for proto, rmse in want.items():
    out = tmp_path / f"{proto}.json"
    rc = main([
      "score", "--pred", str(pred_dir), "--gt", str(gt_dir), "--gt_pattern", "{stem}.npy",
      "--pred_pattern", "{stem}.npy", "--protocol", proto, "--crop", "none", "--out", str(out),
    ])  # fmt: skip
    assert rc == 0
    report = json.loads(out.read_text())
    assert report["depth"]["rmse"] == pytest.approx(rmse, rel=1e-5), proto
    assert report["depth"]["abs_rel"] == pytest.approx(0.5, rel=1e-5), proto
