"""TFDS builder ``camvid`` (see ``camvid_dataset_builder``)."""
