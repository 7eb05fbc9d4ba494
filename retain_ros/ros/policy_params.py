"""The policy node's parameters declared on an rclpy node, with descriptors built from the table in control/params."""

from __future__ import annotations

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor

from retain_ros.control.params import PARAMS, Param


def descriptor(param: Param) -> ParameterDescriptor:
    """The ParameterDescriptor announced to `ros2 param describe`."""
    d = ParameterDescriptor(description=param.description, read_only=param.read_only)
    if param.low is not None and isinstance(param.default, float):
        d.floating_point_range = [FloatingPointRange(from_value=float(param.low), to_value=float(param.high))]
    elif param.low is not None and isinstance(param.default, int) and not isinstance(param.default, bool):
        d.integer_range = [IntegerRange(from_value=int(param.low), to_value=int(param.high), step=1)]
    return d


def declare(node) -> None:
    """Declare every parameter on `node` with its descriptor (values from --params-file / overrides win)."""
    for p in PARAMS:
        node.declare_parameter(p.name, p.default, descriptor(p))
