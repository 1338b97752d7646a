"""ml_collections configs: pass a file to a binary with `--config=configs/<name>.py[:arg]`."""
