"""Errors a user can act on: each carries one line saying what was wrong and how to fix it."""


class AmlopsError(Exception):
    """A problem with the user's input or environment, reported as one line without a traceback."""


class NotFoundError(AmlopsError):
    """A named thing (pipeline, run, model, deployment) does not exist."""


class PipelineValidationError(AmlopsError):
    """A pipeline or component YAML is invalid; the message names the file and the line."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__(problems[0] if len(problems) == 1 else "\n".join(problems))
