"""TFDS builder ``hypersim`` (see ``hypersim_dataset_builder``)."""
