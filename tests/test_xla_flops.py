"""``benchmarks/xla_flops.program_flops``: XLA's FLOP count from the host-CPU lowering, against hand counts.

The accelerator tables' MFU column divides this count by the step time; on GPUs the compiled module's own
count leaves out cuDNN convolutions, so the count must come from a lowering that keeps them.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from benchmarks import xla_flops

DN = ("NHWC", "HWIO", "NHWC")


def _conv(x, w):
  return lax.conv_general_dilated(x, w, (1, 1), "VALID", dimension_numbers=DN)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_convolution_and_matmul_match_hand_counts(dtype):
  x = jax.ShapeDtypeStruct((2, 12, 10, 3), dtype)
  w = jax.ShapeDtypeStruct((3, 3, 3, 5), dtype)
  # 2 FLOPs per multiply-add: batch x output pixels x output channels x (kh x kw x cin).
  assert xla_flops.program_flops(_conv, x, w) == 2 * 2 * 10 * 8 * 5 * (3 * 3 * 3)
  a = jax.ShapeDtypeStruct((7, 11), dtype)
  b = jax.ShapeDtypeStruct((11, 13), dtype)
  assert xla_flops.program_flops(jnp.matmul, a, b) == 2 * 7 * 11 * 13


def test_gradient_counts_forward_and_both_backward_convolutions():
  """Loss sum(conv(x, w)^2) differentiated in w and x: three convolutions of the same size."""
  x = np.ones((1, 9, 9, 4), np.float32)
  w = np.ones((3, 3, 4, 6), np.float32)
  out = 1 * 7 * 7 * 6
  conv = 2 * out * (3 * 3 * 4)
  loss = lambda w, x: jnp.square(_conv(x, w)).sum()  # noqa: E731
  flops = xla_flops.program_flops(jax.grad(loss, argnums=(0, 1)), w, x)
  # Forward, input-gradient and weight-gradient convolutions, plus a few element-wise FLOPs per output.
  assert 3 * conv <= flops <= 3 * conv + 8 * out


def test_equals_the_cpu_compiled_count_and_reads_pytrees_of_arrays():
  """On the CPU backend the compiled module keeps its convolutions: both counts agree exactly."""
  params = {"w": jnp.ones((3, 3, 4, 8)), "step": jnp.zeros((), jnp.int32)}
  x = jnp.ones((2, 16, 16, 4))

  def fn(params, x):
    return jnp.tanh(_conv(x, params["w"])).mean() + params["step"]

  compiled = jax.jit(fn).lower(params, x).compile().cost_analysis()
  compiled = compiled[0] if isinstance(compiled, list | tuple) else compiled
  assert xla_flops.program_flops(fn, params, x) == pytest.approx(compiled["flops"], rel=1e-6)
