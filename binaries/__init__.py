"""absl-flag entry points: `python -m binaries.<name> --config=... --workdir=...`."""
