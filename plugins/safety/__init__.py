"""Safety filters: `PromptTermFilter` (term lists, before any compute) and
`StableDiffusionSafetyChecker` (CLIP image checker, after decoding). See docs/safety.md."""
