"""The model-family contract: decode of every depth unit to metres, checked against hand values."""

import math

import flax.linen as nn
import jax.numpy as jnp
import numpy as np
import pytest

from semdepth_jax.models import contract, get_model, known_models


def test_metres_inverted_normalised_and_log():
  raw = jnp.asarray([[[[2.5], [0.0]]]])  # (1, 1, 2, 1)
  np.testing.assert_allclose(contract.depth_to_metres(raw, "metres"), [[[2.5, 0.0]]])
  inv = jnp.asarray([[[[0.25], [1.2]]]])  # 1 - d/80 = 0.25 -> 60 m; > 1 is clipped -> 0 m
  np.testing.assert_allclose(
    contract.depth_to_metres(inv, "inverted_normalised", 80.0), [[[60.0, 0.0]]]
  )
  log = jnp.asarray([[[[math.log(3.0)], [100.0]]]])  # exp; absurd values clipped at LOG_CLIP
  out = contract.depth_to_metres(log, "log")
  np.testing.assert_allclose(out, [[[3.0, math.exp(contract.LOG_CLIP)]]], rtol=1e-6)
  with pytest.raises(ValueError, match="depth_norm"):
    contract.depth_to_metres(inv, "inverted_normalised")
  with pytest.raises(ValueError, match="depth_output must be one of"):
    contract.depth_to_metres(raw, "feet")


def test_normalised_is_paper_003_depth_over_15_m_unclipped():
  # docs/model_spec.md §4.2: sigmoid output in [0, 1] times 15 m; §4.4: unbounded heads pass through.
  raw = jnp.asarray([[[[0.5], [1.2], [-0.1]]]])  # (1, 1, 3, 1)
  got = contract.depth_to_metres(raw, "normalised", 15.0)
  np.testing.assert_allclose(got, [[[7.5, 18.0, -1.5]]], rtol=1e-6)
  dec = contract.decode({"depth": raw}, depth_output="normalised", depth_norm=15.0)
  np.testing.assert_allclose(dec["depth"], [[[7.5, 18.0, -1.5]]], rtol=1e-6)
  with pytest.raises(ValueError, match="normalised.*depth_norm > 0"):
    contract.depth_to_metres(raw, "normalised")
  with pytest.raises(ValueError, match="depth_norm > 0"):
    contract.check_depth_output("normalised", 0.0, "m")


def test_bins_argmax_expectation_and_regression():
  # Uniform bins 1..5 m, K = 4: centres 1.5, 2.5, 3.5, 4.5.
  bins = ("uniform", 1.0, 5.0, 4)
  logits = jnp.log(jnp.asarray([[[[0.1, 0.6, 0.2, 0.1]]]]))
  argmax = contract.decode({"depth_logits": logits}, depth_output="bins", depth_bins=bins)
  np.testing.assert_allclose(argmax["depth"], [[[2.5]]])
  soft = contract.decode(
    {"depth_logits": logits}, depth_output="bins", depth_bins=bins, bin_decode="expectation"
  )
  np.testing.assert_allclose(
    soft["depth"], [[[0.1 * 1.5 + 0.6 * 2.5 + 0.2 * 3.5 + 0.1 * 4.5]]], rtol=1e-5
  )
  reg = jnp.asarray([[[[4.0]]]])
  avg = contract.decode(
    {"depth_logits": logits, "depth": reg},
    depth_output="bins",
    depth_bins=bins,
    bin_decode="average",
  )
  np.testing.assert_allclose(avg["depth"], [[[0.5 * (2.8 + 4.0)]]], rtol=1e-5)  # soft 2.8 m
  # log10 bins (paper 004): a one-hot distribution decodes to its quantisation point exactly.
  q = (math.log10(10.0) - math.log10(0.5)) / 10
  onehot = jnp.asarray([[[[0.0] * 3 + [50.0] + [0.0] * 7]]])
  got = contract.decode(
    {"depth_logits": onehot}, depth_output="bins", depth_bins=("log10", 0.5, 10.0, 10),
    bin_decode="expectation",
  )  # fmt: skip
  np.testing.assert_allclose(got["depth"], [[[10 ** (math.log10(0.5) + 3 * q)]]], rtol=1e-5)
  with pytest.raises(ValueError, match="regression output"):
    contract.bins_to_metres(logits, bins, bin_decode="regression")
  with pytest.raises(ValueError, match="depth_bins"):
    contract.check_depth_output("bins", None, "m")


def test_seg_probs_are_a_softmax_with_the_logits_argmax():
  logits = jnp.asarray([[[[2.0, 0.0, -1.0]]]])
  probs = contract.decode({"seg_logits": logits})["seg_probs"]
  e = np.exp([2.0, 0.0, -1.0])
  np.testing.assert_allclose(probs[0, 0, 0], e / e.sum(), rtol=1e-6)


def test_models_decode_unbound_and_declare_inputs_outputs():
  for name in known_models():
    model = get_model(name)
    assert set(model.INPUTS) <= set(contract.INPUT_KINDS), name
    assert set(model.OUTPUTS) <= set(contract.OUTPUT_KINDS), name
  m = get_model("cnn3d_up", depth_output="inverted_normalised", depth_norm=10.0)
  np.testing.assert_allclose(m.decode({"depth": jnp.full((1, 1, 1, 1), 0.5)})["depth"], [[[5.0]]])

  class Plain(nn.Module):  # not a registered model: decode still works from its attributes
    depth_output: str = "log"

  np.testing.assert_allclose(
    contract.decode({"depth": jnp.zeros((1, 1, 1, 1))}, **contract.decode_options(Plain()))[
      "depth"
    ],
    [[[1.0]]],
  )
