"""Task definitions: what the worker needs to run a task by name.

A ``TaskDef`` is built once, at decoration time: the function's type hints
are read there, so the hot path only converts values.
"""

from __future__ import annotations

import inspect
import typing
from typing import Any

import msgspec

from ..errors import ArgumentError, ConfigurationError
from .context import Context
from .options import check_number

if typing.TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from .options import RateLimit, TaskOptions

__all__ = ["ArgumentError", "Registry", "TaskDef"]


class TaskDef:
    """A registered task: its function, options and how to convert its arguments."""

    __slots__ = (
        "_arity",
        "_convert",
        "_ctx_index",
        "_ctx_name",
        "_hints",
        "_signature",
        "fn",
        "is_async",
        "name",
        "max_running",
        "options",
        "rate_limit",
        "retry_on",
        "return_type",
    )

    def __init__(
        self,
        fn: Callable[..., Any],
        name: str,
        options: TaskOptions,
        retry_on: tuple[type[BaseException], ...] = (Exception,),
        *,
        rate_limit: RateLimit | None = None,
        max_running: int | None = None,
    ) -> None:
        if max_running is not None:
            check_number("max_running", max_running, whole=True, minimum=1, positive=False)
        self.rate_limit = rate_limit
        self.max_running = max_running
        self.fn = fn
        self.retry_on = retry_on
        self.name = name
        self.options = options
        self.is_async = inspect.iscoroutinefunction(fn)
        try:
            hints = typing.get_type_hints(fn)
        except Exception as exc:  # unresolvable forward references
            raise ConfigurationError(f"cannot read the type hints of task {name!r}: {exc}") from exc
        self.return_type: Any = hints.pop("return", Any)
        sig = inspect.signature(fn)
        self._ctx_name: str | None = None
        self._ctx_index: int | None = None
        params = []
        for index, p in enumerate(sig.parameters.values()):
            if hints.get(p.name) is Context:
                self._ctx_name = p.name
                if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
                    self._ctx_index = index
                continue
            params.append(p)
        self._signature = sig.replace(parameters=params)
        positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        self._arity: tuple[int, int] | None = (
            (sum(p.default is p.empty for p in params), len(params))
            if all(p.kind in positional for p in params)
            else None
        )
        """(required, most) positional arguments, when that is the whole signature:
        ``check_call``'s fast path for a call without keywords."""
        self._hints = {k: v for k, v in hints.items() if k != self._ctx_name}
        # Only convert when some parameter is annotated with a type worth checking.
        self._convert = any(h is not Any for h in self._hints.values())

    @property
    def wants_context(self) -> bool:
        return self._ctx_name is not None

    def check_call(self, args: Sequence[Any], kwargs: dict[str, Any]) -> None:
        """On the sending side: raise ``ArgumentError`` (``add: got an unexpected
        keyword argument 'z'``) for a call that does not fit the signature,
        before anything is sent. Types are converted on the worker (``bind``)."""
        if not kwargs and self._arity is not None and self._arity[0] <= len(args) <= self._arity[1]:
            return
        try:
            self._signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise ArgumentError(f"{self.name}: {exc}") from None

    @property
    def positional_names(self) -> list[str]:
        """Names of the parameters a positional argument can fill, in order."""
        kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        return [p.name for p in self._signature.parameters.values() if p.kind in kinds]

    def bind(self, args: list[Any], kwargs: dict[str, Any]) -> tuple[list[Any], dict[str, Any]]:
        """Check arity and convert each argument to its annotated type.

        Raises ``ArgumentError`` naming the parameter that does not fit.
        """
        if not self._convert and not kwargs and self._arity is not None:
            low, high = self._arity  # they fit as they are: nothing to check or convert
            if low <= len(args) <= high:
                return args, kwargs
        try:
            bound = self._signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise ArgumentError(f"{self.name}: {exc}") from None
        if not self._convert:
            return args, kwargs
        params = self._signature.parameters
        for pname, value in bound.arguments.items():
            hint = self._hints.get(pname)
            if hint is None or hint is Any:
                continue
            kind = params[pname].kind
            try:
                if kind is inspect.Parameter.VAR_POSITIONAL:
                    bound.arguments[pname] = tuple(msgspec.convert(v, hint) for v in value)
                elif kind is inspect.Parameter.VAR_KEYWORD:
                    bound.arguments[pname] = {k: msgspec.convert(v, hint) for k, v in value.items()}
                else:
                    bound.arguments[pname] = msgspec.convert(value, hint)
            except msgspec.ValidationError as exc:
                raise ArgumentError(f"{self.name}: argument {pname!r}: {exc}") from None
        return list(bound.args), dict(bound.kwargs)

    def call(self, ctx: Context | None, args: list[Any], kwargs: dict[str, Any]) -> Any:
        """Call the function with the context injected where it was declared."""
        if self._ctx_name is not None:
            if self._ctx_index is not None and len(args) >= self._ctx_index:
                args = [*args[: self._ctx_index], ctx, *args[self._ctx_index :]]
            else:
                kwargs = {**kwargs, self._ctx_name: ctx}
        return self.fn(*args, **kwargs)


class Registry:
    """Task name → definition. Owned by one ``App``; there is no global registry."""

    def __init__(self) -> None:
        self._tasks: dict[str, TaskDef] = {}

    def add(self, task: TaskDef) -> None:
        existing = self._tasks.get(task.name)
        if existing is not None and existing.fn is not task.fn:
            raise ConfigurationError(f"a different task is already registered as {task.name!r}")
        self._tasks[task.name] = task

    def get(self, name: str) -> TaskDef | None:
        return self._tasks.get(name)

    def names(self) -> list[str]:
        return sorted(self._tasks)

    def queues(self) -> set[str]:
        return {t.options.queue for t in self._tasks.values() if isinstance(t.options.queue, str)}

    def __len__(self) -> int:
        return len(self._tasks)
