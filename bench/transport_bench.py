"""Camera transport benchmark: sensor_msgs/Image vs CompressedImage (JPEG) from one process to another over DDS.

    .venv/bin/python bench/transport_bench.py [--frames 150] [--rate 30] [--domain 77]

A publisher process sends camera frames stamped with its clock; this process receives them with the node's QoS
(sensor data) and decodes them with the node's readers (`retain_ros.control.messages`). Prints, per size and
encoding: bytes per frame, receive latency (stamp -> callback) and decode time, p50 / p95. Both processes share one
machine and clock; between two machines add the network's time per byte (docs/robot.md, "Two machines"). Asserts
nothing.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import time

import numpy as np

SIZES = ((224, 224), (480, 640))
ENCODINGS = ("rgb8", "jpeg")


def _frame(height: int, width: int) -> np.ndarray:
    """A camera-like image: smooth gradients plus sensor noise (JPEG sizes depend on content)."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 / width, y * 255 / height, (x + y) * 127 / (width + height)], axis=-1)
    return np.clip(base + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8)


def _publish(domain: int, frames: int, rate_hz: float, ready) -> None:
    import rclpy
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import CompressedImage, Image

    from retain_ros.ros import conversions as conv

    rclpy.init(domain_id=domain)
    node = rclpy.create_node("transport_bench_camera")
    pubs = {(size, enc): node.create_publisher(CompressedImage if enc == "jpeg" else Image,
                                               f"/bench/{enc}_{size[1]}x{size[0]}", qos_profile_sensor_data)
            for size in SIZES for enc in ENCODINGS}
    images = {size: _frame(*size) for size in SIZES}
    ready.wait(60)
    time.sleep(1.0)  # discovery
    for (size, enc), pub in pubs.items():
        for _ in range(frames):
            now = node.get_clock().now().nanoseconds
            msg = (conv.rgb_to_compressed(images[size], "jpeg", now) if enc == "jpeg"
                   else conv.rgb_to_image(images[size], "rgb8", now))
            pub.publish(msg)
            time.sleep(1.0 / rate_hz)
    time.sleep(0.5)
    node.destroy_node()
    rclpy.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=150, help="frames per size and encoding")
    parser.add_argument("--rate", type=float, default=30.0, help="frames per second")
    parser.add_argument("--domain", type=int, default=77, help="ROS_DOMAIN_ID used by both processes")
    args = parser.parse_args()
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")

    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import CompressedImage, Image

    from retain_ros.control import messages

    rclpy.init(domain_id=args.domain)
    node = rclpy.create_node("transport_bench_policy")
    results: dict[tuple, dict[str, list]] = {}

    def callback(key, msg):
        received = node.get_clock().now().nanoseconds
        started = time.perf_counter()
        rgb = messages.compressed_to_rgb(msg) if key[1] == "jpeg" else messages.image_to_rgb(msg)
        decode_s = time.perf_counter() - started
        entry = results.setdefault(key, {"latency": [], "decode": [], "bytes": []})
        entry["latency"].append((received - messages.stamp_to_ns(msg.header.stamp)) * 1e-9)
        entry["decode"].append(decode_s)
        entry["bytes"].append(len(msg.data))
        assert rgb.shape[:2] == key[0]

    for size in SIZES:
        for enc in ENCODINGS:
            node.create_subscription(CompressedImage if enc == "jpeg" else Image, f"/bench/{enc}_{size[1]}x{size[0]}",
                                     lambda msg, key=(size, enc): callback(key, msg), qos_profile_sensor_data)
    ready = multiprocessing.get_context("spawn").Event()
    proc = multiprocessing.get_context("spawn").Process(target=_publish,
                                                        args=(args.domain, args.frames, args.rate, ready))
    proc.start()
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    ready.set()
    while proc.is_alive():
        executor.spin_once(timeout_sec=0.05)
    proc.join()
    print(f"camera transport, {args.frames} frames each at {args.rate:g} Hz, one machine (stamp -> callback, then the "
          "node's decoder)")
    print(f"{'frame':>10} {'encoding':>8} {'received':>9} {'kB/frame':>9} {'latency p50/p95 ms':>19} "
          f"{'decode p50/p95 ms':>18}")
    for size in SIZES:
        for enc in ENCODINGS:
            r = results.get((size, enc), {"latency": [np.nan], "decode": [np.nan], "bytes": [0]})
            lat, dec = np.asarray(r["latency"]) * 1e3, np.asarray(r["decode"]) * 1e3
            print(f"{size[1]:>4}x{size[0]:<5} {enc:>8} {len(r['latency']):>9} {np.mean(r['bytes']) / 1e3:>9.1f} "
                  f"{np.percentile(lat, 50):>9.2f} / {np.percentile(lat, 95):<7.2f} "
                  f"{np.percentile(dec, 50):>8.2f} / {np.percentile(dec, 95):<7.2f}")
    node.destroy_node()
    rclpy.shutdown()


if __name__ == "__main__":
    main()
