"""PyOD scoring, baselines, explanations, severity, and incidents with their lifecycle."""
