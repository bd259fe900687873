"""Built-in control-image makers (the `paddiff.preprocessors` entry-point group)."""
