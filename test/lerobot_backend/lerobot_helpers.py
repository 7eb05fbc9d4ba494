"""Tiny LeRobot pi0 / pi0.5 / SmolVLA checkpoints built offline, in LeRobot's own layout, for the backend tests.

The models are LeRobot's own classes (PI0Policy, PI05Policy, SmolVLAPolicy) with the Hugging Face configs inside them
shrunk: LeRobot 0.6 builds pi0's PaliGemma and Gemma expert from hard-coded sizes (2B / 300M, a 257k vocabulary), so
`tiny_pi_models()` patches the two places those sizes come from (`get_gemma_config` and the PaliGemma constructor the
modeling module calls) for as long as the tests run. Parameter names, code paths and file layout are LeRobot's. SmolVLA
reads its VLM from a directory named in its config; `write_tiny_smolvlm` writes a tiny SmolVLM config, tokenizer and
processor there. Tokenizers are WordLevel vocabularies trained here with `tokenizers`.

Checkpoints are written with LeRobot's `save_pretrained` (config.json, model.safetensors) and the processors' own
`save_pretrained` (policy_preprocessor.json / policy_postprocessor.json + normalisation statistics).
"""

from __future__ import annotations

import contextlib
import json
import shutil
from pathlib import Path

import numpy as np
import torch
from lerobot.configs import FeatureType, PolicyFeature
from lerobot.policies.factory import get_policy_class, make_pre_post_processors, make_policy_config
from safetensors.torch import load_file, save_file

WORDS = ("pick put push the a up red green blue cube block purple target on in to of and left right place move "
         "stack lift open close drawer").split()
PI_SPECIALS = ("<pad>", "<eos>", "<bos>", "<unk>")
SMOLVLM_SPECIALS = {"fake_image_token": "<fake_token_around_image>", "image_token": "<image>",
                    "end_of_utterance_token": "<end_of_utterance>", "global_image_token": "<global-img>"}
KINDS = ("pi0", "pi05", "smolvla")  # the LeRobot types the backend serves
VOCAB = 64  # >= the tokenizers' sizes; the language models' embedding rows
IMAGE = 32  # square image side the tiny vision towers see
STATE_DIM = ACTION_DIM = 8  # DROID: 7 joints + gripper
CHUNK = 4
PI0_IMAGES = ("observation.images.base_0_rgb", "observation.images.left_wrist_0_rgb")
SMOLVLA_IMAGES = ("observation.images.exterior_1_left", "observation.images.wrist_left")
PALIGEMMA_TOKENIZER = "google/paligemma-3b-pt-224"  # the name LeRobot's pi0 / pi0.5 processors ask for


# -- tokenizers ------------------------------------------------------------------------------------------------------
def write_tokenizer(out: Path, extra_special: dict[str, str] | None = None) -> Path:
    """A WordLevel tokenizer over `WORDS` saved as a Hugging Face fast tokenizer directory."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = list(PI_SPECIALS) + list((extra_special or {}).values())
    tokenizer = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.train_from_iterator([" ".join(WORDS)] * 2, trainers.WordLevelTrainer(special_tokens=specials))
    assert tokenizer.get_vocab_size() <= VOCAB
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="<pad>", eos_token="<eos>",
                                   bos_token="<bos>", unk_token="<unk>", extra_special_tokens=extra_special or {})
    fast.save_pretrained(out)
    return out


# -- tiny pi0 / pi0.5 ------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def tiny_pi_models():
    """While active, LeRobot's pi0 / pi0.5 build their PaliGemma + Gemma expert at test size."""
    from lerobot.policies.pi0 import modeling_pi0
    from lerobot.policies.pi05 import modeling_pi05

    gemma = modeling_pi0.GemmaConfig
    paligemma_cls = modeling_pi0.PaliGemmaForConditionalGenerationWithPiGemma
    expert_cls = modeling_pi0.PiGemmaForCausalLM

    def tiny_gemma(variant: str):
        return gemma(width=32, depth=2, mlp_dim=64, num_heads=2, num_kv_heads=1, head_dim=16)

    def tiny_paligemma(config):
        vision = config.vision_config
        vision.hidden_size, vision.intermediate_size, vision.num_hidden_layers = 16, 32, 1
        vision.num_attention_heads, vision.patch_size = 2, 8
        vision.projection_dim = config.projection_dim = config.text_config.hidden_size
        config.text_config.vocab_size = config._vocab_size = VOCAB  # noqa: SLF001
        config.image_token_index = VOCAB - 1
        return paligemma_cls(config=config)

    def tiny_expert(config):
        config.vocab_size = VOCAB
        return expert_cls(config=config)

    saved = []
    for module in (modeling_pi0, modeling_pi05):
        saved.append((module, module.get_gemma_config, module.PaliGemmaForConditionalGenerationWithPiGemma,
                      module.PiGemmaForCausalLM))
        module.get_gemma_config = tiny_gemma
        module.PaliGemmaForConditionalGenerationWithPiGemma = tiny_paligemma
        module.PiGemmaForCausalLM = tiny_expert
    try:
        yield
    finally:
        for module, get_config, paligemma, expert in saved:
            module.get_gemma_config = get_config
            module.PaliGemmaForConditionalGenerationWithPiGemma = paligemma
            module.PiGemmaForCausalLM = expert


