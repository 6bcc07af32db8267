"""Expand a panel's SQL the way Grafana does before it reaches PostgreSQL.

Grafana turns a panel's ``rawSql`` into the statement PostgreSQL runs in three
passes; :func:`expand` repeats them so that tests can run every panel's query
against a real database:

1. **Template variables** (the browser, ``SqlDatasource.interpolateVariable``):
   ``$var``, ``${var}``, ``${var:format}`` and ``[[var]]``. A single value is
   inserted as is, with ``'`` doubled: write ``'$patient'`` in the SQL. A
   multi-value or *All* selection (give a list) becomes a comma-separated list
   of quoted literals: write ``IN ($severity)``. Unknown names are left alone,
   as Grafana leaves them. Built in: ``$__from``/``$__to`` (epoch ms),
   ``$__interval``, ``$__interval_ms``.
2. **Global substitutions** (the server, ``sqleng.Interpolate``):
   ``$__interval_ms``, ``$__interval`` (``1m``, ``2h``, ``1d``),
   ``$__unixEpochFrom()``, ``$__unixEpochTo()``.
3. **Macros** (the PostgreSQL data source, ``postgresMacroEngine``), any
   ``$__name(args)`` whose arguments hold no ``)``:

   ============================== ==================================================
   ``$__time(col)``               ``col AS "time"``
   ``$__timeEpoch(col)``          ``extract(epoch from col) as "time"``
   ``$__timeFilter(col)``         ``col BETWEEN '<from>' AND '<to>'`` (RFC 3339, UTC)
   ``$__timeFrom()``              ``'<from>'``; ``$__timeTo()`` likewise
   ``$__timeGroup(col, '5m')``    ``floor(extract(epoch from col)/300)*300``, or
                                  ``time_bucket('300.000s',col)`` when the data source
                                  has ``timescaledb: true`` (psymon's has)
   ``$__timeGroupAlias(...)``     the same ``AS "time"``
   ``$__unixEpochFilter(col)``    ``col >= <from s> AND col <= <to s>``
   ``$__unixEpochGroup(col, i)``  ``floor((col)/i)*i`` (+ ``AS "time"`` for ``Alias``)
   ============================== ==================================================

   An unknown macro is an error, as in Grafana (the query fails). A third
   ``$__timeGroup`` argument (fill mode) is accepted and, like Grafana, changes
   nothing in the SQL (Grafana fills the gaps after the query).

Sources: Grafana's PostgreSQL data-source documentation ("Macros", "Templating")
and its implementation (``pkg/tsdb/grafana-postgresql-datasource/macros.go``,
``sqleng/sql_engine.go``, ``public/app/features/plugins/sql/datasource/SqlDatasource.ts``).

Examples
--------
>>> from datetime import UTC, datetime
>>> start, end = datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 3, 8, tzinfo=UTC)
>>> expand("SELECT total FROM v_patient_scores WHERE patient_id = '$patient' "
...        "AND $__timeFilter(observed_at)", start, end, {"patient": "ab'c"})
"SELECT total FROM v_patient_scores WHERE patient_id = 'ab''c' AND observed_at BETWEEN \
'2026-03-01T00:00:00Z' AND '2026-03-08T00:00:00Z'"
>>> expand("SELECT $__timeGroupAlias(observed_at, '1d')", start, end)
'SELECT floor(extract(epoch from observed_at)/86400)*86400 AS "time"'
>>> expand("SELECT $__timeGroupAlias(observed_at, $__interval)", start, end,
...        interval=timedelta(hours=1), timescaledb=True)
'SELECT time_bucket(\\'3600.000s\\',observed_at) AS "time"'
>>> expand("WHERE severity IN ($severity)", start, end, {"severity": ["urgent", "warning"]})
"WHERE severity IN ('urgent','warning')"
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal

#: A variable's value: one value, or several (a multi-value or *All* selection).
VariableValue = str | Sequence[str]

#: The data source's minimum interval (``timeInterval: 1m`` in its provisioning).
MIN_INTERVAL = timedelta(minutes=1)
#: Points per panel Grafana aims for when it chooses ``$__interval`` (about a panel's width).
MAX_DATA_POINTS = 1000


class MacroError(ValueError):
    """A macro Grafana would refuse: unknown, or with missing or malformed arguments."""


# ---------------------------------------------------------------------------------- step 1

# Grafana's TemplateSrv pattern: $var | [[var]] / [[var:fmt]] | ${var} / ${var.field} / ${var:fmt}
_VARIABLE = re.compile(
    r"\$(\w+)|\[\[(\w+?)(?::(\w+))?\]\]|\$\{(\w+)(?:\.([^:^}]+))?(?::([^}]+))?\}"
)


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _format_value(name: str, value: VariableValue, fmt: str | None) -> str:
    """A variable's value as Grafana writes it into PostgreSQL SQL."""
    values = [value] if isinstance(value, str) else list(value)
    if fmt is None:  # the data source's own formatter
        if isinstance(value, str):
            return value.replace("'", "''")
        return ",".join(_quote(v) for v in values)
    formatters: dict[str, Callable[[list[str]], str]] = {
        "raw": ",".join,
        "csv": ",".join,
        "sqlstring": lambda vs: ",".join(_quote(v) for v in vs),
        "singlequote": lambda vs: ",".join("'" + v.replace("'", "\\'") + "'" for v in vs),
        "doublequote": lambda vs: ",".join('"' + v.replace('"', '\\"') + '"' for v in vs),
    }
    formatter = formatters.get(fmt)
    if formatter is None:
        raise MacroError(
            f"variable {name!r}: format {fmt!r} is not supported here; "
            f"accepted: {', '.join(sorted(formatters))}"
        )
    return formatter(values)


