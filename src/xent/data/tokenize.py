"""Tokenisers of task=lm: characters (nanoGPT's shakespeare_char) and byte-level BPE trained
offline with Hugging Face `tokenizers`. Both save to and load from one JSON file, which the
token cache keeps beside its token ids, so a cached corpus decodes exactly as it was encoded."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Protocol

TOKENIZERS = ("char", "bpe")


class Tokenizer(Protocol):
    """What the data module and the task need of a tokeniser."""

    kind: str

    @property
    def vocab_size(self) -> int: ...

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: list[int]) -> str: ...

    def token_bytes(self) -> list[int]:
        """UTF-8 bytes each token id stands for (bits per byte counts the evaluated bytes)."""
        ...

    def save(self, path: Path) -> None: ...


class CharTokenizer:
    """One id per character, ids in sorted character order (nanoGPT's vocabulary)."""

    kind = "char"

    def __init__(self, chars: str):
        self.chars = "".join(sorted(set(chars)))
        self.index = {ch: i for i, ch in enumerate(self.chars)}

    @classmethod
    def train(cls, text: str) -> CharTokenizer:
        return cls(text)

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> list[int]:
        index = self.index
        return [index[ch] for ch in text]

    def decode(self, ids: list[int]) -> str:
        return "".join(self.chars[i] for i in ids)

    def token_bytes(self) -> list[int]:
        return [len(ch.encode("utf-8")) for ch in self.chars]

    def save(self, path: Path) -> None:
        path.write_text(json.dumps({"kind": "char", "chars": self.chars}))


class BPETokenizer:
    """Byte-level BPE (GPT-2's pre-tokenisation): any text encodes, decode inverts encode."""

    kind = "bpe"

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer

    @classmethod
    def train(cls, text: str, vocab_size: int) -> BPETokenizer:
        from tokenizers import Tokenizer as HFTokenizer
        from tokenizers import decoders, models, pre_tokenizers, trainers

        tokenizer = HFTokenizer(models.BPE())
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tokenizer.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        tokenizer.train_from_iterator(_chunks(text), trainer=trainer)
        return cls(tokenizer)

    @classmethod
    def from_json(cls, text: str) -> BPETokenizer:
        from tokenizers import Tokenizer as HFTokenizer

        return cls(HFTokenizer.from_str(text))

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text).ids

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(list(ids))

    def token_bytes(self) -> list[int]:
        # A byte-level token is a string over GPT-2's 256-symbol byte alphabet: a symbol per byte.
        return [len(self.tokenizer.id_to_token(i)) for i in range(self.vocab_size)]

    def save(self, path: Path) -> None:
        path.write_text(json.dumps({"kind": "bpe", "tokenizer": self.tokenizer.to_str()}))


def _chunks(text: str, size: int = 1 << 16) -> list[str]:
    """The training text in pieces: `tokenizers` trains from an iterator of strings."""
    return [text[i : i + size] for i in range(0, len(text), size)]


def train_tokenizer(kind: str, text: str, vocab_size: int) -> Tokenizer:
    """A tokeniser of `kind` fitted to `text` (BPE: `vocab_size` ids; char: the text's
    characters). `kind` is checked by the caller (`TOKENIZERS`)."""
    if kind == "char":
        return CharTokenizer.train(text)
    return BPETokenizer.train(text, vocab_size)


def load_tokenizer(path: Path) -> Tokenizer:
    """The tokeniser `save` wrote to `path`."""
    saved = json.loads(path.read_text())
    if saved["kind"] == "char":
        return CharTokenizer(saved["chars"])
    return BPETokenizer.from_json(saved["tokenizer"])
