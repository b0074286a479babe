"""The concurrent frame pipeline (core) and the blur job's stages on it (stages)."""