def _interpolate_variables(
    sql: str, variables: Mapping[str, VariableValue], builtins: Mapping[str, str]
) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2) or match.group(4)
        fmt = match.group(3) or match.group(6)
        if match.group(5):
            raise MacroError(f"variable {name!r}: field paths (${{{name}.…}}) are not supported")
        if name in variables:
            return _format_value(name, variables[name], fmt)
        if name in builtins:
            return builtins[name]
        return match.group(0)  # Grafana leaves what it does not know

    return _VARIABLE.sub(replace, sql)


# ---------------------------------------------------------------------------------- step 2

_GO_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_GO_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_DATE_UNITS = {"d": 86_400, "w": 7 * 86_400}


def parse_interval(text: str) -> timedelta:
    """An interval as Grafana's ``gtime.ParseInterval`` reads it.

    ``Nd`` and ``Nw`` (days, weeks of 24 h on psymon's UTC servers) or a Go
    duration (``90s``, ``1h30m``, ``500ms``). Months and years are refused:
    their length depends on the date Grafana runs the query.

    >>> parse_interval("1d"), parse_interval("1h30m"), parse_interval("'5m'")
    (datetime.timedelta(days=1), datetime.timedelta(seconds=5400), datetime.timedelta(seconds=300))
    >>> parse_interval("5")
    Traceback (most recent call last):
    ...
    dashboards.macros.MacroError: interval '5' is not understood; accepted: a number with \
ms, s, m, h, d or w, such as '5m' or '1d'
    """
    inp = text.strip().strip("'")
    accepted = "accepted: a number with ms, s, m, h, d or w, such as '5m' or '1d'"
    date_unit = re.fullmatch(r"(\d+)([dwMy])", inp)
    if date_unit:
        number, unit = int(date_unit.group(1)), date_unit.group(2)
        if unit not in _DATE_UNITS:
            raise MacroError(
                f"interval {text!r}: months and years have no fixed length; use days or weeks"
            )
        return timedelta(seconds=number * _DATE_UNITS[unit])
    position, seconds = 0, 0.0
    for part in _GO_DURATION.finditer(inp):
        if part.start() != position:
            break
        seconds += float(part.group(1)) * _GO_UNITS[part.group(2)]
        position = part.end()
    if not inp or position != len(inp):
        raise MacroError(f"interval {text!r} is not understood; {accepted}")
    return timedelta(seconds=seconds)


