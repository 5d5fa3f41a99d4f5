"""DeepSpeed: an op built on first use (CPU Adam) and a few steps with it."""
