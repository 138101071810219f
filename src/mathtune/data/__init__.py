"""Data: readers, checks, splits and the built-in demo data."""
