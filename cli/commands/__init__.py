"""The commands, one module per group: each declares its Typer commands and the glue that
calls the API and runtime layers and renders the result. cli/app.py assembles them."""
