"""Text encoders: the CLIP text transformer with its BPE tokenizer."""
