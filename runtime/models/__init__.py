"""Which model file: the registry, discovery of GGUF files, hub downloads, and the one GGUF header reader."""