@contextlib.contextmanager
def _tokenizer_named(name: str, directory: Path):
    """Resolve the tokenizer `name` (which LeRobot's pi processors hard-code) to a local directory while building."""
    from lerobot.processor import tokenizer_processor

    auto = tokenizer_processor.AutoTokenizer
    original = auto.from_pretrained.__func__

    def from_pretrained(cls, path, *args, **kwargs):
        return original(cls, str(directory) if str(path) == name else path, *args, **kwargs)

    auto.from_pretrained = classmethod(from_pretrained)
    try:
        yield
    finally:
        auto.from_pretrained = classmethod(original)


def features(images: tuple[str, ...]) -> tuple[dict, dict]:
    """Input and output features of a DROID-like dataset with these cameras."""
    inputs = {key: PolicyFeature(type=FeatureType.VISUAL, shape=(3, IMAGE, IMAGE)) for key in images}
    inputs["observation.state"] = PolicyFeature(type=FeatureType.STATE, shape=(STATE_DIM,))
    return inputs, {"action": PolicyFeature(type=FeatureType.ACTION, shape=(ACTION_DIM,))}


def dataset_stats(seed: int = 0) -> dict[str, dict[str, np.ndarray]]:
    """Normalisation statistics of a made-up dataset (mean/std and quantiles, as pi0.5 normalises by quantiles)."""
    rng = np.random.default_rng(seed)
    stats = {}
    for key, dim in (("observation.state", STATE_DIM), ("action", ACTION_DIM)):
        mean = rng.normal(0, 0.3, dim).astype(np.float32)
        std = rng.uniform(0.2, 0.6, dim).astype(np.float32)
        stats[key] = {"mean": mean, "std": std, "min": mean - 3 * std, "max": mean + 3 * std,
                      "q01": mean - 2 * std, "q99": mean + 2 * std}
    return stats


def build_checkpoint(kind: str, out: Path, assets: Path, seed: int = 0, dtype: str = "float32") -> Path:
    """Write a tiny LeRobot `kind` checkpoint (pi0, pi05 or smolvla) with random seeded weights into `out`.

    Args:
        kind: LeRobot policy type.
        out: checkpoint directory to create.
        assets: directory holding the tokenizer / VLM directories (created on first use).
        seed: weight seed.
        dtype: pi0 / pi0.5 weight precision ('bfloat16' keeps LeRobot's float32 exceptions, e.g. the vision tower).
    """
    if kind == "smolvla":
        vlm = write_tiny_smolvlm(assets / "smolvlm")
        inputs, outputs = features(SMOLVLA_IMAGES)
        config = make_policy_config("smolvla", vlm_model_name=str(vlm), load_vlm_weights=False, num_vlm_layers=2,
                                    resize_imgs_with_padding=(IMAGE, IMAGE), chunk_size=CHUNK, n_action_steps=CHUNK,
                                    num_steps=2, tokenizer_max_length=16, max_state_dim=16, max_action_dim=16,
                                    input_features=inputs, output_features=outputs, device="cpu")
        tokenizer = contextlib.nullcontext()
    else:
        tok = assets / "paligemma_tokenizer"
        if not tok.exists():
            write_tokenizer(tok)
        inputs, outputs = features(PI0_IMAGES)
        config = make_policy_config(kind, dtype=dtype, image_resolution=(IMAGE, IMAGE), chunk_size=CHUNK,
                                    n_action_steps=CHUNK, num_inference_steps=2, tokenizer_max_length=16,
                                    max_state_dim=16, max_action_dim=16, input_features=inputs,
                                    output_features=outputs, device="cpu")
        tokenizer = _tokenizer_named(PALIGEMMA_TOKENIZER, tok)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        policy = get_policy_class(kind)(config)
    with tokenizer:
        pre, post = make_pre_post_processors(config, dataset_stats=dataset_stats())
    for step in pre.steps:  # name the local tokenizer in policy_preprocessor.json, so it loads offline
        if getattr(step, "tokenizer_name", None) == PALIGEMMA_TOKENIZER:
            step.tokenizer_name = str(assets / "paligemma_tokenizer")
    policy.save_pretrained(out)
    pre.save_pretrained(out)
    post.save_pretrained(out)
    return out


