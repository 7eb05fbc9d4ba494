"""`~/status` (JSON) and `/diagnostics` content of the policy node: one dict, two renderings."""

from __future__ import annotations

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

from retain_ros.control.control_loop import ControlLoop
from retain_ros.serving.model_manager import ModelManager
from retain_ros.control.streams import StreamSet


def status_dict(manager: ModelManager, loop: ControlLoop, streams: StreamSet, now_ns: int, active: bool) -> dict:
    """Everything an operator needs: what serves (alphas, weights identity), how it was built, what the loop does."""
    model = manager.serving
    st = loop.state
    out = {
        "active": active,
        "state": st.state if active else "inactive",
        "reason": st.reason,
        "paused": loop.paused.is_set(),
        "weights_id": model.weights_id if model else "",
        "content_sha256": manager.content_sha256,
        "memory": manager.memory(),
        "alphas": model.alphas if model else {},
        "alpha": model.request.alpha if model else None,
        "recipe": model.request.describe() if model else "",
        "cached": model.cached if model else False,
        "route": model.request.route if model else "",
        "instruction": loop.inputs.current_instruction(loop.instruction()),
        "instruction_rules": [rule.item for rule in loop.recipes.rules] if loop.recipes else [],
        "group_alpha": model.request.group_alpha if model else {},
        "base_checkpoint": model.request.base if model else "",
        "finetuned_checkpoints": list(model.request.finetuned) if model else [],
        "statistics": model.statistics if model else None,
        "generation": model.generation if model else 0,
        "merge_s": model.merge_s if model else 0.0,
        "load_s": model.load_s if model else 0.0,
        "build_s": model.build_s if model else 0.0,
        "reload_s": model.request_to_ready_s if model else 0.0,
        "swap_s": manager.swap_s,
        "pending": not manager.idle(),
        "last_error": manager.last_error,
        "last_event": manager.last_event,
        "chunks": st.chunks,
        "commands": st.commands,
        "rejected_chunks": st.rejected,
        "last_rejection": st.last_rejection,
        "inference_s": st.inference_s,
        "stream_problems": st.problems if st.state != "commanding" else {},
        "stream_ages_s": {k: round(v, 4) for k, v in streams.ages_s(now_ns).items()},
        **{f"merge_{k}": v for k, v in manager.counts.items()},
    }
    return out


def _level(status: dict) -> bytes:
    if status["state"] == "error":
        return DiagnosticStatus.ERROR
    if not status["active"] or status["paused"] or status["state"] != "commanding" or status["last_error"]:
        return DiagnosticStatus.WARN
    return DiagnosticStatus.OK


def diagnostics_message(name: str, status: dict, stamp) -> DiagnosticArray:
    """A DiagnosticArray with one status; the message says what is wrong, the values carry the whole dict."""
    level = _level(status)
    message = status["reason"] or status["state"]
    if status["stream_problems"]:
        message = "not commanding: " + "; ".join(f"{k}: {v}" for k, v in sorted(status["stream_problems"].items()))
    elif status["last_error"]:
        message = f"{status['state']}; last merge error: {status['last_error']}"
    values = [KeyValue(key=k, value=str(v)) for k, v in status.items()]
    array = DiagnosticArray()
    array.header.stamp = stamp.to_msg()
    array.status = [DiagnosticStatus(level=level, name=name, message=message[:1000], hardware_id="retain_policy",
                                     values=values)]
    return array
