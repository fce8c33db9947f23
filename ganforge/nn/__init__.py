"""Layers and parameter-free ops (no training, no data)."""