def format_interval(interval: timedelta) -> str:
    """``$__interval`` as Grafana writes it (``gtime.FormatInterval``): one unit, rounded down.

    >>> [format_interval(timedelta(seconds=s)) for s in (0.2, 59, 90, 7200, 86400 * 8)]
    ['200ms', '59s', '1m', '2h', '8d']
    """
    units = (
        ("y", timedelta(days=365)),
        ("d", timedelta(days=1)),
        ("h", timedelta(hours=1)),
        ("m", timedelta(minutes=1)),
        ("s", timedelta(seconds=1)),
        ("ms", timedelta(milliseconds=1)),
    )
    for suffix, size in units:
        if interval >= size:
            return f"{interval // size}{suffix}"
    return "1ms"


def default_interval(time_from: datetime, time_to: datetime) -> timedelta:
    """The ``$__interval`` Grafana would choose for a range, near enough.

    The range over :data:`MAX_DATA_POINTS`, whole seconds, at least the data
    source's :data:`MIN_INTERVAL` (Grafana also rounds it to a "nice" value).

    >>> default_interval(datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 3, 2, tzinfo=UTC))
    datetime.timedelta(seconds=5184)
    """
    per_point = timedelta(seconds=int((time_to - time_from).total_seconds() / MAX_DATA_POINTS))
    return max(MIN_INTERVAL, per_point)


