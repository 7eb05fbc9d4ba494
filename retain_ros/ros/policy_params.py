"""The policy node's parameters declared on an rclpy node, with descriptors built from the table in control/params."""

from __future__ import annotations

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.parameter import Parameter

from retain_ros.control.params import BY_NAME, PARAMS, Param, type_problem, typed
from retain_ros.errors import ConfigError


def descriptor(param: Param) -> ParameterDescriptor:
    """The ParameterDescriptor announced to `ros2 param describe`."""
    d = ParameterDescriptor(description=param.description, read_only=param.read_only)
    if param.low is not None and isinstance(param.default, float):
        d.floating_point_range = [FloatingPointRange(from_value=float(param.low), to_value=float(param.high))]
    elif param.low is not None and isinstance(param.default, int) and not isinstance(param.default, bool):
        d.integer_range = [IntegerRange(from_value=int(param.low), to_value=int(param.high), step=1)]
    return d


def declare(node) -> None:
    """Declare every parameter on `node` with its descriptor (values from --params-file / overrides win).

    A value given as an integer where a double is declared (`alpha:=1`, `speed_scale: 1`) is taken as that double,
    at start and in `ros2 param set`, instead of rclpy's InvalidParameterTypeException; any other wrong type is one
    ConfigError naming the parameter.
    """
    for p in PARAMS:  # read the given value untyped, then declare it typed
        given = node.declare_parameter(p.name, p.default, ParameterDescriptor(dynamic_typing=True)).value
        node.undeclare_parameter(p.name)
        value = typed(p, given)
        reason = type_problem(p, value)
        if reason is not None:
            raise ConfigError(reason)
        node.declare_parameter(p.name, value, descriptor(p), ignore_override=True)
    if hasattr(node, "add_pre_set_parameters_callback"):  # rclpy >= Iron; Humble's `ros2 param set` stays strict
        node.add_pre_set_parameters_callback(_widen)


def _widen(params: list[Parameter]) -> list[Parameter]:
    """Pre-set callback: `ros2 param set /retain_policy alpha 1` sets 1.0."""
    return [Parameter(p.name, value=typed(BY_NAME[p.name], p.value)) if p.name in BY_NAME else p for p in params]
