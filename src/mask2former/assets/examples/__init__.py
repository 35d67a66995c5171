"""Example images for the demo."""
