"""Documents of any length: reading inputs, cutting them into chunks, ranking, keeping huge ones on disk, and the
long-document strategies.
"""
