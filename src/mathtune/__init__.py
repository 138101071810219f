"""mathtune: fine-tune language models and classical baselines into math-education tools."""

__version__ = "0.1.0"
