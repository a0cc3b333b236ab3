"""Tracker export (`groundwork export`): Weights & Biases and MLflow."""
