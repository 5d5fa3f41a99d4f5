"""timm: a registry model, forward and backward, a few optimizer steps."""
