"""The engine seam (base), its implementations (llama/ for GGUF files through llama.cpp, served for OpenAI-
compatible servers), the table that picks one (kinds), and what loading needs: sampling, the prefix cache, the
first-load guard, the memory check.
"""
