"""What the gateway tells about itself: metrics (metrics.py, gateway.py)."""
