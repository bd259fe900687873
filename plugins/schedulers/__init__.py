"""Built-in schedulers (NumPy only): see docs/schedulers.md."""
