"""The runner: the CLIs, the checks before anything is written, one job, its run dir, the sweep
summary and the report. It reaches tasks only through `xent.tasks.base.Task`."""
