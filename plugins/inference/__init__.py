"""The fast path: Paddle Layers exported to static programs and run by Paddle Inference.

`export.py` turns a dynamic-graph Layer into a saved program for given input shapes,
`predictor.py` runs a saved program (oneDNN on CPU), and `cache.py` keeps exported programs on
disk keyed by the model's fingerprint and the input shapes, so each is exported once.
"""
