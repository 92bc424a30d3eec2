"""The bad-input catalogue (issue 9): every way a command line, a data folder, a checkpoint or
the disk can be wrong, run through the CLI as a user would.

Each case: a non-zero exit, exactly one line on stderr naming the key or path and what was
expected, no traceback (unless HYDRA_FULL_ERROR=1), and an earlier run in the run dir left
byte for byte as it was. Bad input exits 2 before anything is written; a full disk exits 1,
in a run that started: the earlier run was set aside into archive/ (a notice on stdout says
so), where it stays whole.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.cli_batch import CLI_ENTRY, Command, run_commands
from tests.conftest import REPO, write_cifar, xent_run

CONF = REPO / "src" / "xent" / "conf"
ROOT = "{root}"  # stands for the catalogue's temp dir in the cases below
MOVED = "held an earlier run; moved it to"  # the notice of a run that starts (not an error)


@dataclass(frozen=True)
class Case:
    """One bad command. `{root}` in any field is the catalogue's temp dir."""

    overrides: tuple[str, ...]
    expected: tuple[str, ...]  # fragments the one stderr line must contain
    exit_code: int = 2  # 2: bad input, caught before writing; 1: a run that failed
    run_dir: str = ""  # default: {root}/runs/<case index>, holding a copy of an earlier run
    mount: str = ""  # the tmpfs this case needs (ro, full, filled), see `prepare_mounts`
    env: tuple[tuple[str, str], ...] = ()
    traceback: bool = False  # HYDRA_FULL_ERROR=1: the whole traceback instead of one line
    without_cuda: bool = False  # bad input only where no CUDA device is visible


# --- unknown options, generated from the config folders: a new group is covered by itself ----

# What selects the group in the first place (teacher and source come with their task), and
# the groups that are not in the root defaults list and are appended with +.
GROUP_CONTEXT = {
    "teacher": ("task=distill",),
    "teacher/recipe": ("task=distill",),
    "source": ("tta=norm",),
    "calibrator": ("task=calibrate",),
}
APPENDED_GROUPS = {"flow_pair", "lm_loss"}


def config_groups() -> list[str]:
    """Every folder of conf/ that holds option files: hydra, hydra/launcher, teacher/recipe..."""
    return sorted(
        folder.relative_to(CONF).as_posix()
        for folder in CONF.rglob("*")
        if folder.is_dir() and any(folder.glob("*.yaml"))
    )


def unknown_option_case(group: str) -> Case:
    """`group=nope` must list the group's options (Hydra's own may come on top: basic, ...)."""
    options = sorted(p.stem for p in (CONF / group).glob("*.yaml"))
    prefix = "+" if group in APPENDED_GROUPS else ""
    return Case(
        (*GROUP_CONTEXT.get(group, ()), f"{prefix}{group}=nope"),
        (f"error: {group}=nope is not an option; valid: ", *options),
    )


CASES: dict[str, Case] = {f"unknown {g} option": unknown_option_case(g) for g in config_groups()}