def _global_substitutions(sql: str, time_from: datetime, time_to: datetime, step: timedelta) -> str:
    sql = sql.replace("$__interval_ms", str(step // timedelta(milliseconds=1)))
    sql = sql.replace("$__interval", format_interval(step))
    sql = sql.replace("$__unixEpochFrom()", str(int(time_from.timestamp())))
    return sql.replace("$__unixEpochTo()", str(int(time_to.timestamp())))


# ---------------------------------------------------------------------------------- step 3

_MACRO = re.compile(r"\$([_a-zA-Z0-9]+)\(([^)]*)\)")


def rfc3339(when: datetime) -> str:
    """A time as Go's ``time.RFC3339Nano`` in UTC: no trailing zeros, ``Z``.

    >>> rfc3339(datetime(2026, 3, 1, 12, 0, 0, 250000, tzinfo=UTC))
    '2026-03-01T12:00:00.25Z'
    """
    utc = when.astimezone(UTC)
    fraction = f"{utc.microsecond:06d}".rstrip("0")
    return utc.strftime("%Y-%m-%dT%H:%M:%S") + (f".{fraction}" if fraction else "") + "Z"


def go_float(value: float) -> str:
    """A float as Go's ``%v`` prints it (shortest digits; exponent from 1e+06).

    >>> [go_float(v) for v in (86400.0, 300.0, 0.5, 2592000.0, 1e-05)]
    ['86400', '300', '0.5', '2.592e+06', '1e-05']
    """
    if value == 0:
        return "0"
    sign, digit_tuple, exponent = Decimal(repr(float(value))).normalize().as_tuple()
    assert isinstance(exponent, int)
    digits = "".join(map(str, digit_tuple))
    point = len(digits) + exponent  # digits before the decimal point
    exp = point - 1
    prefix = "-" if sign else ""
    if exp < -4 or exp >= 6:
        mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{prefix}{mantissa}e{'+' if exp >= 0 else '-'}{abs(exp):02d}"
    if point <= 0:
        return f"{prefix}0.{'0' * -point}{digits}"
    if point >= len(digits):
        return prefix + digits + "0" * (point - len(digits))
    return f"{prefix}{digits[:point]}.{digits[point:]}"


def _evaluate(
    name: str, args: list[str], time_from: datetime, time_to: datetime, timescaledb: bool
) -> str:
    def column(at_least: int = 1, what: str = "time column argument") -> str:
        if len(args) < at_least or not args[0]:
            raise MacroError(f"macro ${name}: missing {what}")
        return args[0]

    start, end = rfc3339(time_from), rfc3339(time_to)
    if name == "__time":
        return f'{column()} AS "time"'
    if name == "__timeEpoch":
        return f'extract(epoch from {column()}) as "time"'
    if name == "__timeFilter":
        return f"{column()} BETWEEN '{start}' AND '{end}'"
    if name == "__timeFrom":
        return f"'{start}'"
    if name == "__timeTo":
        return f"'{end}'"
    if name in ("__timeGroup", "__timeGroupAlias", "__unixEpochGroup", "__unixEpochGroupAlias"):
        col = column(2, "time column and interval (and an optional fill value)")
        seconds = parse_interval(args[1]).total_seconds()
        if name.startswith("__unixEpoch"):
            group = f"floor(({col})/{go_float(seconds)})*{go_float(seconds)}"
        elif timescaledb:
            group = f"time_bucket('{seconds:.3f}s',{col})"
        else:
            group = f"floor(extract(epoch from {col})/{go_float(seconds)})*{go_float(seconds)}"
        return group + (' AS "time"' if name.endswith("Alias") else "")
    if name == "__unixEpochFilter":
        col = column()
        return f"{col} >= {int(time_from.timestamp())} AND {col} <= {int(time_to.timestamp())}"
    if name in ("__unixEpochNanoFilter", "__unixEpochNanoFrom", "__unixEpochNanoTo"):
        nano_from, nano_to = _nanos(time_from), _nanos(time_to)
        if name == "__unixEpochNanoFrom":
            return str(nano_from)
        if name == "__unixEpochNanoTo":
            return str(nano_to)
        col = column()
        return f"{col} >= {nano_from} AND {col} <= {nano_to}"
    raise MacroError(f"unknown macro ${name}")


def _nanos(when: datetime) -> int:
    delta = when.astimezone(UTC) - datetime(1970, 1, 1, tzinfo=UTC)
    return delta // timedelta(microseconds=1) * 1000


def _expand_macros(sql: str, time_from: datetime, time_to: datetime, timescaledb: bool) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        # Grafana before 5.3 wrote `$__timeGroup(...),` to mean the aliased form.
        following = sql[match.end() : match.end() + 1]
        if name == "__timeGroup" and following == ",":
            name = "__timeGroupAlias"
        args = [arg.strip() for arg in match.group(2).split(",")]
        return _evaluate(name, args, time_from, time_to, timescaledb)

    return _MACRO.sub(replace, sql)


# ---------------------------------------------------------------------------------- the verb


def expand(
    sql: str,
    time_from: datetime,
    time_to: datetime,
    variables: Mapping[str, VariableValue] | None = None,
    *,
    interval: timedelta | None = None,
    timescaledb: bool = False,
) -> str:
    """``sql`` as Grafana sends it to PostgreSQL for a time range and variable values.

    Parameters
    ----------
    sql
        A panel's ``rawSql``.
    time_from, time_to
        The dashboard's time range; tz-aware.
    variables
        Template variable values by name: a string for a single value, a list
        for a multi-value or *All* selection (quoted and comma-separated).
    interval
        ``$__interval``; default :func:`default_interval` of the range.
    timescaledb
        Whether the data source is marked TimescaleDB (``$__timeGroup`` then
        uses ``time_bucket``); psymon's production data source is.

    Raises
    ------
    MacroError
        For an unknown macro, a malformed interval or an unsupported variable format.
    """
    for label, when in (("time_from", time_from), ("time_to", time_to)):
        if when.tzinfo is None or when.utcoffset() is None:
            raise ValueError(f"{label} {when.isoformat()} has no time zone; give a tz-aware time")
    if time_from > time_to:
        raise ValueError(
            f"time_from {time_from.isoformat()} is after time_to {time_to.isoformat()}"
        )
    step = default_interval(time_from, time_to) if interval is None else interval
    builtins = {
        "__from": str(_nanos(time_from) // 1_000_000),
        "__to": str(_nanos(time_to) // 1_000_000),
        "__interval": format_interval(step),
        "__interval_ms": str(step // timedelta(milliseconds=1)),
    }
    sql = _interpolate_variables(sql, variables or {}, builtins)
    sql = _global_substitutions(sql, time_from, time_to, step)
    return _expand_macros(sql, time_from, time_to, timescaledb)
