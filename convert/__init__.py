"""Weight conversion, quantization and export (GGUF, ONNX).

Not built yet: the converter arrives in a later issue.
"""
