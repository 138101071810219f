"""Trainers: classical (TF-IDF + linear), fine-tuning with a classification head."""
