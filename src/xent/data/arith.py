"""Addition questions for task=lm (`data=arith`): `17+85=102`, generated offline from a seed.

Why: DCO (loss=dco) scores whole answers, so it needs text whose prompts are masked and whose
answers are verifiable; pass@k (xent.tasks.lm_eval) samples answers and checks them.

Every question `a+b=` with `0 <= a, b < 10**digits` is a member of one universe, shuffled by
`split_seed`: the first `test_size` questions are the test split, the next `val_size` validation,
the next `train_size` training, so the three are disjoint. A row is one question and its answer,
`a+b=c` and a newline that ends the answer, padded to the longest row; the characters are the
tokens (`CharTokenizer` over `0-9 + = newline`). Targets are the next characters with the prompt
(everything up to `=`) and the padding set to IGNORE_INDEX, so a row's trained positions are
exactly its answer span `c` + newline: token CE trains on answers, DCO sums their log-probs.

Batches: training draws `batch_size` questions per optimizer step from a seeded pass order
(seed, pass), so `train_size / batch_size` steps are one pass (one fine-tuning epoch where
`eval_interval` is that many steps) and a resumed run sees the same batches. Validation and test
run over their whole split, in order.
"""

from __future__ import annotations

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from xent.checks import integer
from xent.data.text import StepSeeds
from xent.data.tokenize import CharTokenizer
from xent.errors import ConfigError

IGNORE_INDEX = -100  # xent.losses.lm_head.IGNORE_INDEX: data sits below the losses' layer
ALPHABET = "0123456789+=\n"
END = "\n"


def question_text(a: int, b: int) -> str:
    """The prompt the model answers: `a+b=`."""
    return f"{a}+{b}="


def answer_text(a: int, b: int) -> str:
    """The answer span the model is trained on and sampled for: the sum and the end mark."""
    return f"{a + b}{END}"


