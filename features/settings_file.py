"""YAML files that people write (settings, accounts, playbooks, rules): read, validate, and
report every problem as ``file:line: field.path: problem``.

This is the one place that turns a YAML error or a pydantic validation error into lines
that name the file and the line, so every file blastwall reads reports problems alike.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticCustomError

M = TypeVar("M", bound=BaseModel)
Location = tuple[str | int, ...]


@dataclass(frozen=True)
class FileProblem:
    """One problem of a file: where it is (``line`` 0 when the file as a whole) and what."""

    file: Path
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}" if self.line else f"{self.file}: {self.message}"


class SettingsFileError(ValueError):
    """A file that cannot be used; ``problems`` lists every problem found, each with its line."""

    def __init__(self, problems: Iterable[FileProblem]) -> None:
        self.problems = sorted(problems, key=lambda p: (str(p.file), p.line))
        super().__init__("\n".join(map(str, self.problems)))


@dataclass(frozen=True)
class YamlDocument:
    """A parsed YAML file: the data and the node tree that knows each value's line."""

    path: Path
    data: Any
    root: yaml.Node | None

    def line_of(self, loc: Location) -> int:
        """The 1-based line of the deepest node along ``loc`` (0 for an empty document)."""
        return line_of(self.root, loc)


def read_yaml(path: Path) -> YamlDocument:
    """Read one YAML file.

    Raises
    ------
    SettingsFileError
        The file cannot be read, is not UTF-8, or is not valid YAML (with the line).
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SettingsFileError([FileProblem(path, 0, "no such file")]) from None
    except UnicodeDecodeError:
        raise SettingsFileError([FileProblem(path, 0, "cannot read: not UTF-8 text")]) from None
    except OSError as exc:
        raise SettingsFileError([FileProblem(path, 0, f"cannot read ({exc.strerror or exc})")]) from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise SettingsFileError([FileProblem(path, mark.line + 1 if mark else 0,
                                             f"not valid YAML: {problem}")]) from None
    return YamlDocument(Path(path), data, root)


def line_of(node: yaml.Node | None, loc: Location) -> int:
    """The 1-based line of the deepest YAML node along ``loc`` (keys and list indexes)."""
    line = 0 if node is None else node.start_mark.line + 1
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = next(((k, v) for k, v in node.value if k.value == str(part)), None)
            if match is None:
                break
            line, node = match[0].start_mark.line + 1, match[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line


def error_locations(exc: ValidationError, describe: Any = None) -> list[tuple[Location, str]]:
    """Pydantic errors as ``(location, message)``.

    A validator that finds several problems at once raises a ``PydanticCustomError``
    whose context carries ``problems`` (a list of ``(location, message)`` relative to the
    field); they are expanded here, so each keeps its own line.
    """
    out: list[tuple[Location, str]] = []
    for error in exc.errors():
        loc = tuple(part for part in error["loc"] if part != "[key]")
        nested = (error.get("ctx") or {}).get("problems")
        if nested:
            out.extend((loc + tuple(where), message) for where, message in nested)
        else:
            out.append((loc, (describe(error) if describe else None) or describe_error(error)))
    return out


def several_problems(where: list[tuple[Location, str]]) -> PydanticCustomError:
    """One pydantic error carrying several located problems, for a validator that finds many.

    :func:`error_locations` expands it again, so each problem keeps its own line.
    """
    text = "; ".join(f"{dotted(loc)}: {msg}" if loc else msg for loc, msg in where)
    return PydanticCustomError("several_problems", "{text}", {"text": text, "problems": where})


def describe_error(error: dict[str, Any]) -> str:
    """A pydantic error in the words of a settings file."""
    kind = error["type"]
    if kind == "missing":
        return "missing"
    if kind == "extra_forbidden":
        return "unknown field"
    if kind == "value_error":
        return str((error.get("ctx") or {}).get("error", error["msg"]))
    message = str(error["msg"]).removeprefix("Value error, ")
    return message[:1].lower() + message[1:]


def validation_problems(document: YamlDocument, exc: ValidationError, label: Any = None,
                        describe: Any = None) -> list[FileProblem]:
    """Every error of ``exc`` as a problem on its line of ``document``.

    ``label(loc)`` may name a location better than its dotted path (e.g. with the user
    of an accounts entry); ``describe(error)`` may word an error better than
    :func:`describe_error` (returning ``None`` keeps the default).
    """
    problems = []
    for loc, message in error_locations(exc, describe):
        where = label(loc) if label else dotted(loc)
        problems.append(FileProblem(document.path, document.line_of(loc),
                                    f"{where}: {message}" if where else message))
    return problems


def dotted(loc: Location) -> str:
    """``steps[2].with.resources`` from a pydantic location."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def load_model(path: Path, model: type[M], *, expected: str) -> M:
    """Read a YAML file and validate it as ``model``; an empty file gives the defaults.

    Parameters
    ----------
    path : Path
    model : pydantic model class
    expected : str
        What the top level should hold, for the message when it is not a mapping.

    Raises
    ------
    SettingsFileError
        Every problem of the file, each with its line.
    """
    document = read_yaml(path)
    data = {} if document.data is None else document.data
    if not isinstance(data, dict):
        raise SettingsFileError([FileProblem(path, 1, f"expected a mapping with {expected}, "
                                                      f"not a {type(data).__name__}")])
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise SettingsFileError(validation_problems(document, exc)) from None


# --- folders of files as code (playbooks, rules) -----------------------------------------


def yaml_files(folders: Iterable[Path]) -> list[Path]:
    """Every ``*.yaml``/``*.yml`` file of the folders, sorted by stem (the id); missing folders skipped.

    The loaders report a missing folder as a problem (:func:`missing_folders`); this only lists files.
    """
    files = [p for folder in folders if Path(folder).is_dir() for p in Path(folder).iterdir()
             if p.suffix in (".yaml", ".yml") and p.is_file()]
    return sorted(files, key=lambda p: (p.stem, str(p)))


def missing_folders(folders: Iterable[Path], built_in: Path, kind: str) -> list[FileProblem]:
    """A problem for each folder that is not there: a missing library never passes as empty.

    ``built_in`` is the library shipped with blastwall (its absence means a broken install);
    ``kind`` names what the folders hold (``playbook``, ``rule``).
    """
    problems = []
    for folder in folders:
        if Path(folder).is_dir():
            continue
        if Path(folder).resolve() == built_in:
            problems.append(FileProblem(Path(folder), 0, f"the built-in {kind} library is missing: this installation "
                                                         "of blastwall is incomplete (reinstall it)"))
        else:
            problems.append(FileProblem(Path(folder), 0, f"no such {kind} folder"))
    return problems


def in_checkout(built_in: Path) -> bool:
    """Whether a built-in library is a developer's checkout (beside pyproject.toml), not an install."""
    return (built_in.parent.parent / "pyproject.toml").is_file()
