"""What askgpt keeps on disk: settings and the config file, saved templates, the conversation log."""