# -- tiny SmolVLM ----------------------------------------------------------------------------------------------------
def write_tiny_smolvlm(out: Path) -> Path:
    """A SmolVLM directory (config.json, tokenizer, image/video processor) of test size, as SmolVLA reads it."""
    if (out / "config.json").exists():
        return out
    from transformers import SmolVLMConfig, SmolVLMImageProcessor, SmolVLMProcessor, SmolVLMVideoProcessor

    tokenizer = write_tokenizer(out / "tokenizer", SMOLVLM_SPECIALS)
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tokenizer)
    text = {"model_type": "llama", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
            "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 8, "vocab_size": VOCAB,
            "max_position_embeddings": 256, "pad_token_id": tok.pad_token_id}
    vision = {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
              "image_size": IMAGE, "patch_size": 8}
    config = SmolVLMConfig(text_config=text, vision_config=vision, scale_factor=2,
                           image_token_id=tok.convert_tokens_to_ids("<image>"))
    config.save_pretrained(out)
    size = {"longest_edge": IMAGE}
    processor = SmolVLMProcessor(SmolVLMImageProcessor(size=size, max_image_size=size), tok,
                                 video_processor=SmolVLMVideoProcessor(), image_seq_len=4)
    processor.save_pretrained(out)
    shutil.rmtree(out / "tokenizer")
    return out


# -- finetuned copies ------------------------------------------------------------------------------------------------
def finetuned_copy(base: Path, out: Path, seed: int, scale: float = 0.05) -> Path:
    """A copy of `base` whose floating weights moved by seeded noise (as a finetune would move them)."""
    shutil.copytree(base, out)
    generator = torch.Generator().manual_seed(seed)
    tensors = load_file(base / "model.safetensors")
    moved = {n: (t + scale * torch.randn(t.shape, generator=generator).to(t.dtype)) if t.is_floating_point() else t
             for n, t in tensors.items()}
    save_file(moved, out / "model.safetensors", metadata={"format": "pt"})
    return out


def config_type(checkpoint: Path) -> str:
    return json.loads((checkpoint / "config.json").read_text())["type"]