def question_pairs(digits: int, sizes: dict[str, int], split_seed: int) -> dict[str, np.ndarray]:
    """(n, 2) operand pairs per split, drawn without replacement from the shuffled universe of
    all `10**digits` squared questions: test first, then val, then train, so none is shared."""
    span = 10**digits
    need = sum(sizes.values())
    if need > span * span:
        raise ConfigError(
            f"data.train_size + val_size + test_size = {need} questions, but {digits}-digit "
            f"addition has only {span * span}: use fewer or data.digits={digits + 1}"
        )
    order = np.random.default_rng(split_seed).permutation(span * span)
    pairs, start = {}, 0
    for split in ("test", "val", "train"):
        chosen = order[start : start + sizes[split]]
        pairs[split] = np.stack([chosen // span, chosen % span], axis=1)
        start += sizes[split]
    return pairs


def encode_rows(
    tokenizer: CharTokenizer, pairs: np.ndarray, width: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs, targets), each (n, width): a row is `a+b=c` + END; the targets are the next
    characters, IGNORE_INDEX on the prompt and the padding (inputs are padded with END)."""
    pad = tokenizer.encode(END)[0]
    inputs = torch.full((len(pairs), width), pad, dtype=torch.long)
    targets = torch.full((len(pairs), width), IGNORE_INDEX, dtype=torch.long)
    for row, (a, b) in enumerate(pairs.tolist()):
        prompt = tokenizer.encode(question_text(a, b))
        ids = prompt + tokenizer.encode(answer_text(a, b))
        inputs[row, : len(ids) - 1] = torch.tensor(ids[:-1])
        targets[row, len(prompt) - 1 : len(ids) - 1] = torch.tensor(ids[len(prompt) :])
    return inputs, targets


class ArithDataModule(L.LightningDataModule):
    """Addition questions with masked prompts, for fine-tuning and pass@k (module docstring)."""

    target_kind = "tokens"

    def __init__(
        self,
        digits: int = 2,
        train_size: int = 2000,
        val_size: int = 100,
        test_size: int = 100,
        batch_size: int = 50,
        eval_interval: int = 40,
        block_size: int = 64,
        split_seed: int = 0,
        shuffle_seed: int = 0,
        vocab_size: int | None = None,
        **_: object,
    ):
        super().__init__()
        integer("data.digits", digits, at_least=1, at_most=4)
        for key, value in (
            ("train_size", train_size),
            ("val_size", val_size),
            ("test_size", test_size),
            ("batch_size", batch_size),
            ("eval_interval", eval_interval),
        ):
            integer(f"data.{key}", value, at_least=1)
        self.digits, self.batch_size, self.eval_interval = digits, batch_size, eval_interval
        self.sizes = {"train": train_size, "val": val_size, "test": test_size}
        self.split_seed, self.shuffle_seed = split_seed, shuffle_seed
        self.tokenizer = CharTokenizer(ALPHABET)
        # The longest row: two operands, `+`, `=`, a sum one digit longer, END; minus the shift.
        self.width = 2 * digits + 2 + (digits + 1) + 1 - 1
        if block_size < self.width:
            raise ConfigError(
                f"data.block_size={block_size} is shorter than a {digits}-digit question and its "
                f"answer ({self.width} tokens): use a larger block_size"
            )
        self.block_size = block_size
        self.token_bytes = torch.ones(self.tokenizer.vocab_size, dtype=torch.long)
        self.pairs: dict[str, np.ndarray] = {}

    # -- what the task reads ---------------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.vocab_size

    def prepare_data(self) -> None:
        """Nothing to download: the questions come from the seed (checked here, once)."""
        self.setup()

    def setup(self, stage: str | None = None) -> None:
        if not self.pairs:
            self.pairs = question_pairs(self.digits, self.sizes, self.split_seed)

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text)

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids)

    def questions(self, split: str) -> list[tuple[str, str]]:
        """(prompt, correct answer without END) of every question of `split`: what pass@k
        samples from and checks against."""
        return [(question_text(a, b), str(a + b)) for a, b in self.pairs[split].tolist()]

    # -- loaders ---------------------------------------------------------------------------------

    def rows(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        return encode_rows(self.tokenizer, self.pairs[split], self.width)

    def train_dataloader(self) -> DataLoader:
        sampler = StepSeeds(self.eval_interval, 0, self._steps_done)
        batches = PassBatches(*self.rows("train"), self.batch_size, self.shuffle_seed)
        return DataLoader(batches, sampler=sampler, batch_size=None)

    def _steps_done(self) -> int:
        trainer = getattr(self, "trainer", None)
        return int(trainer.global_step) if trainer is not None else 0

    def _eval_loader(self, split: str) -> DataLoader:
        inputs, targets = self.rows(split)
        return DataLoader(
            list(zip(inputs.split(self.batch_size), targets.split(self.batch_size), strict=True)),
            batch_size=None,
        )

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader("test")


class PassBatches(Dataset):
    """Optimizer step -> its batch: step s takes questions [s·B, (s+1)·B) of the endless
    sequence of passes over the training rows, each pass in an order seeded by (seed, pass)."""

    def __init__(self, inputs: torch.Tensor, targets: torch.Tensor, batch_size: int, seed: int):
        self.inputs, self.targets, self.batch_size, self.seed = inputs, targets, batch_size, seed
        self._orders: dict[int, torch.Tensor] = {}

    def order(self, epoch: int) -> torch.Tensor:
        if epoch not in self._orders:
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._orders[epoch] = torch.randperm(len(self.inputs), generator=gen)
        return self._orders[epoch]

    def indices(self, step: int) -> list[int]:
        n = len(self.inputs)
        positions = range(step * self.batch_size, (step + 1) * self.batch_size)
        return [int(self.order(p // n)[p % n]) for p in positions]

    def __getitem__(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        rows = self.indices(step)
        return self.inputs[rows], self.targets[rows]
