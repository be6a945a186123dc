"""TFDS builder ``replica`` (see ``replica_dataset_builder``)."""
