"""What the user asks, as values (request), and how it becomes the model's tokens: chat templates, rendering and
generation, structured output.
"""
