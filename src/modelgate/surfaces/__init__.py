"""The HTTP surfaces: one folder per wire format that clients speak."""
