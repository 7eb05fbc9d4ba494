"""The thin rclpy layer: the nodes, their parameters, message <-> numpy conversion and the status messages.

Only this room imports rclpy; the logic it wraps lives in control/, serving/ and sim/.
"""
