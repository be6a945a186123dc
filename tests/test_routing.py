"""Tests for paper 004's routing rules (semdepth_jax.routing; docs/model_spec.md §5.4)."""

import numpy as np
import pytest

from semdepth_jax import routing


def test_places365_list_loads_with_365_entries_and_both_labels():
  io = routing.load_places365_io()
  assert len(io) == 365
  assert {label for _, label in io} == {1, 2}
  # Spot checks against the release's file (first lines and the last one).
  assert io[0] == ("/a/airfield", 2)
  assert io[1] == ("/a/airplane_cabin", 1)
  assert io[364][0] == "/z/zen_garden"
  mask = routing.places365_low_range_mask()
  assert mask.shape == (365,) and mask.dtype == bool
  assert mask.sum() == sum(1 for _, lab in io if lab == 1)
  assert 0 < mask.sum() < 365


def test_places365_parse_errors_name_the_file():
  with pytest.raises(ValueError, match=r"x\.txt: expected 365 categories, got 1"):
    routing.parse_places365_io("/a/b 1\n", "x.txt")
  with pytest.raises(ValueError, match=r"x\.txt:2: expected"):
    routing.parse_places365_io("/a/b 1\n/a/c 3\n", "x.txt")


def _probs(order, c=20):
  """Probabilities whose descending order is ``order`` followed by the rest."""
  p = np.zeros(c, np.float32)
  for rank, i in enumerate(order):
    p[i] = 1.0 - 0.01 * rank
  return p / p.sum()


def test_top15_vote_on_hand_made_probabilities():
  c = 20
  low = np.zeros(c, bool)
  low[:10] = True  # categories 0-9 indoor, 10-19 outdoor
  # Top 15 = 8 indoor (0-7) + 7 outdoor (10-16): 8 > 7.5 -> low.
  a = _probs(list(range(8)) + list(range(10, 17)))
  # Top 15 = 7 indoor + 8 outdoor -> high; the two indoor categories ranked 16th/17th do not vote.
  b = _probs(list(range(7)) + list(range(10, 18)) + [8, 9])
  out = routing.scene_vote(np.stack([a, b]), low)
  np.testing.assert_array_equal(np.asarray(out["low_votes"]), [8, 7])
  np.testing.assert_array_equal(np.asarray(out["is_low"]), [True, False])
  # K = 4: a 2-2 tie is not a majority ("more than K/2") -> high.
  t = routing.scene_vote(_probs([0, 1, 10, 11]), low, top_k=4)
  assert int(t["low_votes"]) == 2 and not bool(t["is_low"])


def test_vote_errors():
  with pytest.raises(ValueError, match=r"low_mask must have shape \(5,\)"):
    routing.scene_vote(np.ones(5), np.ones(4, bool))
  with pytest.raises(ValueError, match="top_k must be in"):
    routing.scene_vote(np.ones(5), np.ones(5, bool), top_k=6)


def test_sigma_rule_on_hand_made_depth_maps():
  d = np.full((4, 3, 3), 2.0, np.float32)
  d[0, 1, 1] = 5.89  # equal to sigma: not above -> low
  d[1, 2, 0] = 5.9  # above -> high
  d[2, 0, 0] = np.nan  # ignored -> max 2 -> low
  d[3, 0, 0] = 40.0  # above, but masked out below
  valid = np.ones((4, 3, 3), bool)
  valid[3, 0, 0] = False
  out = routing.max_depth_rule(d, valid=valid)
  np.testing.assert_allclose(np.asarray(out["max_depth"]), [5.89, 5.9, 2.0, 2.0], rtol=1e-6)
  np.testing.assert_array_equal(np.asarray(out["is_high"]), [False, True, False, False])
  out = routing.max_depth_rule(d[..., None])  # (B, H, W, 1), no mask: image 3 is high now
  np.testing.assert_array_equal(np.asarray(out["is_high"]), [False, True, False, True])
  assert routing.decision(~np.asarray(out["is_high"])) == ["low", "high", "low", "high"]
  with pytest.raises(ValueError, match="depth must be"):
    routing.max_depth_rule(np.ones((3, 3)))


def test_depth_statistics_equal_numpy_over_valid_pixels():
  rng = np.random.default_rng(0)
  d = rng.uniform(0.5, 30.0, (3, 7, 5)).astype(np.float32)
  d[0, 0, :3] = np.nan
  d[1, 2, 2] = np.inf
  valid = rng.random((3, 7, 5)) > 0.3
  valid[2] = False  # no valid pixel at all
  out = routing.depth_statistics(d, valid)
  for b in range(2):
    v = d[b][valid[b] & np.isfinite(d[b])].astype(np.float64)
    for name, q in (("max", 100), ("p95", 95), ("median", 50)):
      np.testing.assert_allclose(float(out[name][b]), np.percentile(v, q), rtol=1e-6, err_msg=name)
  for name in routing.STATISTICS:
    assert float(out[name][2]) == -np.inf


def test_coarse_depth_rule_statistic_switch():
  # One far pixel in a near room (a window): the max rule calls it high, the median rule low; an outdoor
  # image with mostly far depth is high under every statistic.
  room = np.full((10, 10), 2.5, np.float32)
  room[0, 0] = 9.0
  street = np.full((10, 10), 20.0, np.float32)
  street[:6] = 3.0  # 60 % near (road), 40 % far: median 3 m -> low, p95 20 m -> high
  d = np.stack([room, street])
  want = {"max": [True, True], "p95": [False, True], "median": [False, False]}
  for statistic, is_high in want.items():
    out = routing.coarse_depth_rule(d, sigma=5.89, statistic=statistic)
    np.testing.assert_array_equal(np.asarray(out["is_high"]), is_high, err_msg=statistic)
  np.testing.assert_allclose(np.asarray(out["median_depth"]), [2.5, 3.0])
  np.testing.assert_allclose(np.asarray(out["max_depth"]), [9.0, 20.0])
  np.testing.assert_array_equal(
    np.asarray(routing.max_depth_rule(d)["is_high"]),
    np.asarray(routing.coarse_depth_rule(d, statistic="max")["is_high"]),
  )
  with pytest.raises(ValueError, match="statistic must be one of max, p95, median, got 'mean'"):
    routing.coarse_depth_rule(d, statistic="mean")
