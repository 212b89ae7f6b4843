"""The runtime: engine seam, prompts, chat formatting, sampling, models, settings, errors.

Nothing here prints or exits; failures are `AskgptError` subclasses.
"""
