"""What askgpt writes to a terminal: the answer (plain or streamed Markdown) and the lines on stderr."""
