"""semdepth_jax: joint monocular depth estimation and semantic segmentation in JAX/Flax.

Docstrings cite the project's specification, ``docs/model_spec.md``, by section: ``docs/model_spec.md §N``,
shortened to ``model_spec §N`` where the full path would overflow a line.
"""

__version__ = "0.1.0"