CASES.update(
    {
        # --- keys that do not exist, and values of the wrong type -----------------------------
        "unknown key": Case(
            ("nokey=1",),
            (
                "error: unknown key 'nokey'; valid top-level keys: base, calibrator, callbacks, "
                "ckpt_path, claim, data, dco_loss, eval_ckpt, experiment,",
                "loss, model, optim,",
            ),
        ),
        "misspelt top-level key": Case(("los=sce",), ("unknown key 'los'; did you mean 'loss'?",)),
        # Hydra's own advice for the line above: it used to train cross-entropy and exit 0.
        "misspelt key added with +": Case(
            ("+los=sce",), ("unknown key 'los'; did you mean 'loss'?",)
        ),
        "misspelt key in a multirun": Case(
            ("-m", "los=ce,sce"), ("unknown key 'los'; did you mean 'loss'?",)
        ),
        "comma list without -m": Case(
            ("loss=ce,sce",),
            (
                "error: loss=ce,sce is a sweep: a comma list sweeps only with -m "
                "(xent-run -m loss=ce,sce)",
            ),
        ),
        "range without -m": Case(
            ("seed=range(3)",),
            ("error: seed=range(3) is a sweep: range() sweeps only with -m",),
        ),
        "epochs not an integer": Case(
            ("trainer.max_epochs=abc",),
            ("trainer.max_epochs=abc: expected an integer (default 20)",),
        ),
        "batch size not an integer": Case(
            ("data.batch_size=1.5",), ("data.batch_size=1.5: expected an integer (default 64)",)
        ),
        "lr not a number": Case(
            ("optim.lr=fast",), ("optim.lr=fast: expected a number (default 0.05)",)
        ),
        "flag not a bool": Case(
            ("data.hflip=maybe",), ("data.hflip=maybe: expected true or false (default False)",)
        ),
        "checkpoint choice": Case(
            ("eval_ckpt=foo",), ("eval_ckpt='foo' must be one of last, best",)
        ),
        # --- out of range -------------------------------------------------------------------
        "lr < 0": Case(("optim.lr=-0.1",), ("optim.lr=-0.1 must be a number > 0",)),
        "momentum < 0": Case(
            ("optim.momentum=-1",), ("optim=sgd: ValueError: Invalid momentum value: -1",)
        ),
        "seed < 0": Case(("seed=-1",), ("seed=-1 must be an integer >= 0",)),
        "batch size 0": Case(
            ("data.batch_size=0",), ("data=digits: data.batch_size=0 must be a positive integer",)
        ),
        "label noise 1": Case(
            ("data.label_noise=1.0",), ("data=digits: data.label_noise=1.0 must be in [0, 1)",)
        ),
        "label smoothing 2": Case(
            ("loss.label_smoothing=2.0",),
            ("loss=ce: ", "label_smoothing must be between 0.0 and 1.0"),
        ),
        "focal gamma < 0": Case(
            ("loss=focal", "loss.gamma=-1"), ("loss=focal: loss.gamma=-1 must be >= 0",)
        ),
        "pld tau 0": Case(("loss=pld", "loss.tau=0"), ("loss=pld: loss.tau=0 must be > 0",)),
        "wcfm eps 0": Case(("loss=wcfm", "loss.eps=0"), ("loss=wcfm: loss.eps=0 must be > 0",)),
        "hlgauss one bin": Case(
            ("task=regress", "data=diabetes", "model=mlp", "loss=hlgauss", "loss.num_bins=1"),
            ("loss=hlgauss: loss.num_bins=1 must be an integer >= 2",),
        ),
        # --- required values missing (no config has ???: these keys have values every run needs)
        "num_classes null": Case(
            ("data.num_classes=null",), ("data.num_classes=null: expected an integer (default 10)",)
        ),
        "input_shape null": Case(
            ("data.input_shape=null",),
            (
                "data.input_shape=null: expected the shape of one input, a list of positive "
                "integers",
            ),
        ),
        "teacher model null": Case(
            ("loss=pld", "teacher.model=null"),
            ("teacher.model=null: expected a model config with a _target_",),
        ),
        # --- combinations that cannot work --------------------------------------------------
        "flow loss on classification data": Case(
            ("loss=cfm", "data=breast_cancer"),
            (
                "data=breast_cancer has class labels but task=flow trains on source/target point "
                "clouds or images: use data=toy2d",
            ),
        ),
        "class loss on task=flow": Case(
            ("loss=ce", "task=flow", "data=toy2d", "model=velocity_mlp"),
            ("loss=ce trains on class labels but task=flow needs a flow-matching loss",),
        ),
        "regression data on task=classify": Case(
            ("data=diabetes",),
            (
                "data=diabetes has real-valued targets but task=classify trains on class labels: "
                "use task=regress",
            ),
        ),
        "class loss on task=regress": Case(
            ("task=regress", "data=diabetes", "model=mlp"),
            (
                "loss=ce trains on class labels but task=regress needs a regression loss "
                "(mse, hlgauss)",
            ),
        ),
        "image model on a table": Case(
            ("data=breast_cancer", "model=resnet8"),
            (
                "model=resnet8 takes images, but data=breast_cancer is a table (rows of shape "
                "[30]): use model=mlp",
            ),
        ),
        "model channels vs data": Case(
            ("model=resnet20", "model.in_channels=3"),
            (
                "model=resnet20 cannot take data=digits input of shape 1x8x8: RuntimeError: ",
                "channels",
            ),
        ),
        "model classes vs data": Case(
            ("model=resnet20", "model.num_classes=7"),
            ("model=resnet20 returns (7,) outputs per sample but data=digits has 10 classes",),
        ),
        "pld without a teacher node": Case(
            ("loss=pld", "~teacher"),
            (
                "no teacher: the config has no teacher node, but the loss needs its logits; "
                "select one with teacher=<option> (valid: for_cifar10,",
            ),
        ),
        "pld with teacher=null": Case(
            ("loss=pld", "teacher=null"),
            (
                "teacher=null: teacher is a config group; pick an option (for_cifar10,",
                "or drop it with ~teacher",
            ),
        ),
        "pld with a missing teacher checkpoint": Case(
            ("loss=pld", "teacher.ckpt={root}/nonexistent.pt"),
            ("teacher.ckpt={root}/nonexistent.pt: no such file",),
        ),
        "pld with no teacher cached, none to train": Case(
            ("loss=pld", "teacher.train_if_missing=false"),
            (
                "no teacher: teacher.ckpt is null and the cache has none at {root}/teachers/",
                "pass teacher.ckpt=PATH, or teacher.train_if_missing=true",
            ),
        ),
        "teacher of 100 classes on 10-class data": Case(
            ("loss=pld", "teacher.ckpt={root}/teacher100.pt"),
            ("teacher.ckpt={root}/teacher100.pt: the teacher has 100 classes but the data has 10",),
        ),
        "teacher checkpoint cut in half": Case(
            ("loss=pld", "teacher.ckpt={root}/teacher-cut.pt"),
            (
                "teacher.ckpt={root}/teacher-cut.pt: corrupt or truncated (",
                " bytes), not a whole checkpoint; save or copy it again",
            ),
        ),
        "tta source of another architecture": Case(
            ("tta=norm", "source.ckpt={root}/resnet8.pt"),
            (
                "source.ckpt={root}/resnet8.pt is not a state dict of source.model=resnet20: ",
                "missing (e.g. ",
            ),
        ),
        "tta without a source node": Case(
            ("tta=norm", "~source"),
            ("no source model: the config has no source node, but task=tta adapts it",),
        ),
        "tta without a method": Case(
            ("task=tta", "data=digits32_c", "model=resnet8"),
            ("task=tta needs a method: tta=source, norm, tent, cotta or rmt",),
        ),
        # --- dataset files missing, truncated, of the wrong shape -----------------------------
        "cifar folder absent": Case(
            ("data=cifar100", "data.download=false", "paths.data_dir={root}/no-data"),
            (
                "cifar100: train, test, meta not found under {root}/no-data/cifar-100-python",
                "cifar-100-python.tar.gz",
            ),
        ),
        "cifar batch truncated": Case(
            ("data=cifar10", "data.download=false", "paths.data_dir={root}/cifar"),
            (
                "cifar10: {root}/cifar/cifar-10-batches-py/data_batch_3 failed torchvision's "
                "checksum (truncated, or not the original file)",
            ),
            env=(("XENT_TEST_CIFAR_MD5", "{root}/cifar/md5.json"),),
        ),
        "cifar-c corruption file missing": Case(
            (
                "tta=norm",
                "data=cifar10_c",
                "paths.data_dir={root}/cc",
                "data.corruptions=[gaussian_noise,shot_noise]",
            ),
            ("{root}/cc/CIFAR-10-C/shot_noise.npy not found; make it with: xent-corrupt",),
        ),
        "cifar-c npy of the wrong shape": Case(
            (
                "tta=norm",
                "data=cifar10_c",
                "paths.data_dir={root}/cc-shape",
                "data.corruptions=[gaussian_noise]",
            ),
            (
                "{root}/cc-shape/CIFAR-10-C/gaussian_noise.npy: shape (50, 32, 32), but the layout "
                "needs (5*N, 32, 32, 3)",
            ),
        ),
        "cifar-c npy truncated": Case(
            (
                "tta=norm",
                "data=cifar10_c",
                "paths.data_dir={root}/cc-cut",
                "data.corruptions=[gaussian_noise]",
            ),
            (
                "{root}/cc-cut/CIFAR-10-C/gaussian_noise.npy: not a readable .npy file",
                "mmap length is greater than file size",
            ),
        ),
        # --- checkpoints to continue from, and the device to run on ---------------------------
        "ckpt_path missing": Case(
            ("ckpt_path={root}/nonexistent.ckpt",),
            ("error: ckpt_path={root}/nonexistent.ckpt: no such file",),
        ),
        "ckpt_path cut in half": Case(
            ("ckpt_path={root}/last-cut.ckpt",),
            (
                "error: ckpt_path={root}/last-cut.ckpt: corrupt or truncated (",
                " bytes), not a whole checkpoint; save or copy it again",
            ),
        ),
        "trainer=gpu without a GPU": Case(
            ("trainer=gpu",),
            (
                "error: trainer.accelerator=gpu (trainer=gpu): no CUDA device is visible here; "
                "use trainer=cpu, or trainer=default",
            ),
            without_cuda=True,
        ),
        # --- where the run would write -------------------------------------------------------
        "run dir under a file": Case(
            ("trainer.max_epochs=1",),
            (
                "hydra.run.dir={root}/blocked/afile/run: cannot make it, {root}/blocked/afile is a "
                "file, not a directory",
            ),
            run_dir="{root}/blocked/afile/run",
        ),
        "run dir on a read-only disk": Case(
            ("trainer.max_epochs=1",),
            ("hydra.run.dir={root}/ro/run: {root}/ro/run is on a read-only file system",),
            run_dir="{root}/ro/run",
            mount="ro",
        ),
        "disk fills up during the run": Case(
            ("trainer.max_epochs=1",),
            ("run failed: OSError: [Errno 28] No space left on device", "{root}/full/run"),
            exit_code=1,
            run_dir="{root}/full/run",
            mount="full",
        ),
        "disk full before hydra writes": Case(
            ("trainer.max_epochs=1",),
            (
                "run failed: OSError: [Errno 28] No space left on device "
                "(run dir: {root}/filled/run)",
            ),
            exit_code=1,
            run_dir="{root}/filled/run",
            mount="filled",
        ),
        # --- and the way to see the whole story ---------------------------------------------
        "HYDRA_FULL_ERROR=1 shows the traceback": Case(
            ("optim.lr=-0.1",),
            ("xent.errors.ConfigError: optim.lr=-0.1 must be a number > 0",),
            exit_code=1,  # the exception is raised: Python's own exit status
            env=(("HYDRA_FULL_ERROR", "1"),),
            traceback=True,
        ),
    }
)

