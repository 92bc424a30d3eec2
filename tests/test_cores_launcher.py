"""hydra/launcher=cores, xent's default sweep layout: how many jobs run at once, what a job of
a worker process hands back (its one-line failure, its interruption), and how a job there stops
when xent-run is interrupted. The sweeps themselves: tests/test_sweep.py, tests/test_resume.py."""

from __future__ import annotations

import pickle

import pytest
from hydra.core.utils import JobReturn, JobStatus

from hydra_plugins.xent_cores import cores_launcher
from hydra_plugins.xent_cores.cores_launcher import CoresLauncher
from xent import job_relay
from xent.errors import ConfigError
from xent.run_guards import StopWhenSweepStops, sweep_stop_callbacks
from xent.runner import cli
from xent.runner.rundir import Interrupted


@pytest.mark.parametrize(
    ("n_jobs", "batch", "workers"),
    [(-1, 1, 1), (-1, 2, 2), (-1, 7, 2), (1, 7, 1), (4, 3, 3), (4, 9, 4)],
)
def test_jobs_at_once_are_the_cores_but_never_more_than_the_batch(
    monkeypatch, n_jobs, batch, workers
):
    monkeypatch.setattr(cores_launcher, "usable_cores", lambda: 2)
    assert CoresLauncher(n_jobs=n_jobs).workers(batch) == workers


def test_each_job_gets_cores_over_jobs_threads_unless_the_user_set_them(monkeypatch):
    monkeypatch.setattr(cores_launcher, "usable_cores", lambda: 8)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert [cores_launcher.threads_per_job(n) for n in (1, 2, 3, 8, 16)] == [8, 4, 2, 1, 1]
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # joblib keeps the user's setting
    assert cores_launcher.threads_per_job(2) == 1


def test_a_one_job_batch_runs_in_this_process(monkeypatch):
    """An Optuna trial, a one-job sweep, n_jobs=1: the basic launcher's path, every thread."""
    launcher = CoresLauncher(n_jobs=-1)
    taken = []
    monkeypatch.setattr(launcher, "_in_this_process", lambda jobs, idx: taken.append("here"))
    monkeypatch.setattr(launcher, "_side_by_side", lambda jobs, idx: taken.append("workers"))
    launcher.launch([["seed=0"]], 0)
    monkeypatch.setattr(cores_launcher, "usable_cores", lambda: 2)
    launcher.launch([["seed=0"], ["seed=1"]], 1)
    assert taken == ["here", "workers"]


def test_what_a_worker_hands_back_survives_pickling():
    failure = pickle.loads(pickle.dumps(cli.RelayedFailure("xent-run: error: bad", True)))
    assert (failure.line, failure.bad_input) == ("xent-run: error: bad", True)
    interrupted = pickle.loads(pickle.dumps(cli.JobInterrupted("xent-run: interrupted")))
    assert str(interrupted) == "xent-run: interrupted"


def test_a_job_of_a_worker_raises_its_one_line_where_this_process_keeps_it(monkeypatch):
    monkeypatch.setattr(cli, "_job_failures", [])
    monkeypatch.delenv(job_relay.STOP_FILE_ENV, raising=False)
    error = ConfigError("loss.q=2 must be in (0, 1]")
    assert cli._job_failed(error) is None and cli._job_failures == [error]
    monkeypatch.setenv(job_relay.STOP_FILE_ENV, "/tmp/stop")
    with pytest.raises(cli.RelayedFailure) as raised:
        cli._job_failed(error)
    assert (raised.value.line, raised.value.bad_input) == (
        "xent-run: error: loss.q=2 must be in (0, 1]",
        True,
    )
    failed = cli.RunFailed(None, "RuntimeError: boom")
    with pytest.raises(cli.RelayedFailure) as raised:
        cli._job_failed(failed)
    assert (raised.value.line, raised.value.bad_input) == (
        "xent-run: run failed: RuntimeError: boom",
        False,
    )


def returns(*values):
    return [
        JobReturn(overrides=[f"seed={i}"], status=JobStatus.FAILED, _return_value=value)
        for i, value in enumerate(values)
    ]


def test_relayed_failures_join_xent_runs_list_and_their_jobs_count_as_done(monkeypatch):
    monkeypatch.setattr(job_relay, "relayed_failures", [])
    bad = cli.RelayedFailure("xent-run: error: bad", True)
    runs = returns(bad) + [JobReturn(status=JobStatus.COMPLETED, _return_value=0.9)]
    assert cores_launcher._relay(runs, interrupted_by_user=False) is runs
    assert job_relay.relayed_failures == [bad]
    assert [run.return_value for run in runs] == [None, 0.9]  # the sweeper reads them quietly
    assert cli.failure_line(bad) == "xent-run: error: bad" and cli.is_bad_input(bad)


def test_an_interrupted_job_ends_the_sweep_with_its_line():
    first = cli.JobInterrupted("xent-run: interrupted after epoch 1; continue with: A")
    second = cli.JobInterrupted("xent-run: interrupted after epoch 2; continue with: A")
    with pytest.raises(Interrupted) as raised:
        cores_launcher._relay(returns(first, second), interrupted_by_user=True)
    assert str(raised.value) == str(first)


def test_a_ctrl_c_after_every_job_ended_still_ends_the_sweep():
    done = [JobReturn(status=JobStatus.COMPLETED, _return_value=0.5)]
    with pytest.raises(KeyboardInterrupt) as raised:
        cores_launcher._relay(done, interrupted_by_user=True)
    assert type(raised.value) is KeyboardInterrupt


def test_a_job_stops_as_on_ctrl_c_once_the_stop_file_appears(tmp_path, monkeypatch):
    stop = tmp_path / ".stop"
    monkeypatch.delenv(job_relay.STOP_FILE_ENV, raising=False)
    assert sweep_stop_callbacks() == []  # this process runs its jobs itself
    monkeypatch.setenv(job_relay.STOP_FILE_ENV, str(stop))
    (callback,) = sweep_stop_callbacks()
    assert isinstance(callback, StopWhenSweepStops) and callback.stop_file == stop
    hooks = (
        callback.on_train_batch_end,
        callback.on_validation_batch_end,
        callback.on_test_batch_end,
    )
    for hook in hooks:
        hook(None, None, None, None, 0)  # no file: nothing happens
    stop.touch()
    for hook in hooks:
        with pytest.raises(KeyboardInterrupt):
            hook(None, None, None, None, 0)


def test_the_first_ctrl_c_writes_the_stop_file_and_the_second_stops_at_once(tmp_path, capsys):
    import os
    import signal

    stop = tmp_path / ".stop"
    before = signal.getsignal(signal.SIGINT)
    with cores_launcher._ctrl_c_writes(stop) as seen:
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.exists() and seen["seen"]
        assert capsys.readouterr().out == (
            "xent-run: stopping the running jobs at their next step (Ctrl-C again: at once)\n"
        )
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is before
