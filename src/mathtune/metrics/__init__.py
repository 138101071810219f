"""Metrics computed from predictions (never from a whole eval set's logits) and their plots."""
