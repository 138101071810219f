"""Base models: the bundled ones, hub/local loading, PEFT and quantization."""
