"""The ``tritonpipe`` command. Nothing imports this package."""
