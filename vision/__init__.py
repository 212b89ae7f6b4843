"""Image encoders and their projection into the language model's context.

Not built yet: images arrive in a later issue. The engine seam in
``askgpt.runtime.engine.base`` already accepts prompts made of parts so that
image embedding rows can sit between text tokens.
"""
