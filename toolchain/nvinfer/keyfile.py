"""Reading and writing GLib GKeyFile text, the format of nvinfer and deepstream-app config files.

What matters for faithfulness (GLib's rules, which DeepStream inherits):
- `[group]` lines, `key=value` lines; whole-line comments start with `#`; blank lines are ignored.
- There are no inline comments: `batch-size=4 # four` is the string "4 # four", which
  g_key_file_get_integer rejects. The checker reports that instead of silently stripping it.
- Spaces around `=` are ignored; a repeated key keeps its last value; a repeated group is merged.
- Lists are `;`-separated, with an optional trailing `;`.
- Booleans are `true`/`false`/`1`/`0`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import FbtoolError


@dataclass
class Entry:
    value: str
    line: int


@dataclass
class KeyFile:
    groups: dict[str, dict[str, Entry]] = field(default_factory=dict)
    group_lines: dict[str, int] = field(default_factory=dict)
    source: str = "<text>"

    def get(self, group: str, key: str, default: str | None = None) -> str | None:
        e = self.groups.get(group, {}).get(key)
        return default if e is None else e.value

    def has(self, group: str, key: str) -> bool:
        return key in self.groups.get(group, {})


def parse(text: str, source: str = "<text>") -> KeyFile:
    kf = KeyFile(source=source)
    current: str | None = None
    for n, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            if not line.endswith("]") or len(line) < 3:
                raise FbtoolError(f"{source}:{n}: malformed group line {raw!r}", "a group line is [name]")
            current = line[1:-1].strip()
            kf.groups.setdefault(current, {})
            kf.group_lines.setdefault(current, n)
            continue
        if "=" not in line:
            raise FbtoolError(f"{source}:{n}: line {raw!r} is neither a group, a key=value nor a comment",
                              "GKeyFile refuses such files")
        if current is None:
            raise FbtoolError(f"{source}:{n}: key before the first [group]", "put keys inside a [group]")
        key, value = line.split("=", 1)
        kf.groups[current][key.strip()] = Entry(value.strip(), n)
    return kf


def split_list(value: str) -> list[str]:
    items = [v.strip() for v in value.split(";")]
    if items and items[-1] == "":
        items.pop()
    return items


def parse_bool(value: str) -> bool:
    v = value.strip().lower()
    if v in ("1", "true"):
        return True
    if v in ("0", "false"):
        return False
    raise ValueError(f"{value!r} is not a GKeyFile boolean (true/false/1/0)")


def format_value(v) -> str:
    """Python value -> GKeyFile text as fbtool writes it (booleans as 1/0, lists `;`-joined)."""
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, (list, tuple)):
        return ";".join(format_value(x) for x in v)
    return str(v)


def render(groups: list[tuple[str, list[tuple[str, object, str | None]]]], header: list[str] | None = None) -> str:
    """[(group, [(key, value, comment)])] -> text. Comments go on their own line above the key."""
    out = [f"# {h}" if h else "#" for h in (header or [])]
    for name, entries in groups:
        if out:
            out.append("")
        out.append(f"[{name}]")
        for key, value, comment in entries:
            if comment:
                out.append(f"# {comment}")
            out.append(f"{key}={format_value(value)}")
    return "\n".join(out) + "\n"
