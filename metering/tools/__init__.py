"""Tools around the pipeline: the load generator."""