# --- task=lm: the corpus, its tokeniser and its windows (files written by prepare_lm_corpora) --
LM = ("task=lm", f"paths.data_dir={ROOT}/lmdata")
CASES.update(
    {
        "lm: corpus path missing": Case(
            (*LM, "data=text"),
            ("data.path is missing: data=text needs data.path=FILE_OR_FOLDER",),
        ),
        "lm: corpus not there": Case(
            (*LM, "data=text", f"data.path={ROOT}/lm/nope.txt"),
            (f"data.path={ROOT}/lm/nope.txt: no such file or folder",),
        ),
        "lm: empty corpus": Case(
            (*LM, "data=text", f"data.path={ROOT}/lm/empty.txt"),
            (f"data.path={ROOT}/lm/empty.txt: the corpus is empty (no text to train on)",),
        ),
        "lm: corpus not UTF-8": Case(
            (*LM, "data=text", f"data.path={ROOT}/lm/latin1.txt"),
            (
                f"data.path={ROOT}/lm/latin1.txt: latin1.txt is not UTF-8 text (byte 0xe9 at "
                "offset 3); convert it, e.g. iconv -t utf-8",
            ),
        ),
        "lm: block longer than the validation text": Case(
            (*LM, "data=text", f"data.path={ROOT}/lm/short.txt"),
            (
                "data.block_size=64 is longer than the validation split (19 tokens; a window "
                "needs block_size + 1): use a smaller block_size or a longer corpus",
            ),
        ),
        "lm: vocabulary over the token dtype": Case(
            (*LM, "data=text", f"data.path={ROOT}/lm/wide.txt", "data.token_dtype=uint16"),
            (
                "data.token_dtype=uint16 holds ids up to 65535, but the vocabulary has 70000 "
                "tokens; use data.token_dtype=auto or int32",
            ),
        ),
        "lm: unknown tokenizer": Case(
            (*LM, "data.tokenizer=word"),
            ("data=shakespeare: data.tokenizer='word' must be one of char, bpe",),
        ),
        "lm: unknown head": Case(
            (*LM, "lm.head=sparse"), ("lm.head='sparse' must be one of dense, chunked, cce",)
        ),
        "lm: a key of task=lm without task=lm": Case(
            ("lm.head=chunked",),
            (
                "error: lm.head is not a key of this config ('lm' comes with task=lm): check its "
                "spelling, or select that option",
            ),
        ),
        "lm: an image model": Case(
            (*LM, "model=cnn"),
            ("model=cnn is not a language model (it takes no vocab_size): use model=gpt_tiny",),
        ),
        "lm: steps not a multiple of the eval interval": Case(
            (*LM, "trainer.max_steps=300"),
            (
                "trainer.max_steps=300 must be a multiple of data.eval_interval=250 (validation "
                "runs every eval_interval steps, and so at the end)",
            ),
        ),
        "lm: a trainer without steps": Case(
            (*LM, "trainer=default"),
            (
                "trainer=default has no max_steps, but task=lm counts optimizer steps: "
                "use trainer=lm",
            ),
        ),
        "lm: a class loss": Case(
            (*LM, "loss=focal"),
            ("loss=focal trains on class labels but task=lm needs a token loss",),
        ),
    }
)

