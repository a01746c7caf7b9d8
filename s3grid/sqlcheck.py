"""Pure checks of SQL text, identifiers and S3 locations before they reach an engine.

Nothing is string-built from unchecked input: identifiers and locations must match
strict patterns (no quotes, no ``;``), and a bulk edit must be exactly one SELECT.
"""

from __future__ import annotations

import re
from typing import Any

from s3grid.errors import ValidationError

__all__ = [
    "check_identifier",
    "check_location",
    "check_one_statement",
    "check_single_select",
    "rename_table",
]

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
_LOCATION = re.compile(r"^s3://[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9](/[A-Za-z0-9_.\-=/]*)?$")


def _sqlglot() -> tuple[Any, Any, Any]:
    # Imported on first use: sqlglot is slow to import, and opening the editor should
    # not wait for a SQL parser it may never need.
    import sqlglot
    from sqlglot import TokenType, exp

    return sqlglot, exp, TokenType


def check_identifier(name: str, *, what: str = "identifier") -> str:
    """A table/database/column name: letters, digits, ``_``; nothing to escape.

    Raises:
        ValidationError: the name holds quotes, ``;``, spaces or other characters.
    """
    if not isinstance(name, str) or not _IDENT.match(name):
        raise ValidationError(
            f"Invalid {what} {name!r}: use letters, digits and _ only (start with a letter)."
        )
    return name


def check_location(uri: str, *, prefix: bool = True) -> str:
    """An ``s3://bucket/key`` location with safe characters (and a trailing ``/``).

    Raises:
        ValidationError: bad characters, not s3://, or (for a prefix) no trailing ``/``.
    """
    if not isinstance(uri, str) or not _LOCATION.match(uri):
        raise ValidationError(
            f"Invalid S3 location {uri!r}: expected s3://bucket/path/ with letters, "
            "digits and _ . - = / only."
        )
    if prefix and not uri.endswith("/"):
        raise ValidationError(
            f"S3 location {uri!r} must end with '/': it names a prefix of part files."
        )
    return uri


def check_one_statement(sql: str) -> str:
    """The SQL without a trailing ``;`` if it is one statement (``;`` in strings is fine).

    Raises:
        ValidationError: more than one statement, or nothing.
    """
    sqlglot, _, token_type = _sqlglot()
    text = sql.strip()
    try:
        tokens = sqlglot.tokenize(text, read="athena")
    except sqlglot.errors.TokenError as exc:
        raise ValidationError(f"The SQL does not parse: {exc}") from exc
    while tokens and tokens[-1].token_type == token_type.SEMICOLON:
        tokens.pop()
        text = text[: text.rstrip().rfind(";")].rstrip()
    if not tokens:
        raise ValidationError("The SQL is empty.")
    if any(t.token_type == token_type.SEMICOLON for t in tokens):
        raise ValidationError(
            "Send one statement per execute: this SQL holds several (separated by ';')."
        )
    return text


def check_single_select(sql: str) -> str:
    """The SQL if it is exactly one SELECT (WITH ... SELECT, UNION ... allowed).

    Raises:
        ValidationError: empty, several statements, or not a query.
    """
    if not sql.strip().rstrip(";").strip():
        raise ValidationError("The SQL is empty; give one SELECT that returns the new master.")
    text = check_one_statement(sql)
    sqlglot, exp, _ = _sqlglot()
    try:
        statements = [s for s in sqlglot.parse(text, read="trino") if s is not None]
    except sqlglot.errors.ParseError as exc:
        raise ValidationError(f"The SQL does not parse: {exc}") from exc
    if len(statements) != 1:
        raise ValidationError(
            f"Give exactly one SELECT statement, not {len(statements)}; run other statements "
            "separately."
        )
    if not isinstance(statements[0], exp.Query):
        raise ValidationError(
            f"A bulk edit must be a SELECT that returns the new master, not "
            f"{statements[0].key.upper()}."
        )
    return text


def rename_table(select_sql: str, name: str, *, to: str, database: str | None = None) -> str:
    """The SELECT with every unqualified reference to table ``name`` read from ``to``
    instead (in ``database``), keeping ``name`` as its alias so that ``name.column``
    still resolves. Lets a user's ``FROM work_master_parquet`` read a per-run table.

    Raises:
        ValidationError: the SQL is not one SELECT, or a name is not a safe identifier.
    """
    check_identifier(name, what="table name")
    check_identifier(to, what="table name")
    if database:
        check_identifier(database, what="database name")
    sqlglot, exp, _ = _sqlglot()
    tree = sqlglot.parse_one(check_single_select(select_sql), read="trino")

    def swap(node: Any) -> Any:
        if isinstance(node, exp.Table) and node.name == name and not node.args.get("db"):
            alias = node.args.get("alias") or exp.TableAlias(this=exp.to_identifier(name))
            return exp.Table(
                this=exp.to_identifier(to, quoted=True),
                db=exp.to_identifier(database, quoted=True) if database else None,
                alias=alias,
            )
        return node

    return str(tree.transform(swap).sql(dialect="trino"))
