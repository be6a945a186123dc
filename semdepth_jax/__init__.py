"""semdepth_jax: joint monocular depth estimation and semantic segmentation in JAX/Flax."""

__version__ = "0.1.0"
