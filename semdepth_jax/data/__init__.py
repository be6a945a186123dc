"""Dataset meta info, numpy transforms and the grain input pipeline."""
