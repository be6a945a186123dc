"""TFDS builder ``cityscapes`` (see ``cityscapes_dataset_builder``)."""
