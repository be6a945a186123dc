"""benchmarks/sid_vs_regression.py: paired seed statistics (hand values) and the KITTI frame reader's errors."""

import importlib.util
import os

import numpy as np
import pytest
from PIL import Image

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def bench():
  path = os.path.join(REPO, "benchmarks", "sid_vs_regression.py")
  spec = importlib.util.spec_from_file_location("sid_vs_regression", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _run(rmse, delta1):
  metrics = {k: 0.0 for k in ("abs_rel", "sq_rel", "rmse_log", "silog", "delta2", "delta3")}
  return {
    "model": {**metrics, "rmse": rmse, "delta1": delta1},
    "baseline": {**metrics, "rmse": 9.0, "delta1": 0.1},
  }


def test_paired_differences_hand_values(bench):
  runs = {
    "sid": [_run(5.0, 0.7), _run(6.0, 0.8), _run(7.0, 0.6)],
    "regression": [_run(6.0, 0.6), _run(6.5, 0.7), _run(6.5, 0.7)],
  }
  rows, pairs = bench.summarise(runs)
  row = next(r for r in rows if (r["model"], r["metric"]) == ("sid", "rmse"))
  assert row["mean"] == pytest.approx(6.0) and row["std"] == pytest.approx(
    1.0
  )  # sample std of 5, 6, 7
  assert row["baseline"] == 9.0
  rmse = next(p for p in pairs if p["metric"] == "rmse")
  # sid - regression = -1, -0.5, +0.5: mean -1/3, sample std sqrt(((2/3)^2 + (1/6)^2 + (5/6)^2) / 2).
  assert rmse["diff_mean"] == pytest.approx(-1 / 3)
  assert rmse["diff_std"] == pytest.approx(np.sqrt((4 / 9 + 1 / 36 + 25 / 36) / 2))
  assert rmse["seeds_cls_better"] == 2 and rmse["seeds"] == 3
  assert not rmse["cls_better"] and not rmse["cls_worse"]  # |mean| 0.33 < std 0.76
  d1 = next(p for p in pairs if p["metric"] == "delta1")
  # +0.1, +0.1, -0.1 (higher is better): mean 1/30, std 0.115: no clear difference; 2 of 3 better.
  assert d1["seeds_cls_better"] == 2 and not d1["cls_better"]
  md = bench.markdown(rows, pairs, "header")
  assert "| rmse | -0.333 ± 0.764 | 2 / 3 | sid no clear difference |" in md


def test_kitti_frames_reads_sparse_depth_and_names_bad_files(bench, tmp_path):
  (tmp_path / "rgb").mkdir()
  (tmp_path / "depth").mkdir()
  Image.fromarray(np.zeros((4, 6, 3), np.uint8)).save(tmp_path / "rgb" / "a.png")
  with pytest.raises(FileNotFoundError, match=r"depth/a\.png: missing depth png for rgb/a\.png"):
    bench.kitti_frames(str(tmp_path))
  Image.fromarray(np.zeros((4, 6), np.uint8)).save(tmp_path / "depth" / "a.png")
  with pytest.raises(ValueError, match=r"depth/a\.png: expected a 16-bit png .* got mode L"):
    bench.kitti_frames(str(tmp_path))
  raw = np.zeros((4, 6), np.uint16)
  raw[1, 2] = 2560  # 10 m; the rest has no LiDAR return
  Image.fromarray(raw).save(tmp_path / "depth" / "a.png")
  images, depth = bench.kitti_frames(str(tmp_path))
  assert images.shape == (1, 4, 6, 3) and depth.shape == (1, 4, 6)
  assert depth[0, 1, 2] == 10.0 and np.count_nonzero(depth) == 1
