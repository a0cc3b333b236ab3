"""Turning ideas into patches: diff generation, safe application, implementers."""
