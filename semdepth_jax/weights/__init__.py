"""Pretrained weights: key tables that map PyTorch / Keras checkpoints onto this library's parameter trees.

See :mod:`semdepth_jax.weights.keymap` for the table format.
"""
