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
