"""TFDS builder ``scannet`` (see ``scannet_dataset_builder``)."""
