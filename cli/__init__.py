"""The command line: parsing, rendering and exit codes. Logic lives in askgpt.runtime."""
