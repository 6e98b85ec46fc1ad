"""The exceptions codl raises on purpose. The CLI prints their message on one line."""


def first_line(error: BaseException) -> str:
    """The first line of an error's message (torch's and onnx's errors carry paragraphs),
    or its type's name when it has none."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


class CodlError(Exception):
    """Base of every error codl raises about its inputs (not about its own bugs)."""


class GraphError(CodlError):
    """A graph, a node or its attributes are invalid or unsupported."""


class UnsupportedOperatorError(GraphError):
    """A model contains operators codl does not implement."""


class ModelLoadError(CodlError):
    """A model file cannot be read: missing, truncated, not ONNX, or inconsistent."""


class ExecutionError(CodlError):
    """A node failed while running; the message names the node and its input shapes."""

    @staticmethod
    def of_node(node: object, inputs: list, error: Exception, where: str = "") -> "ExecutionError":
        """The error for ``node`` failing on tensors ``inputs`` (``where``: which processor)."""
        shapes = [tuple(t.shape) if t is not None else None for t in inputs]
        return ExecutionError(f"node {node.name!r} ({node.op.value}) failed{where} on inputs "  # type: ignore[attr-defined]
                              f"{list(zip(node.inputs, shapes))}: {error}")  # type: ignore[attr-defined]
