"""Image autoencoders: AutoencoderKL."""
