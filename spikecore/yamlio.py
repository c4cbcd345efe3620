"""Reading the YAML files users give: bounded, strict, and one line on every failure.

Every configuration file of the command line (architecture, training, sweep, energy table) is read by
:func:`load_yaml`. It refuses what PyYAML's ``safe_load`` would let through and what an attacker or a slip
of the keyboard can do with it:

- files larger than :data:`MAX_YAML_BYTES` (configurations are a few hundred bytes);
- text that is not UTF-8;
- anchors and aliases (``&name`` / ``*name``): a few hundred bytes of nested aliases expand to billions of
  nodes once anything walks the value (the "billion laughs"), and no configuration needs them;
- duplicate keys in a mapping (PyYAML keeps the last one silently);
- nesting so deep that the parser or a validator would recurse past Python's stack.

The checks every loader applies to the mappings it reads (unknown keys with the closest spelling, integers
in range) are here too, so each message reads the same whichever file it names.
"""
from __future__ import annotations

import difflib
from pathlib import Path

import yaml

from spikecore.errors import UserError, short_repr

#: Largest configuration file read (1 MiB).
MAX_YAML_BYTES = 1 << 20
#: Deepest nesting of mappings and lists accepted.
MAX_YAML_DEPTH = 64


class _StrictLoader(yaml.SafeLoader):
    """``SafeLoader`` without aliases or duplicate keys, and with a depth limit."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            raise _Refused("YAML aliases ('*name') are not supported", mark)
        event = self.peek_event()
        if getattr(event, "anchor", None) is not None:
            raise _Refused(f"YAML anchors ('&{event.anchor}') are not supported", event.start_mark)
        self._depth = getattr(self, "_depth", 0) + 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                raise _Refused(f"nesting deeper than {MAX_YAML_DEPTH} levels", event.start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                try:
                    duplicate = key in seen
                    seen.add(key)
                except TypeError:  # an unhashable key: PyYAML's own error says so
                    break
                if duplicate:
                    raise _Refused(f"duplicate key '{key}'", key_node.start_mark)
        return super().construct_mapping(node, deep=deep)


class _Refused(Exception):
    def __init__(self, message: str, mark):
        super().__init__(message)
        self.message, self.mark = message, mark


def _at(mark) -> str:
    return f" at line {mark.line + 1}" if mark is not None else ""


def parse_yaml(text: str, source: str):
    """Parse YAML ``text`` strictly (module docstring); ``source`` names it in errors."""
    try:
        return yaml.load(text, Loader=_StrictLoader)
    except _Refused as exc:
        raise UserError(f"{source}: {exc.message}{_at(exc.mark)}") from None
    except yaml.YAMLError as exc:
        raise UserError(f"{source}: malformed YAML{_at(getattr(exc, 'problem_mark', None))}") from None
    except RecursionError:
        raise UserError(f"{source}: nesting too deep") from None


def load_yaml(path, what: str):
    """Read and parse a YAML file; ``what`` names the kind of file in errors ("architecture file", ...).

    Raises
    ------
    UserError
        One line naming the file: unreadable, too large, not UTF-8, malformed, aliases, duplicate keys.
    """
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_YAML_BYTES + 1)
    except IsADirectoryError:
        raise UserError(f"{path}: is a directory, not a {what}") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read {what} ({exc.strerror})") from None
    if len(data) > MAX_YAML_BYTES:
        raise UserError(f"{path}: larger than {MAX_YAML_BYTES // 1024} KiB; not a {what}")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})") from None
    return parse_yaml(text, str(path))


def suggest(key: str, choices, prefix: str = "") -> str:
    """`` (did you mean 'PREFIXCHOICE'?)`` for the choice closest to a misspelled ``key``, or nothing."""
    close = difflib.get_close_matches(key, list(choices), n=1)
    return f" (did you mean '{prefix}{close[0]}'?)" if close else ""


def check_keys(data: dict, allowed, where: str, source: str) -> None:
    """Refuse a key of ``data`` not in ``allowed``, naming the file, the key (after ``where``) and the closest choice."""
    for key in data:
        if key not in allowed:
            raise UserError(f"{source}: unknown key '{where}{key}'{suggest(str(key), allowed, where)}")


def check_int(value, key: str, source: str, lo: int, hi: int | None = None) -> int:
    """``value`` if it is an integer (not a bool) in ``[lo, hi]`` (``hi`` ``None``: no upper bound), else
    :class:`UserError` naming the file and the key."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise UserError(f"{source}: key '{key}' must be an integer{'' if hi is not None else f' >= {lo}'}, "
                        f"got {short_repr(value)}")
    if hi is None and value < lo:
        raise UserError(f"{source}: key '{key}' must be an integer >= {lo}, got {short_repr(value)}")
    if hi is not None and not lo <= value <= hi:
        raise UserError(f"{source}: key '{key}' = {value} is out of range [{lo}, {hi}]")
    return value