# -- observations, as the node assembles them -------------------------------------------------------------------------
def node_observations(count: int, seed: int = 0, size: tuple[int, int] = (24, 40)) -> list:
    """Observations built by the node's own code from standard ROS messages (`NodeInputs`, which runs
    `ControlLoop.observation`), fed with rosbags message objects as bag replay feeds them."""
    from rosbags.typesys import Stores, get_typestore

    from retain_ros.control.inputs import InputSettings, NodeInputs
    from retain_ros.topics import FR3_ARM_JOINTS, FR3_FINGER_JOINTS, Topics

    types = get_typestore(Stores.ROS2_JAZZY).types
    topics, rng = Topics(), np.random.default_rng(seed)
    assembler = NodeInputs(InputSettings(), ("exterior", "wrist"))

    def header(stamp_ns: int):
        sec, nanosec = divmod(stamp_ns, 10**9)
        return types["std_msgs/msg/Header"](stamp=types["builtin_interfaces/msg/Time"](sec=sec, nanosec=nanosec),
                                            frame_id="")

    def joints(names, positions, stamp_ns):
        return types["sensor_msgs/msg/JointState"](header=header(stamp_ns), name=list(names), position=positions,
                                                   velocity=np.zeros(0), effort=np.zeros(0))

    out, start = [], 1_700_000_000 * 10**9
    instruction = types["std_msgs/msg/String"](data="pick up the red cube")
    assembler.feed(topics.instruction, start, instruction)
    for k in range(count):
        now = start + (k + 1) * 66_666_667
        for topic in (topics.exterior_image, topics.wrist_image):
            h, w = size
            rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            assembler.feed(topic, now, types["sensor_msgs/msg/Image"](
                header=header(now), height=h, width=w, encoding="rgb8", is_bigendian=0, step=w * 3,
                data=rgb.reshape(-1)))
        assembler.feed(topics.joint_states, now,
                       joints(FR3_ARM_JOINTS, rng.uniform(-0.5, 0.5, 7), now))
        assembler.feed(topics.gripper_states, now,
                       joints(FR3_FINGER_JOINTS, np.full(2, rng.uniform(0, 0.04)), now))
        obs = assembler.observation(now)
        assert obs is not None, assembler.problems(now)
        out.append(obs)
    return out


def intended_groups(policy) -> dict[str, str]:
    """Checkpoint name -> the group its module belongs to, from the LeRobot model's structure (not from names).

    Vision = the vision tower and its projector into the language model, language = the VLM's language model and
    head, action = the action expert and every projection around it.
    """
    model = policy.policy.model
    if hasattr(model, "paligemma_with_expert"):
        backbone, vlm = "paligemma_with_expert", model.paligemma_with_expert.paligemma
        parts = {"vision": [vlm.model.vision_tower, vlm.model.multi_modal_projector],
                 "language": [vlm.model.language_model, vlm.lm_head],
                 "action": [model.paligemma_with_expert.gemma_expert]}
    else:
        backbone, vlm = "vlm_with_expert", model.vlm_with_expert.vlm
        parts = {"vision": [vlm.model.vision_model, vlm.model.connector],
                 "language": [vlm.model.text_model, vlm.lm_head],
                 "action": [model.vlm_with_expert.lm_expert]}
    parts["action"] += [child for name, child in model.named_children() if name != backbone]
    group_of_storage = {t.data_ptr(): group for group, modules in parts.items() for module in modules
                        for t in module.state_dict().values()}
    return {name: group_of_storage.get(t.data_ptr(), "?") for name, t in policy.named_parameters()}


def with_action_stats(checkpoint: Path, out: Path, low: np.ndarray, high: np.ndarray) -> Path:
    """A copy of `checkpoint` whose processors' action statistics describe the range [low, high] (as a dataset of
    other actions would: lerobot-train saves the finetuning data's statistics)."""
    from safetensors.numpy import load_file as load_numpy, save_file as save_numpy

    from retain_ros.merge.statistics import processor_files

    shutil.copytree(checkpoint, out)
    lo, hi = np.asarray(low, np.float32), np.asarray(high, np.float32)
    action = {"min": lo, "max": hi, "q01": lo * 0.9, "q99": hi * 0.9, "mean": (lo + hi) / 2, "std": (hi - lo) / 4}
    for path in processor_files(out):
        if path.suffix == ".safetensors":
            stats = load_numpy(str(path))
            stats.update({f"action.{k}": v for k, v in action.items() if f"action.{k}" in stats})
            save_numpy(stats, str(path))
    return out


def io_for(kind: str):
    """The camera/state/action mapping of the tiny checkpoints: pi0 / pi0.5 use the shipped DROID one."""
    from retain_ros.policy.lerobot_io import DROID_FR3_IO, LeRobotIO

    if kind != "smolvla":
        return DROID_FR3_IO
    return LeRobotIO.from_params([f"exterior={SMOLVLA_IMAGES[0]}", f"wrist={SMOLVLA_IMAGES[1]}"],
                                 ["joint_positions", "gripper_position"], "joint_velocity", "closed_is_1")