# --- task=calibrate: the source run ({root}/earlier is a finished classify run on digits) -------
CALIBRATE_WANTED = "pass the run dir of a finished task=classify run"
CASES.update(
    {
        "calibrate: source run dir missing": Case(
            ("task=calibrate", f"source.run_dir={ROOT}/nope"),
            (f"source.run_dir={ROOT}/nope: no such directory; {CALIBRATE_WANTED}",),
        ),
        "calibrate: source dir holds no run": Case(
            ("task=calibrate", f"source.run_dir={ROOT}/runs"),
            (f"source.run_dir={ROOT}/runs: not a run dir (no .hydra/config.yaml)",),
        ),
        "calibrate: calibration split too small for the calibrator": Case(
            ("task=calibrate", "calibrator=ms", "data.val_fraction=0.05"),
            (
                "calibrator=ms has 110 parameters with 10 classes, more than the 90 samples of "
                "the calibration split (the source's validation split); pick calibrator=ts or "
                "ts_ca (1 parameter) or a source with a larger validation split",
            ),
        ),
        "calibrate: source run on other data": Case(
            ("task=calibrate", f"source.run_dir={ROOT}/earlier", "data.val_fraction=0.2"),
            (
                f"source.run_dir={ROOT}/earlier was trained on other data: its "
                "data.val_fraction=0.1, this run's data.val_fraction=0.2",
            ),
        ),
    }
)

