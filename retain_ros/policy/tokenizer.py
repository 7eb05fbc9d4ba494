"""A self-contained word tokenizer for instructions: a fixed vocabulary plus hashed buckets for unseen words.

The vocabulary is fixed in code (and written into each checkpoint's tokenizer.json), not learnt from data, so the
pretrained and every finetuned checkpoint share one embedding table shape and row meaning (a merge interpolates them
row by row). A word outside the vocabulary is not mapped to one shared <unk>: it goes to one of `num_buckets` rows
chosen by a stable hash (crc32) of the word, so two different unseen words usually get different embeddings, and the
same word gets the same one on every machine and every run.
"""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from retain_ros.errors import ConfigError

TOKENIZER_NAME = "tokenizer.json"
PAD_ID = 0
BOS_ID = 1
_SPECIALS = ("<pad>", "<bos>")
# Words of tabletop instructions (objects, colours, verbs, relations); anything else is hashed.
DEFAULT_WORDS = (
    "a an the this that it its them and or then to of on onto in into inside at from with by off up down over under "
    "near next beside behind front left right forward forwards backward backwards away toward towards top bottom "
    "side middle center centre both all each other pick place put push pull move slide lift stack drop grab take "
    "open close turn rotate press touch hold release set lay robot gripper cube cubes block blocks plate plates bowl "
    "cup mug box table object objects red green blue yellow purple orange white black pink brown gray grey small "
    "large big one two three first second please carefully slowly quickly so is"
).split()
_WORD = re.compile(r"[a-z0-9]+")


@dataclass(frozen=True)
class WordTokenizer:
    """Lower-cased alphanumeric words -> ids: specials, then the vocabulary, then `num_buckets` hash buckets.

    Attributes:
        words: the fixed vocabulary.
        num_buckets: rows reserved for unseen words.
        max_length: tokens per instruction (BOS + words, truncated, padded with PAD).
    """

    words: tuple[str, ...] = tuple(DEFAULT_WORDS)
    num_buckets: int = 64
    max_length: int = 16

    def __post_init__(self) -> None:
        if len(set(self.words)) != len(self.words):
            raise ConfigError("tokenizer vocabulary has repeated words")
        if self.num_buckets < 1 or self.max_length < 2:
            raise ConfigError(f"tokenizer needs num_buckets >= 1 and max_length >= 2, got {self.num_buckets}, "
                              f"{self.max_length}")

    @property
    def vocab_size(self) -> int:
        """Rows of the embedding table this tokenizer indexes."""
        return len(_SPECIALS) + len(self.words) + self.num_buckets

    def _ids(self) -> dict[str, int]:
        return {w: len(_SPECIALS) + i for i, w in enumerate(self.words)}

    def word_id(self, word: str) -> int:
        """Id of one (lower-case) word: its vocabulary row, or a stable hash bucket when unseen."""
        known = self._ids().get(word)
        if known is not None:
            return known
        return len(_SPECIALS) + len(self.words) + zlib.crc32(word.encode("utf-8")) % self.num_buckets

    def encode(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """Tokenise one instruction.

        Returns:
            (ids, mask): int64 and bool arrays of length `max_length`; mask is True on real tokens.
        """
        ids = self._ids()
        bucket0 = len(_SPECIALS) + len(self.words)
        tokens = [BOS_ID]
        for word in _WORD.findall(text.lower())[: self.max_length - 1]:
            tokens.append(ids.get(word, bucket0 + zlib.crc32(word.encode("utf-8")) % self.num_buckets))
        out = np.full(self.max_length, PAD_ID, dtype=np.int64)
        out[: len(tokens)] = tokens
        return out, out != PAD_ID

    def encode_batch(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Tokenise several instructions: (N, max_length) ids and mask."""
        pairs = [self.encode(t) for t in texts]
        return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])

    def to_dict(self) -> dict:
        """JSON-able form (tokenizer.json)."""
        return {"kind": "word+hash", "specials": list(_SPECIALS), "words": list(self.words),
                "num_buckets": self.num_buckets, "max_length": self.max_length}

    def save(self, directory: str | Path) -> Path:
        """Write tokenizer.json into a checkpoint directory."""
        path = Path(directory) / TOKENIZER_NAME
        path.write_text(json.dumps(self.to_dict(), indent=1) + "\n")
        return path

    @classmethod
    def load(cls, directory: str | Path) -> WordTokenizer:
        """Read tokenizer.json from a checkpoint directory.

        Raises:
            ConfigError: missing or malformed file.
        """
        path = Path(directory) / TOKENIZER_NAME
        try:
            data = json.loads(path.read_text())
            return cls(tuple(data["words"]), int(data["num_buckets"]), int(data["max_length"]))
        except FileNotFoundError:
            raise ConfigError(f"{path} is missing; the reference VLA checkpoint needs its tokenizer") from None
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise ConfigError(f"{path} is not a valid tokenizer file ({exc!r})") from None
