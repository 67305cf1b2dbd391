"""How ``aioq worker`` finds the app and its tasks, laid out the Celery way
(issue 13, "CLI and migration"): ``include``, warnings for a worker without
tasks, app paths that are files, and errors that say what is wrong."""

from __future__ import annotations

import logging
import sys
import textwrap
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import aioq
from aioq import _workercli, cli
from aioq._worker.worker import Worker


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., str]]:
    """Write modules into a fresh directory on sys.path; returns a unique package name."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    pkg = f"proj_{uuid.uuid4().hex[:8]}"
    (tmp_path / pkg).mkdir()
    (tmp_path / pkg / "__init__.py").write_text("")

    def write(files: dict[str, str]) -> str:
        for name, text in files.items():
            path = tmp_path / pkg / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(textwrap.dedent(text).replace("PKG", pkg))
        return pkg

    yield write
    for name in [m for m in sys.modules if m == pkg or m.startswith(pkg + ".")]:
        del sys.modules[name]


CELERY_APP = """
    import aioq
    app = aioq.App(prefix="t", include=["PKG.tasks"])
"""
TASKS = """
    from PKG.celery_app import app

    @app.task(name="add")
    def add(x: int, y: int) -> int:
        return x + y
"""


def worker_for(*argv: str) -> Worker:
    return _workercli.build_worker(cli._parser().parse_args(["worker", *argv]))


def test_app_include_imports_task_modules_at_worker_start(project) -> None:  # type: ignore[no-untyped-def]
    pkg = project({"celery_app.py": CELERY_APP, "tasks.py": TASKS})
    worker = worker_for(f"{pkg}.celery_app:app")
    assert worker.app.task_names == ["add"]


def test_include_option_imports_modules(project) -> None:  # type: ignore[no-untyped-def]
    pkg = project(
        {
            "celery_app.py": "import aioq\napp = aioq.App(prefix='t')\n",
            "tasks.py": TASKS,
            "more.py": "from PKG.celery_app import app\n\n@app.task(name='mul')\n"
            "def mul(x: int) -> int:\n    return x\n",
        }
    )
    worker = worker_for(f"{pkg}.celery_app:app", "--include", f"{pkg}.tasks", f"{pkg}.more")
    assert sorted(worker.app.task_names) == ["add", "mul"]


def test_include_of_a_missing_module_is_a_clear_error(project) -> None:  # type: ignore[no-untyped-def]
    pkg = project({"celery_app.py": "import aioq\napp = aioq.App(prefix='t')\n"})
    with pytest.raises(aioq.ConfigurationError, match="cannot import task module 'nope'"):
        worker_for(f"{pkg}.celery_app:app", "--include", "nope")


def test_include_must_be_a_list() -> None:
    with pytest.raises(aioq.ConfigurationError, match="include must be a list"):
        aioq.App(include="tasks.math")  # type: ignore[arg-type]


def test_worker_without_tasks_warns_and_strict_refuses(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = aioq.App(prefix="t")
    with caplog.at_level(logging.WARNING, logger="aioq"):
        Worker(app)
    assert "no task is registered" in caplog.text
    with pytest.raises(aioq.ConfigurationError, match="no task is registered.*strict"):
        Worker(app, strict=True)


def test_routes_and_schedules_naming_unknown_tasks_warn(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = aioq.App(prefix="t")

    @app.task(name="known")
    def known() -> None: ...

    app.routes({"reports.*": "reports", "known": "fast"})
    app.schedule(app.signature("cleanup"), every=60)
    with caplog.at_level(logging.WARNING, logger="aioq"):
        Worker(app)
    assert "route 'reports.*' matches no task" in caplog.text
    assert "route 'known'" not in caplog.text
    assert "'cleanup', not registered" in caplog.text
    with pytest.raises(aioq.ConfigurationError, match="reports"):
        Worker(app, strict=True)


def test_a_worker_with_tasks_logs_no_warning(caplog: pytest.LogCaptureFixture) -> None:
    app = aioq.App(prefix="t")

    @app.task(name="known")
    def known() -> None: ...

    with caplog.at_level(logging.WARNING, logger="aioq"):
        Worker(app, strict=True)
    assert caplog.text == ""


# -- app paths ------------------------------------------------------------------


def test_file_path_is_accepted(project) -> None:  # type: ignore[no-untyped-def]
    pkg = project({"standalone.py": "import aioq\napp = aioq.App(prefix='t')\n"})
    app = cli.load_app(f"./{pkg}/standalone.py:app")
    assert isinstance(app, aioq.App)
    assert cli.load_app(f"{pkg}/standalone.py") is app


def test_missing_attribute_lists_the_apps_found(project) -> None:  # type: ignore[no-untyped-def]
    pkg = project({"celery_app.py": "import aioq\ncelery = aioq.App(prefix='t')\n"})
    with pytest.raises(cli.CliError) as err:
        cli.load_app(f"{pkg}.celery_app")
    assert str(err.value) == (
        f"module '{pkg}.celery_app' has no attribute 'app'; "
        f"aioq.App objects found: {pkg}.celery_app.celery (pass it as {pkg}.celery_app:celery)"
    )


def test_missing_attribute_without_any_app(project) -> None:  # type: ignore[no-untyped-def]
    pkg = project({"empty.py": "x = 1\n"})
    with pytest.raises(cli.CliError, match="has no attribute 'app'; no aioq.App object in it"):
        cli.load_app(f"{pkg}.empty")


def test_attribute_that_is_not_an_app(project) -> None:  # type: ignore[no-untyped-def]
    pkg = project({"odd.py": "app = 42\n"})
    with pytest.raises(cli.CliError, match=rf"'{pkg}.odd:app' is an int, not an aioq.App"):
        cli.load_app(f"{pkg}.odd:app")


def test_missing_file_is_a_clear_error(project) -> None:  # type: ignore[no-untyped-def]
    project({})
    with pytest.raises(cli.CliError, match="no such file"):
        cli.load_app("./nothere.py:app")


def test_celery_aliases_A_and_loglevel(project) -> None:  # type: ignore[no-untyped-def]
    pkg = project({"celery_app.py": CELERY_APP, "tasks.py": TASKS})
    args = cli._parser().parse_args(
        ["worker", "-A", f"{pkg}.celery_app:app", "--loglevel", "warning"]
    )
    assert args.log_level == "warning"
    assert _workercli.build_worker(args).app.task_names == ["add"]
    args = cli._parser().parse_args(["worker", "--loglevel=INFO", "-A", f"{pkg}.celery_app"])
    assert args.log_level == "info"


def test_env_defaults(project, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    pkg = project({"celery_app.py": CELERY_APP, "tasks.py": TASKS})
    monkeypatch.setenv("AIOQ_CONCURRENCY", "7")
    monkeypatch.setenv("AIOQ_QUEUES", "a,b")
    worker = worker_for(f"{pkg}.celery_app:app")
    assert (worker.concurrency, worker.queues) == (7, ["a", "b"])
    worker = worker_for(f"{pkg}.celery_app:app", "-c", "3", "-Q", "c")
    assert (worker.concurrency, worker.queues) == (3, ["c"])


def test_bad_worker_options_fail_in_one_line(project, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    pkg = project({"celery_app.py": CELERY_APP, "tasks.py": TASKS})
    for bad, message in [
        (["-Q", "a{b}"], "queue name 'a{b}'"),
        (["--grace", "-1"], "--grace must be"),
    ]:
        assert cli.main(["worker", f"{pkg}.celery_app:app", *bad]) == 1
        assert message in capsys.readouterr().err


def test_bad_env_default_fails_in_one_line(project, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    pkg = project({"celery_app.py": CELERY_APP, "tasks.py": TASKS})
    monkeypatch.setenv("AIOQ_CONCURRENCY", "lots")
    assert cli.main(["worker", f"{pkg}.celery_app:app"]) == 1
    assert "AIOQ_CONCURRENCY" in capsys.readouterr().err


def test_worker_settings_are_checked_from_python() -> None:
    app = aioq.App(prefix="t")

    @app.task(name="known")
    def known() -> None: ...

    with pytest.raises(aioq.ConfigurationError, match="grace must be a number >= 0"):
        Worker(app, grace=-1)
    with pytest.raises(aioq.ConfigurationError, match="connect_timeout must be a number"):
        Worker(app, connect_timeout="30")  # type: ignore[arg-type]


def test_scheduler_takes_A(project) -> None:  # type: ignore[no-untyped-def]
    pkg = project({"celery_app.py": CELERY_APP, "tasks.py": TASKS})
    args = cli._parser().parse_args(
        ["scheduler", "-A", f"{pkg}.celery_app:app", "--loglevel", "DEBUG"]
    )
    assert (args.app_option, args.log_level) == (f"{pkg}.celery_app:app", "debug")


def test_unknown_task_grace_flag_env_and_default(project, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    pkg = project({"celery_app.py": CELERY_APP, "tasks.py": TASKS})
    assert worker_for(f"{pkg}.celery_app:app").unknown_task_grace == 60.0
    monkeypatch.setenv("AIOQ_UNKNOWN_TASK_GRACE", "5")
    assert worker_for(f"{pkg}.celery_app:app").unknown_task_grace == 5.0
    worker = worker_for(f"{pkg}.celery_app:app", "--unknown-task-grace", "0")
    assert worker.unknown_task_grace == 0.0
    assert cli.main(["worker", f"{pkg}.celery_app:app", "--unknown-task-grace", "-1"]) == 1
    assert "--unknown-task-grace must be >= 0 seconds" in capsys.readouterr().err
