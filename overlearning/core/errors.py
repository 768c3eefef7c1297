"""Errors that stop a rule with a message naming the offending file or key."""

from __future__ import annotations


class WorkflowInputError(RuntimeError):
    """A bad input: the message names the file (or config key) and what is wrong with it."""

    def __init__(self, where: object, problem: str) -> None:
        self.where = str(where)
        self.problem = problem
        super().__init__(f"{self.where}: {problem}")


class ConfigError(ValueError):
    """The configuration is invalid; the message names the key."""


class WorkflowOutputError(WorkflowInputError):
    """An output could not be written (a full disk, an exhausted quota, a name longer than
    the filesystem allows): the message names the file being written. A subclass of
    WorkflowInputError, so it ends a script in the same one line."""
