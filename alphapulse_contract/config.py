"""How a setting is declared, read from the environment and documented: once.

A setting is a field of a frozen dataclass (the graph's `Settings`, the API's `ServingConfig`) made by `setting()`:
its variable, default, parser (type and bounds) and help text live in the field's metadata. `read()` builds the
dataclass from the environment, each value through its parser, each error a `ConfigError` that names the variable;
`markdown_table()` writes the README's table from the same declarations. Settings both sides read (the store, the
API's port) are declared here once and used by both schemas.

Why not pydantic-settings: its errors name fields, not the variables a user set, and the rules here are conditions
between settings (a directory required only with the archive source, a default that follows another setting), which
read more plainly as ordinary code next to the declarations than as validators. This module is the only place that
reads `ALPHAPULSE_*` variables from the environment.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from alphapulse_contract.storage import store_location


class ConfigError(ValueError):
    """A setting from the environment is malformed; the message names the variable and, where it helps, the fix."""


@dataclass(frozen=True)
class Derived:
    """A default that follows settings declared before it: `rule(values so far)`; `text` says so in the docs."""

    rule: Callable[[dict[str, Any]], Any]
    text: str


@dataclass(frozen=True)
class Parser:
    """Text from the environment to a value: `parse(raw, variable)`, raising ConfigError; `allowed` for the docs."""

    parse: Callable[[str, str], Any]
    allowed: str


@dataclass(frozen=True)
class Setting:
    variable: str
    default: Any
    help: str
    parser: Parser
    # Read only when `when(values so far)` holds; otherwise the default, whatever the environment says.
    when: Callable[[dict[str, Any]], bool] | None = None
    when_text: str = ""
    secret: bool = False  # kept out of the dataclass's repr

    def field(self) -> Any:
        """This setting as a dataclass field (the default is the dataclass's own, so code can build it directly)."""
        default = None if isinstance(self.default, Derived) else self.default
        if isinstance(default, list | dict):
            return dataclasses.field(
                default_factory=lambda: type(default)(default), metadata={"setting": self}, repr=not self.secret
            )
        return dataclasses.field(default=default, metadata={"setting": self}, repr=not self.secret)

    def value(self, env: Mapping[str, str], values: dict[str, Any]) -> Any:
        if self.when is not None and not self.when(values):
            return self._default(values)
        raw = (env.get(self.variable) or "").strip()
        if not raw:
            return self._default(values)
        return self.parser.parse(raw, self.variable)

    def read(self, env: Mapping[str, str] | None = None) -> Any:
        """This setting alone (it must not follow others): for what is defined at import, like the partitions."""
        return self.value(environment(env), {})

    def _default(self, values: dict[str, Any]) -> Any:
        return self.default.rule(values) if isinstance(self.default, Derived) else self.default

    def documented_default(self) -> str:
        if isinstance(self.default, Derived):
            return self.default.text
        if self.default is None or self.default in ((), {}, ""):
            return "unset"
        if isinstance(self.default, tuple):
            return f"`{','.join(map(str, self.default))}`"
        if isinstance(self.default, datetime):
            return f"`{self.default:%Y-%m-%d}`"
        return f"`{self.default}`"


def setting(
    variable: str,
    default: Any,
    help: str,
    parser: Parser,
    when: Callable[[dict[str, Any]], bool] | None = None,
    when_text: str = "",
) -> Any:
    """A dataclass field read from `variable`."""
    return Setting(variable, default, help, parser, when, when_text).field()


def environment(env: Mapping[str, str] | None = None) -> Mapping[str, str]:
    """The environment the settings are read from: `env` when given (tests), else the process's."""
    return os.environ if env is None else env


def declared(cls) -> list[tuple[str, Setting]]:
    """(field name, setting) of a schema, in declaration order."""
    return [(f.name, f.metadata["setting"]) for f in dataclasses.fields(cls) if "setting" in f.metadata]


def read(cls, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Every declared setting of `cls`, parsed, in declaration order (a derived default sees the ones before it)."""
    source = environment(env)
    values: dict[str, Any] = {}
    for name, declaration in declared(cls):
        values[name] = declaration.value(source, values)
    return values


def markdown_table(*schemas, skip: tuple[Setting, ...] = ()) -> str:
    """A README configuration table: every variable of `schemas` once, in declaration order, but those in `skip`."""
    rows = ["| variable | default | allowed | what it does |", "| --- | --- | --- | --- |"]
    seen: set[str] = {s.variable for s in skip}
    for schema in schemas:
        for _, s in declared(schema):
            if s.variable in seen:
                continue
            seen.add(s.variable)
            help_text = s.help + (f" Read only {s.when_text}." if s.when_text else "")
            cells = [f"`{s.variable}`", s.documented_default(), s.parser.allowed, help_text]
            rows.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(rows) + "\n"


def write_table(path: Path, marker: str, table: str) -> None:
    """Put `table` between `<!-- marker -->` and `<!-- /marker -->` in the file at `path` (the README)."""
    start, end = f"<!-- {marker} -->\n", f"<!-- /{marker} -->"
    text = path.read_text()
    if start not in text or end not in text:
        raise SystemExit(f"{path}: no {start.strip()} ... {end} block to write the table into")
    before, rest = text.split(start, 1)
    path.write_text(before + start + table + end + rest.split(end, 1)[1])


def main(table: str, marker: str) -> None:
    """`python -m <schema module>` prints the table; `--readme PATH` writes it into PATH's marked block."""
    import sys

    if sys.argv[1:2] == ["--readme"]:
        write_table(Path(sys.argv[2]), marker, table)
    else:
        print(table, end="")


# Parsers. Each names the variable in its error.


def text(allowed: str = "text") -> Parser:
    return Parser(lambda raw, _: raw, allowed)


def flag() -> Parser:
    def parse(raw: str, name: str) -> bool:
        lowered = raw.lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{name}={raw!r}: expected true or false")

    return Parser(parse, "true / false")


def integer(minimum: int, maximum: int | None = None) -> Parser:
    def parse(raw: str, name: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise ConfigError(f"{name}={raw!r}: expected a whole number") from None
        if value < minimum or (maximum is not None and value > maximum):
            bound = f"between {minimum} and {maximum}" if maximum is not None else f"at least {minimum}"
            raise ConfigError(f"{name}={value}: must be {bound}")
        return value

    return Parser(parse, f"whole number {minimum}–{maximum}" if maximum is not None else f"whole number ≥ {minimum}")


def number(minimum: float, maximum: float = math.inf) -> Parser:
    def parse(raw: str, name: str) -> float:
        try:
            value = float(raw)
        except ValueError:
            raise ConfigError(f"{name}={raw!r}: expected a number") from None
        if not (minimum <= value <= maximum):
            bound = f"between {minimum} and {maximum}" if math.isfinite(maximum) else f"at least {minimum}"
            raise ConfigError(f"{name}={value}: must be {bound}")
        return value

    return Parser(parse, f"number {minimum:g}–{maximum:g}" if math.isfinite(maximum) else f"number ≥ {minimum:g}")


def choice(*choices: str) -> Parser:
    def parse(raw: str, name: str) -> str:
        value = raw.lower()
        if value not in choices:
            raise ConfigError(f"{name}={value!r}: expected one of {', '.join(choices)}")
        return value

    return Parser(parse, " / ".join(choices))


def port() -> Parser:
    def parse(raw: str, name: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            value = 0
        if not 0 < value < 65536:
            raise ConfigError(f"{name}={raw!r}: expected a port number 1-65535")
        return value

    return Parser(parse, "port 1–65535")


def _url(schemes: tuple[str, ...], expected: str, raw: str, name: str):
    parsed = urlparse(raw)
    if parsed.scheme not in schemes or not parsed.hostname:
        raise ConfigError(f"{name}: expected {expected}, got {parsed.scheme or raw[:40]!r}")
    return parsed


def http_url() -> Parser:
    return Parser(lambda raw, name: _url(("http", "https"), "an http:// or https:// URL", raw, name) and raw, "URL")


def postgres_url() -> Parser:
    """A PostgreSQL URL. Keep the password out of it (libpq reads PGPASSWORD): resource configuration is shown in
    the Dagster UI."""

    def parse(raw: str, name: str) -> str:
        parsed = _url(("postgresql", "postgres"), "postgresql://user@host:5432/database", raw, name)
        if not parsed.path.strip("/"):
            raise ConfigError(f"{name}: the URL names no database (postgresql://user@host:5432/<database>)")
        return raw

    return Parser(parse, "postgresql:// URL")


def location() -> Parser:
    """A store: a local directory (a path or file:// URL, made absolute) or s3://bucket/prefix."""

    def parse(raw: str, name: str) -> str:
        try:
            return store_location(raw)
        except ValueError as exc:
            raise ConfigError(f"{name}={exc}") from None

    return Parser(parse, "directory or s3://bucket/prefix")


def directory(must_exist: bool = False) -> Parser:
    def parse(raw: str, name: str) -> Path:
        path = Path(raw).expanduser().resolve()
        if must_exist and not path.is_dir():
            raise ConfigError(f"{name}={raw}: no such directory")
        return path

    return Parser(parse, "existing directory" if must_exist else "directory")


def unique_list(
    normalise: Callable[[str], str], problem: Callable[[str], str | None], what: str, separators: str = ","
) -> Callable[[str, str], tuple[str, ...]]:
    """Separated values, normalised, each checked by `problem` (a message, or None when fine), no repeats."""

    def parse(raw: str, name: str) -> tuple[str, ...]:
        values: list[str] = []
        for part in re.split(f"[{separators}]+", raw):
            value = normalise(part.strip())
            if not value:
                continue
            message = problem(value)
            if message:
                raise ConfigError(f"{name}: {message}")
            if value in values:
                raise ConfigError(f"{name}: {value} is listed twice")
            values.append(value)
        if not values:
            raise ConfigError(f"{name}={raw!r}: at least one {what} is required")
        return tuple(values)

    return parse


def numbers(kind: type, minimum: float, maximum: float) -> Parser:
    """Comma-separated numbers of `kind` (int or float) in [minimum, maximum], no repeats."""

    def problem(value: str) -> str | None:
        try:
            number = kind(value)
        except ValueError:
            return f"{value!r} is not {'a whole number' if kind is int else 'a number'}"
        return None if minimum <= number <= maximum else f"{value} is outside [{minimum:g}, {maximum:g}]"

    items = unique_list(str, problem, "value")
    what = "whole numbers" if kind is int else "numbers"
    return Parser(
        lambda raw, name: tuple(kind(v) for v in items(raw, name)), f"{what} {minimum:g}–{maximum:g}, comma-separated"
    )


def json_object(example: str) -> Callable[[str, str], dict]:
    """A JSON object, or an error naming the variable and showing `example`."""
    import json

    def parse(raw: str, name: str) -> dict:
        try:
            parsed = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{name}: not valid JSON ({exc})") from None
        if not isinstance(parsed, dict):
            raise ConfigError(f"{name}: expected a JSON object like {example}")
        return parsed

    return parse


# Settings both the graph and the API read, declared once.
HOME = Setting(
    "ALPHAPULSE_HOME",
    Derived(lambda _: Path(".alphapulse").resolve(), "`.alphapulse` in the working directory"),
    "Where the embedded backends keep their files: the Dagster instance, DuckDB, MLflow, the object store, audit.",
    directory(),
)
OBJECT_STORE_URL = Setting(
    "ALPHAPULSE_OBJECT_STORE_URL",
    None,
    "The object store the graph writes and the API reads (models, the promoted-model manifest, the online features, "
    "reports); unset: `$ALPHAPULSE_HOME/objects`.",
    location(),
)
API_PORT = Setting(
    "ALPHAPULSE_API_PORT", 8000, "The port the prediction API listens on (the demo starts it there).", port()
)
API_KEYS = Setting(
    "ALPHAPULSE_API_KEYS",
    None,
    "API keys, comma-separated (≥ 16 characters each); `make demo` makes one when neither this nor the file is set.",
    text("keys"),
    secret=True,
)
API_KEYS_FILE = Setting(
    "ALPHAPULSE_API_KEYS_FILE",
    None,
    "A secrets file of API keys, one per line (`#` comments), each optionally followed by its scopes "
    "(`ap_… predict,audit`; `predict`, `audit`, `admin`; none listed: all); used together with ALPHAPULSE_API_KEYS "
    "(every scope). Re-read each poll: a rotated key works and a removed one stops without a restart.",
    text("file"),
)


def generate_api_key() -> str:
    """A key for ALPHAPULSE_API_KEYS (what `make demo` makes when none is given)."""
    import secrets

    return "ap_" + secrets.token_urlsafe(24)


SHARED = (HOME, OBJECT_STORE_URL, API_PORT, API_KEYS, API_KEYS_FILE)
