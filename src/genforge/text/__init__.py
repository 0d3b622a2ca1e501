"""Text for text-to-image models: a word-level tokenizer built from the training captions
(tokenizer.py), a small transformer text encoder (encoder.py) and its settings (config.py, the
`text` section)."""
