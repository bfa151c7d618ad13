"""Helpers for testing VirtualiZarr and parsers built on it."""
