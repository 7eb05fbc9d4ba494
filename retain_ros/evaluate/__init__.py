"""Evaluation: closed-loop simulated comparison (`retain-eval sim`), bag replay, alpha sweeps, reports and plots.

Only live-replay code may import rclpy.
"""
