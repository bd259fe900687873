"""Control networks (the `paddiff.controlnets` entry-point group)."""
