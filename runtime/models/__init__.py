"""Which model file: the registry, discovery of GGUF files, hub downloads, the one GGUF reader
(gguf.py), the one table of llama.cpp file types (filetypes.py) and `models info` (info.py)."""