# Runs the CLI as `python -m xent.runner.cli` does, with torchvision's CIFAR md5 list replaced by
# the checksums of the tiny files a case wrote (JSON at $XENT_TEST_CIFAR_MD5): then those files
# are "the originals", and only the one a case truncated fails the check, as a truncated
# download would.
_WITH_TEST_CHECKSUMS = """
import json, os
import torchvision.datasets as tvd
sums = json.loads(open(os.environ["XENT_TEST_CIFAR_MD5"]).read())
for name, files in sums.items():
    cls = getattr(tvd, name)
    cls.train_list = [[f, files[f]] for f, _ in cls.train_list]
    cls.test_list = [[f, files[f]] for f, _ in cls.test_list]
    cls.meta = {**cls.meta, "md5": files[cls.meta["filename"]]}
"""


def snapshot(folder: Path) -> dict[str, str]:
    """Content hash of every file below `folder`: proves a bad input touched nothing."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def fill(path: Path, leave: int) -> None:
    """Write `path` until its file system has `leave` bytes free (0: until it is full)."""
    with open(path, "wb", buffering=0) as handle:  # unbuffered: close has nothing to flush
        while True:
            stats = os.statvfs(path.parent)
            room = stats.f_bavail * stats.f_frsize - leave
            if room <= 0:
                break
            try:
                handle.write(b"\0" * min(room, 1 << 16))
            except OSError as err:
                if err.errno != errno.ENOSPC:
                    raise
                break


def mount_tmpfs(folder: Path, size: str) -> str:
    """Mount a tmpfs of `size` at `folder`; '' when done, else why it cannot be done here."""
    folder.mkdir(parents=True, exist_ok=True)
    if shutil.which("mount") is None:
        return "no mount command"
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
    )
    return "" if proc.returncode == 0 else f"cannot mount a tmpfs here: {proc.stderr.strip()}"


def prepare_mounts(root: Path, earlier: Path) -> tuple[dict[str, str], list[Path]]:
    """ro: an earlier run on a read-only tmpfs. full: an earlier run on a tmpfs with 64 KiB
    free (the run's .hydra and logs fit, its first checkpoint does not). filled: no room left.
    Returns (mount -> reason it is unavailable, mounted folders)."""
    unavailable, mounted = {}, []
    for name, leave in (("ro", None), ("full", 64 * 1024), ("filled", 0)):
        folder = root / name
        reason = mount_tmpfs(folder, "4m")
        if reason:
            unavailable[name] = reason
            continue
        mounted.append(folder)
        shutil.copytree(earlier, folder / "run")
        if leave is None:
            proc = subprocess.run(
                ["mount", "-o", "remount,ro", str(folder)], capture_output=True, text=True
            )
            if proc.returncode != 0:
                unavailable[name] = f"cannot remount a tmpfs read-only: {proc.stderr.strip()}"
        else:
            fill(folder / "filler", leave)
    return unavailable, mounted


def cut_copy(source: Path, target: Path) -> None:
    """The first half of `source`: a copy or download that stopped midway."""
    data = source.read_bytes()
    target.write_bytes(data[: len(data) // 2])


def why_unavailable(case: Case, mounts: dict[str, str]) -> str | None:
    """Why a case cannot run on this machine (its tmpfs cannot be mounted, or a GPU is there
    to make its command valid), or None."""
    if case.without_cuda and torch.cuda.is_available():
        return "a CUDA device is visible here: the command is valid"
    return mounts.get(case.mount)


def prepare_lm_corpora(folder: Path) -> None:
    """task=lm's bad corpora: empty, Latin-1, too short for a window, 70,000 characters."""
    folder.mkdir()
    (folder / "empty.txt").write_text("")
    (folder / "latin1.txt").write_bytes("caf\u00e9 au lait\n".encode("latin-1") * 50)
    (folder / "short.txt").write_text("to be or not to be\n" * 10)  # 190 chars: 171 train, 19 val
    (folder / "wide.txt").write_text("".join(map(chr, range(0x10000, 0x10000 + 70000))))


def prepare_data(root: Path) -> None:
    """The files the cases read: tiny CIFAR with one batch cut short, CIFAR-10-C folders that
    lack a file / have one of the wrong shape / one cut short, and two checkpoints."""
    from xent.corrupt.layout import write_corrupted
    from xent.models import resnet8, resnet20

    prepare_lm_corpora(root / "lm")
    folder = write_cifar(root / "cifar", "cifar10")
    sums = {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in folder.iterdir()}
    (root / "cifar" / "md5.json").write_text(json.dumps({"CIFAR10": sums}))
    batch = folder / "data_batch_3"
    os.truncate(batch, batch.stat().st_size // 2)

    rng = np.random.default_rng(0)
    clean = rng.integers(0, 256, (10, 32, 32, 3), dtype=np.uint8)
    for name in ("cc", "cc-shape", "cc-cut"):
        write_corrupted(root / name / "CIFAR-10-C", clean, np.arange(10), ["gaussian_noise"])
    np.save(root / "cc-shape" / "CIFAR-10-C" / "gaussian_noise.npy", clean[..., 0].repeat(5, 0))
    cut = root / "cc-cut" / "CIFAR-10-C" / "gaussian_noise.npy"
    os.truncate(cut, cut.stat().st_size // 2)

    torch.save(resnet20(num_classes=100, in_channels=1).state_dict(), root / "teacher100.pt")
    cut_copy(root / "earlier" / "checkpoints" / "last.ckpt", root / "last-cut.ckpt")
    teacher = root / "teacher-whole.pt"
    torch.save(resnet20(num_classes=10, in_channels=1).state_dict(), teacher)
    cut_copy(teacher, root / "teacher-cut.pt")
    torch.save(resnet8(num_classes=10, in_channels=3).state_dict(), root / "resnet8.pt")
    (root / "blocked").mkdir()
    (root / "blocked" / "afile").write_text("a file, not a folder\n")


def case_command(root: Path, case: Case, run_dir: Path) -> Command:
    """The case as a CLI command, as `xent_run` runs it (plus the case's environment)."""
    env = {k: v.replace(ROOT, str(root)) for k, v in case.env}
    overrides = [o.replace(ROOT, str(root)) for o in case.overrides]
    entry = (_WITH_TEST_CHECKSUMS if "XENT_TEST_CIFAR_MD5" in env else "") + CLI_ENTRY
    return Command([*overrides, f"hydra.run.dir={run_dir}"], cwd=root, env=env, entry=entry)


def selected_cases(request: pytest.FixtureRequest) -> list[str]:
    """The cases this session runs (`-k` may pick a few): only those are worth the subprocess."""
    return [
        item.callspec.params["name"]
        for item in request.session.items
        if item.module is request.module and hasattr(item, "callspec")
    ]


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory, request):
    """Every case run once (`tests.cli_batch`: a process each, two at a time): (root,
    name -> (process, run dir, earlier files, why it is skipped), the hashes of the folder with
    a file in the way before and after)."""
    root = tmp_path_factory.mktemp("bad")
    earlier = root / "earlier"
    proc = xent_run(f"hydra.run.dir={earlier}", "trainer.max_epochs=1", cwd=root)
    assert proc.returncode == 0, proc.stderr[-2000:]
    prepare_data(root)
    unavailable, mounted = prepare_mounts(root, earlier)
    jobs = {}
    selected = set(selected_cases(request))
    for index, (name, case) in enumerate(CASES.items()):
        if why_unavailable(case, unavailable) or name not in selected:
            continue
        run_dir = Path((case.run_dir or f"{ROOT}/runs/{index}").replace(ROOT, str(root)))
        if not case.run_dir:
            shutil.copytree(earlier, run_dir)
        jobs[name] = run_dir
    before = {name: snapshot(run_dir) if run_dir.is_dir() else {} for name, run_dir in jobs.items()}
    before_blocked = snapshot(root / "blocked")
    try:
        commands = [case_command(root, CASES[name], run_dir) for name, run_dir in jobs.items()]
        procs = dict(zip(jobs, run_commands(commands), strict=True))
        results = {
            name: (
                procs.get(name),
                jobs.get(name),
                before.get(name),
                why_unavailable(case, unavailable),
            )
            for name, case in CASES.items()
        }
        yield root, results, (before_blocked, snapshot(root / "blocked"))
    finally:
        for folder in mounted:
            subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def test_the_catalogue_is_complete():
    """At least the issue's 25 cases, and an unknown option for every config group."""
    assert len(CASES) >= 25
    assert {f"unknown {g} option" for g in config_groups()} <= set(CASES)
    assert {"data", "model", "loss", "optim", "sched", "trainer", "tta", "teacher"} <= set(
        config_groups()
    )


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_fails_in_one_line_and_keeps_the_earlier_run(catalogue, name):
    root, results, (blocked_before, blocked_after) = catalogue
    case = CASES[name]
    proc, run_dir, earlier, unavailable = results[name]
    if unavailable:
        pytest.skip(unavailable)
    expected = [fragment.replace(ROOT, str(root)) for fragment in case.expected]
    assert proc.returncode == case.exit_code, proc.stderr[-3000:]
    if case.traceback:
        assert "Traceback (most recent call last)" in proc.stderr
        assert all(fragment in proc.stderr for fragment in expected), proc.stderr[-3000:]
        assert snapshot(run_dir) == earlier
        return
    assert "Traceback" not in proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    kind = "xent-run: error: " if case.exit_code == 2 else "xent-run: run failed: "
    assert lines[0].startswith(kind), lines[0]
    for fragment in expected:
        assert fragment in lines[0], lines[0]
    if case.exit_code == 2:  # caught before anything was written: all as it was
        assert run_dir.is_dir() == bool(earlier)
        assert not earlier or snapshot(run_dir) == earlier
        assert blocked_after == blocked_before
    else:  # the run started: the earlier one was set aside whole, not lost
        (archived,) = (run_dir / "archive").iterdir()
        assert snapshot(archived) == earlier
        assert MOVED in proc.stdout  # a notice, on stdout
