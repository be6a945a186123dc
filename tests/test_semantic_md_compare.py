"""benchmarks/semantic_md_compare.py: the summary tables and claim checks from hand-made per-seed results."""

import importlib.util
import pathlib
import sys

import pytest

_PATH = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "semantic_md_compare.py"


@pytest.fixture(scope="module")
def compare():
  spec = importlib.util.spec_from_file_location("semantic_md_compare", _PATH)
  module = importlib.util.module_from_spec(spec)
  sys.modules[spec.name] = module  # dataclasses resolve annotations through sys.modules
  spec.loader.exec_module(module)
  yield module
  sys.modules.pop(spec.name, None)


def _run(abs_rel, delta1, miou=None):
  """One seed's results: every R3 / standard key derived from two numbers (lower / higher is better)."""
  r3 = {k: (delta1 if k.startswith("delta") else abs_rel) for k in ("rmse", "abs_rel", "log10")}
  r3.update(delta1=delta1, delta2=delta1, delta3=delta1)
  std = {"abs_rel": abs_rel, "rmse": abs_rel, "rmse_log": abs_rel, "delta1": delta1}
  if miou is not None:
    std["miou"] = miou
  base = {"abs_rel": 0.5, "rmse": 0.7, "rmse_log": 0.4, "delta1": 0.3}
  return {
    "r3": r3,
    "standard": std,
    "standard_baseline": base,
    "r3_on_pred": r3,
    "standard_on_pred": std,
  }


def test_claims_from_per_seed_results(compare):
  results = {
    "baseline": [_run(0.30, 0.50), _run(0.32, 0.52), _run(0.31, 0.51)],
    # better on every seed and metric
    "1hot40_gt": [_run(0.20, 0.60), _run(0.21, 0.61), _run(0.22, 0.62)],
    # worse on the mean, but one seed beats its baseline seed
    "1hot40_pred": [_run(0.29, 0.49), _run(0.40, 0.40), _run(0.40, 0.40)],
    # slightly worse, within one standard deviation: ">=" holds, ">" would not
    "2head": [_run(0.305, 0.505, 0.1), _run(0.325, 0.515, 0.2), _run(0.315, 0.505, 0.3)],
  }
  md, claims = compare.summarise(results, 40)
  gt = claims["1hot-40 (GT) > baseline"]
  assert all(v["holds"] for v in gt.values()) and gt["r3/abs_rel"]["seed_wins"] == "3/3"
  pred = claims["1hot-40 (pred., trained on pred.) > baseline"]
  assert not pred["standard/abs_rel"]["holds"] and pred["standard/abs_rel"]["seed_wins"] == "1/3"
  assert not pred["r3/delta1"]["holds"] and pred["r3/delta1"]["seed_wins"] == "0/3"
  two = claims["2-head >= baseline"]
  assert two["standard/abs_rel"]["holds"] and two["standard/abs_rel"]["seed_wins"] == "0/3"
  # mean +- sample std (ddof 1) of the baseline's abs_rel 0.30, 0.32, 0.31: 0.310 +- 0.010
  assert "| baseline (l1) | 0.310 ± 0.010 | 0.310 ± 0.010 |" in md
  assert "2-head semantic head on validation: mIoU 0.200 ± 0.100." in md
  assert "| mean training depth (trivial) | 0.500 | 0.700 | 0.400 | 0.300 |" in md


def test_partial_results_summarise_what_has_finished(compare):
  results = {"baseline": [_run(0.3, 0.5)], "1hot40_gt": [_run(0.2, 0.6)], "2head": []}
  md, claims = compare.summarise(results, 40)
  assert "1hot-40 (GT) > baseline" in claims and "2-head >= baseline" not in claims
  assert "2-head |" not in md


def test_r3_only_results_leave_the_standard_table_unevaluated(compare):
  def r3_only(abs_rel, delta1):
    return {"r3": _run(abs_rel, delta1)["r3"]}

  results = {"baseline": [r3_only(0.3, 0.5)] * 2, "1hot40_gt": [r3_only(0.2, 0.6)] * 2}
  md, claims = compare.summarise(results, 40)
  per = claims["1hot-40 (GT) > baseline"]
  assert set(per) == {f"r3/{k}" for k in compare.R3_KEYS} and per["r3/rmse"]["holds"]
  assert "| baseline (l1) | not evaluated |" in md
