"""Tests of semdepth_jax.depth_bins against hand-computed edges, centres and encodings."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from semdepth_jax import depth_bins as db


def test_sid_edges_and_centres_hand_computed():
  # alpha = 1, beta = 16, K = 4: t_i = 16 ** (i / 4) = 1, 2, 4, 8, 16.
  b = db.make_bins("sid", alpha=1.0, beta=16.0, num_bins=4)
  np.testing.assert_allclose(b.edges, [1, 2, 4, 8, 16], rtol=1e-12)
  s2 = math.sqrt(2.0)
  np.testing.assert_allclose(b.centres, [s2, 2 * s2, 4 * s2, 8 * s2], rtol=1e-12)
  np.testing.assert_allclose(db.class_values(b, "midpoint"), [1.5, 3, 6, 12], rtol=1e-12)
  np.testing.assert_allclose(db.class_values(b, "lower_edge"), [1, 2, 4, 8], rtol=1e-12)
  assert b.num_classes == 4


def test_sid_default_matches_model_spec_eq2():
  b = db.make_bins()  # docs/model_spec.md §3.2 recommended: alpha 1, beta 80, K 71.
  assert (b.kind, b.alpha, b.beta, b.num_bins, b.num_classes) == ("sid", 1.0, 80.0, 71, 71)
  assert b.edges[0] == pytest.approx(1.0)
  assert b.edges[-1] == pytest.approx(80.0)
  # t_1 = exp(log(80) / 71) = 80 ** (1/71) = 1 + u + u^2/2 + u^3/6 with u = 0.0617187 = 1.0636631
  assert b.edges[1] == pytest.approx(1.0636631, rel=1e-6)


def test_uniform_and_dorn_hand_computed():
  u = db.make_bins("uniform", alpha=1.0, beta=5.0, num_bins=4)
  np.testing.assert_allclose(u.edges, [1, 2, 3, 4, 5])
  np.testing.assert_allclose(u.centres, [1.5, 2.5, 3.5, 4.5])
  # DORN shift: alpha = 0.5 -> xi = 0.5, beta* = 8: t_i = 8 ** (i/3) - 0.5 = 0.5, 1.5, 3.5, 7.5.
  d = db.make_bins("dorn", alpha=0.5, beta=7.5, num_bins=3)
  assert d.shift == pytest.approx(0.5)
  np.testing.assert_allclose(d.edges, [0.5, 1.5, 3.5, 7.5], rtol=1e-12)
  np.testing.assert_allclose(d.centres, [1.0, 2.5, 5.5], rtol=1e-12)  # DORN midpoints.


def test_log10_quantisation_hand_computed():
  # alpha = 1, beta = 1000, K = 3 -> q = 1; classes 0..3 with values 1, 10, 100, 1000.
  b = db.make_bins("log10", alpha=1.0, beta=1000.0, num_bins=3)
  assert b.num_classes == 4
  assert b.log10_step == pytest.approx(1.0)
  np.testing.assert_allclose(b.centres, [1, 10, 100, 1000], rtol=1e-12)
  depth = jnp.array([3.0, 4.0, 31.0, 32.0, 1000.0, 1001.0, 0.5])
  # log10: 0.477 -> 0, 0.602 -> 1, 1.491 -> 1, 1.505 -> 2, 3 -> 3, > beta -> ignore, < alpha -> 0.
  np.testing.assert_array_equal(db.encode(b, depth), [0, 1, 1, 2, 3, 255, 0])


def test_encode_hand_computed_sid_and_invalid():
  b = db.make_bins("sid", alpha=1.0, beta=16.0, num_bins=4)
  depth = jnp.array([1.0, 1.9, 3.0, 7.9, 9.0, 16.0, 17.0, 0.5, 0.0, -1.0, jnp.nan, jnp.inf])
  expected = [0, 0, 1, 2, 3, 3, 255, 0, 255, 255, 255, 255]
  np.testing.assert_array_equal(db.encode(b, depth), expected)
  no_clip = db.encode(b, depth, clip_below=False, ignore_index=-1)
  np.testing.assert_array_equal(no_clip, [0, 0, 1, 2, 3, 3, -1, -1, -1, -1, -1, -1])
  assert db.encode(b, depth).dtype == jnp.int32


@pytest.mark.parametrize("kind", db.KINDS)
def test_round_trip_centres(kind):
  b = db.make_bins(kind, alpha=0.7, beta=10.0, num_bins=68)
  idx = db.encode(b, jnp.asarray(b.centres, jnp.float32))
  np.testing.assert_array_equal(idx, np.arange(b.num_classes))
  back = db.decode_index(b, idx)
  np.testing.assert_allclose(back, b.centres, rtol=1e-6)
  # Any depth inside the range decodes into its own bin (floor rule) or nearest point (log10).
  y = jnp.linspace(0.75, 9.9, 101)
  c = np.asarray(db.encode(b, y))
  if kind == "log10":
    err = np.abs(np.log10(np.asarray(y)) - np.log10(b.centres[c]))
    assert np.all(err <= b.log10_step / 2 + 1e-6)
  else:
    assert np.all(b.edges[c] <= np.asarray(y) * (1 + 1e-6))
    assert np.all(np.asarray(y) < b.edges[c + 1] * (1 + 1e-6))


@pytest.mark.parametrize("kind", db.KINDS)
def test_expectation_on_one_hot_equals_argmax(kind):
  b = db.make_bins(kind, alpha=1.0, beta=80.0, num_bins=71)
  labels = jnp.array([[0, 5], [b.num_classes - 1, 33]])
  one_hot = jax.nn.one_hot(labels, b.num_classes)
  np.testing.assert_allclose(
    db.decode_expectation(b, one_hot), db.decode_argmax(b, one_hot), rtol=1e-5
  )
  np.testing.assert_allclose(db.decode_argmax(b, one_hot), b.centres[np.asarray(labels)], rtol=1e-6)


def test_log10_expectation_uses_expected_index():
  b = db.make_bins("log10", alpha=1.0, beta=1000.0, num_bins=3)
  probs = jnp.array([0.0, 0.5, 0.5, 0.0])
  assert float(db.expected_index(probs)) == pytest.approx(1.5)
  # 004: x = 10 ** (log10 alpha + d q) = 10 ** 1.5, not the mean of 10 and 100.
  assert float(db.decode_expectation(b, probs)) == pytest.approx(10**1.5, rel=1e-6)
  s = db.make_bins("sid", alpha=1.0, beta=16.0, num_bins=4)
  p = jnp.array([0.25, 0.25, 0.5, 0.0])
  s2 = math.sqrt(2.0)
  assert float(db.decode_expectation(s, p)) == pytest.approx(0.25 * s2 + 0.5 * s2 + 2 * s2)


@pytest.mark.parametrize("dataset,formula", [
  ("kitti", lambda l: math.exp((l - 1 + 40) / 25)),
  ("nyu", lambda l: math.exp((l - 1) / 25 - 0.36)),
])  # fmt: skip
def test_dorn_released_decoder_is_lower_edge(dataset, formula):
  b = db.dorn_released_bins(dataset)
  # 2K output channels = K thresholds -> ordinal counts 0..K = K + 1 classes (K = 71 KITTI, 68 NYU).
  assert b.num_classes == {"kitti": 72, "nyu": 69}[dataset]
  expected = [formula(l) for l in range(b.num_classes)]
  np.testing.assert_allclose(db.class_values(b, "lower_edge"), expected, rtol=1e-12)
  scores = jax.nn.one_hot(jnp.arange(b.num_classes), b.num_classes)
  np.testing.assert_allclose(db.decode_argmax(b, scores, mode="lower_edge"), expected, rtol=1e-6)


@pytest.mark.parametrize("dataset,k,metres", [
  # KITTI: exp((71 - 1 + 40) / 25) = exp(4.4) = 81.4509 m; NYU: exp((68 - 1) / 25 - 0.36) = exp(2.32)
  # = 10.1757 m (e^4.4 = e^4 * e^0.4 = 54.5982 * 1.49182; e^2.32 = e^2 * e^0.32 = 7.38906 * 1.37713).
  ("kitti", 71, 54.5982 * 1.49182),
  ("nyu", 68, 7.38906 * 1.37713),
])  # fmt: skip
def test_dorn_released_top_count_decodes_to_far_end(dataset, k, metres):
  b = db.dorn_released_bins(dataset)
  assert round(metres, 2) == {"kitti": 81.45, "nyu": 10.18}[dataset]
  got = db.decode_index(b, jnp.array([k]), mode="lower_edge")
  np.testing.assert_allclose(got, [metres], rtol=1e-5)  # was 0.0 (count K out of range)
  one_hot = jax.nn.one_hot(jnp.array([k]), b.num_classes)
  np.testing.assert_allclose(db.decode_argmax(b, one_hot, mode="lower_edge"), [metres], rtol=1e-5)


def test_dorn_kind_is_not_the_released_decoder():
  # The "dorn" kind follows the DORN paper's shifted SID; it does not reproduce exp((l - 1 + 40) / 25).
  b = db.make_bins("dorn", alpha=1.0, beta=80.0, num_bins=71)
  released = [math.exp((l - 1 + 40) / 25) for l in range(71)]
  assert not np.allclose(db.class_values(b, "lower_edge"), released, rtol=1e-2)


def test_inverted_normalised_hand_computed():
  depth = jnp.array([0.0, 2.5, 5.0, 10.0, 20.0, jnp.nan, -1.0])
  np.testing.assert_allclose(
    db.to_inverted_normalised(depth, 10.0), [0.0, 0.75, 0.5, 0.0, 0.0, 0.0, 0.0]
  )
  inv = jnp.array([1.0, 0.75, 0.0, 1.2, -0.1])
  np.testing.assert_allclose(db.from_inverted_normalised(inv, 10.0), [0.0, 2.5, 10.0, 0.0, 10.0])
  with pytest.raises(ValueError, match="norm_m"):
    db.to_inverted_normalised(depth, 0.0)


def test_gradients_finite_on_degenerate_inputs():
  depth = jnp.array([0.0, jnp.nan, -3.0, 5.0, 50.0])
  g = jax.grad(lambda d: jnp.sum(db.to_inverted_normalised(d, 10.0)))(depth)
  assert np.all(np.isfinite(g))
  np.testing.assert_allclose(g, [0, 0, 0, -0.1, 0])
  g = jax.grad(lambda p: jnp.sum(db.from_inverted_normalised(p, 10.0)))(jnp.array([0.0, 0.5, 2.0]))
  assert np.all(np.isfinite(g))
  for kind in db.KINDS:
    b = db.make_bins(kind, alpha=1.0, beta=80.0, num_bins=8)
    logits = jnp.array([[-1e4, 0.0] + [1e4] * (b.num_classes - 2), [0.0] * b.num_classes])

    def f(z, b=b):
      return jnp.sum(db.decode_expectation(b, jax.nn.softmax(z, axis=-1)))

    assert np.all(np.isfinite(jax.grad(f)(logits)))


def test_functions_are_jittable():
  b = db.make_bins("sid")
  depth = jnp.array([[0.0, 3.0], [79.0, 81.0]])
  np.testing.assert_array_equal(jax.jit(lambda d: db.encode(b, d))(depth), db.encode(b, depth))
  probs = jax.nn.softmax(jnp.linspace(-1, 1, 2 * 71).reshape(2, 71))
  np.testing.assert_allclose(
    jax.jit(lambda p: db.decode_expectation(b, p))(probs),
    db.decode_expectation(b, probs),
    rtol=1e-6,
  )


def test_errors_name_the_argument():
  with pytest.raises(ValueError, match="kind"):
    db.make_bins("quadratic")
  with pytest.raises(ValueError, match="beta"):
    db.make_bins("sid", alpha=2.0, beta=1.0)
  with pytest.raises(ValueError, match="alpha"):
    db.make_bins("sid", alpha=0.0)
  with pytest.raises(ValueError, match="classes"):
    db.decode_argmax(db.make_bins("sid"), jnp.zeros((2, 70)))
  with pytest.raises(ValueError, match="mode"):
    db.class_values(db.make_bins("log10"), "midpoint")
