"""Training configs (ml_collections), one file per experiment family; see configs/common.py."""
