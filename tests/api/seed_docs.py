"""The three API documents, parsed: paths, field names and JSON types, straight from the
vendored seed files (tests/api/seeds/, see its README). No tests here.

Every dialect becomes the same small schema language, a subset of JSON Schema:
`{"type": "string" | "integer" | "number" | "boolean"}`, `{"type": "object",
"properties": {...}}`, a map `{"type": "object", "additionalProperties": S}`, an array
`{"type": "array", "items": S}` or a fixed tuple `{"type": "array", "prefixItems": [...]}`.
`"nullable": True` marks an f2pool message field, which protobuf may leave unset.

- f2pool (003): the "Name Type Mark description" tables of its messages and endpoints.
  Types map as proto3 does: string; int32/int64/uint32 and the WorkerStatus enum are
  integers (this pool writes int64 as JSON numbers, as every f2pool client reads them);
  double/float numbers; `XxxEntry repeated` is a protobuf map (a JSON object).
- Bitminter (001): its attribute lists. The document gives no types, so they are read
  off each description by `bitminter_type` (seconds since epoch and counts are
  integers, Ghps/Mhps, difficulty, score and money numbers, "True if" a boolean...);
  a description none of its rules covers fails the parse rather than being guessed.
- SiaMining (002): its sample responses, whose JSON values carry the types (int and
  float told apart).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SEEDS = Path(__file__).parent / "seeds"
BITMINTER = SEEDS / "001_b81bac9e61bb61e3.txt"
SIAMINING = SEEDS / "002_6c83a7d2f2e5484a.txt"
F2POOL = SEEDS / "003_872a0e2bc9a6b9bb.txt"

Schema = dict[str, Any]

# -- f2pool --------------------------------------------------------------------------------

SCALARS = {
    "string": "string",
    "int64": "integer",
    "int32": "integer",
    "uint32": "integer",
    "double": "number",
    "float": "number",
    "WorkerStatus": "integer",  # an enum the document names but does not list
}
_ROW = re.compile(r"^([a-z_][a-z0-9_]*) ([A-Za-z][A-Za-z0-9]*)( repeated)?(?: .*)?$")
_POST = re.compile(r"^POST\s+(/v2/\S+)\s*$")
_MESSAGE = re.compile(r"^[A-Z][A-Za-z0-9]*$")
# ResultsEntry is defined twice (value string; value MiningUserWalletResp). Only
# wallet/update answers per-user wallet results; pause and resume answer "true" per user.
ENTRY_CHOICE = {("/v2/mining_user/wallet/update", "results"): "MiningUserWalletResp"}


@dataclass
class F2PoolDoc:
    # message -> every definition the document gives, each {field: type}, in order
    messages: dict[str, list[dict[str, str]]] = field(default_factory=dict)
    # path -> (request {field: type}, response {field: type}); types as written
    endpoints: dict[str, tuple[dict[str, str], dict[str, str]]] = field(default_factory=dict)

    def message(self, name: str) -> dict[str, str]:
        return self.messages[name][0]

    def field_type(self, path: str, name: str, written: str) -> str:
        """A field's type in the tests' notation: `X`, `X repeated` or `map X`."""
        base = written.partition(" ")[0]
        if base.endswith("Entry"):
            defs = self.messages[base]
            chosen = ENTRY_CHOICE.get((path, name))
            values = [d["value"] for d in defs]
            value = chosen if chosen in values else values[0]
            return f"map {value}"
        return written

    def schema(self, written: str, path: str = "", name: str = "") -> Schema:
        kind = self.field_type(path, name, written)
        if kind.startswith("map "):
            return {"type": "object", "additionalProperties": self.schema(kind[4:])}
        if kind.endswith(" repeated"):
            return {"type": "array", "items": self.schema(kind.removesuffix(" repeated"))}
        if kind in SCALARS:
            return {"type": SCALARS[kind]}
        fields = self.message(kind)
        props = {n: self.schema(t, "", n) for n, t in fields.items()}
        return {"type": "object", "properties": props, "nullable": True}

    def body(self, path: str, side: int) -> Schema:
        fields = self.endpoints[path][side]
        props = {n: self.schema(t, path, n) for n, t in fields.items()}
        return {"type": "object", "properties": props}


def parse_f2pool(text: str | None = None) -> F2PoolDoc:
    lines = (text if text is not None else F2POOL.read_text("utf-8")).splitlines()
    doc = F2PoolDoc()
    path: str | None = None
    side = 0
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        post = _POST.match(line)
        if post:
            path, side = post.group(1), -1
            doc.endpoints[path] = ({}, {})
        elif line == "Request Parameter":
            side = 0
        elif line == "Response Parameter":
            side = 1
        elif line == "Public Messages:":
            path = None
        elif line == "Name Type Mark description":
            rows: dict[str, str] = {}
            i += 1
            while i < len(lines) and lines[i].strip():
                row = _ROW.match(lines[i].strip())
                if row and (row.group(2) in SCALARS or row.group(2)[0].isupper()):
                    rows[row.group(1)] = row.group(2) + (" repeated" if row.group(3) else "")
                i += 1  # other lines continue a description ("* 1 means", "- all")
            if path is not None:
                assert side in (0, 1), f"{path}: a table outside Request/Response Parameter"
                doc.endpoints[path][side].update(rows)
            else:
                name = next(
                    s.strip() for s in reversed(lines[:i]) if _MESSAGE.match(s.strip() or "-")
                )
                doc.messages.setdefault(name, []).append(rows)
            continue
        i += 1
    return doc


# -- Bitminter --------------------------------------------------------------------------------

# (pattern in the description, JSON type), first match wins; ordered so the specific
# phrases come before the general ones ("number of seconds" is an integer of seconds).
BITMINTER_RULES: tuple[tuple[str, str], ...] = (
    (r"^True if", "boolean"),
    (r"^One of the following", "string"),
    (r"seconds since epoch|in seconds|number of seconds", "integer"),
    (r"\bGhps\b|\bMhps\b", "number"),
    (r"difficulty", "number"),
    (r"\bscore\b|^Score\b", "number"),
    (r"\bincome\b|\bbalance\b", "number"),
    (r"\bID\b|\bheight\b|-1 if|always zero", "integer"),
    (r"^(The )?[Nn]umber of|[Pp]roofs of work", "integer"),
    (r"\bname\b|\bhash of\b|chain/cointype", "string"),
)
_ENDPOINT = re.compile(r"^\s*(?:\u2022\s+)?(/api/\S+) - ")
_ATTRIBUTE = re.compile(r"^    ([a-z_][a-z0-9_]*) (.+)$")
_SUBOBJECT = re.compile(r"^\s*(?:Each )?(\w+)(?: data)?.* is an object with the following")


def bitminter_type(description: str) -> str:
    for pattern, kind in BITMINTER_RULES:
        if re.search(pattern, description):
            return kind
    raise AssertionError(f"no rule gives a JSON type to {description!r}")


@dataclass
class BitminterDoc:
    responses: dict[str, Schema] = field(default_factory=dict)  # OpenAPI path -> schema
    parameters: dict[str, list[str]] = field(default_factory=dict)  # path -> query names


def _attribute_schema(description: str) -> Schema:
    if description.startswith("An object mapping"):
        target = description.split(" to ", 1)[1]
        if "(see below)" in target or "round data" in target:
            return {"type": "object", "additionalProperties": None}  # filled by a sub-object
        return {"type": "object", "additionalProperties": {"type": bitminter_type(target)}}
    if description.startswith("An array of objects"):
        return {"type": "array", "items": None}
    if "(see below)" in description:
        return {"type": "object", "properties": None}
    return {"type": bitminter_type(description)}


def _attach(levels: list[dict[str, Schema]], noun: str, sub: dict[str, Schema]) -> None:
    """A sub-object ("Each worker is an object...", "Work data for each commodity is...")
    belongs to the nearest field above it named for it: worker(s), work."""
    for fields in reversed(levels):
        for name in (noun, noun + "s"):
            target = fields.get(name)
            if target is None:
                continue
            obj: Schema = {"type": "object", "properties": sub}
            if target["type"] == "array":
                target["items"] = obj
            elif "additionalProperties" in target:
                target["additionalProperties"] = obj
            else:
                target["properties"] = sub
            return
    raise AssertionError(f"no field takes the sub-object {noun!r}")


def parse_bitminter(text: str | None = None) -> BitminterDoc:
    lines = (text if text is not None else BITMINTER.read_text("utf-8")).splitlines()
    doc = BitminterDoc()
    paths: list[str] = []
    top: dict[str, Schema] = {}
    current: dict[str, Schema] = top
    levels: list[dict[str, Schema]] = [top]  # the attribute lists of this section, in order
    mode = ""  # what the attribute lines below are: "params", "object", "array", "sub"
    shape = ""

    def finish() -> None:
        for p in paths:
            if shape == "object":
                doc.responses[p] = {"type": "object", "properties": top}
            elif shape == "array":
                doc.responses[p] = {"type": "array", "items": {"type": "object", "properties": top}}

    for raw in lines:
        line = raw.strip()
        endpoint = _ENDPOINT.match(raw)
        if endpoint and endpoint.group(1).startswith("/api/"):
            path = endpoint.group(1).replace("USERNAME", "{name}")
            if not raw.lstrip().startswith("/api/"):  # a new bullet, not a second path
                finish()
                paths, top, shape = [], {}, ""
                current, mode, levels = top, "", [top]
            paths.append(path)
            doc.parameters.setdefault(path, [])
            continue
        if not paths:
            continue
        if line == "Optional parameters:":
            mode = "params"
        elif line == "An object with the following attributes:":
            mode, shape, current = "object", "object", top
        elif line.startswith("Returned is an array of objects"):
            mode, shape, current = "object", "array", top
        elif line.endswith("as a plain number."):
            kind = "number" if "(Ghps)" in line or "(Mhps)" in line else bitminter_type(line)
            for p in paths:
                doc.responses[p] = {"type": kind}
        elif line.startswith("An object mapping"):
            target = line.split(" to ", 1)[1].rstrip(".")
            for p in paths:
                doc.responses[p] = {
                    "type": "object",
                    "additionalProperties": {"type": bitminter_type(target)},
                }
        elif (sub := _SUBOBJECT.match(line)) is not None:
            current = {}
            _attach(levels, sub.group(1).lower(), current)
            levels.append(current)
            mode = "object"
        elif (attr := _ATTRIBUTE.match(raw)) is not None and mode:
            name, description = attr.groups()
            if mode == "params":
                for p in paths:
                    doc.parameters[p].append(name)
            elif description.startswith("- "):
                continue  # a value of the enumeration above ("processing - ...")
            else:
                current[name] = _attribute_schema(description)
    finish()
    return doc


# -- SiaMining -------------------------------------------------------------------------------

_GET = re.compile(r"^GET https?://[^/]+(/api/v1/\S+)\s*$")


def sample_schema(value: Any) -> Schema:
    if isinstance(value, bool):
        return {"type": "boolean"}
    if isinstance(value, int):
        return {"type": "integer"}
    if isinstance(value, float):
        return {"type": "number"}
    if isinstance(value, str):
        return {"type": "string"}
    if isinstance(value, dict):
        return {"type": "object", "properties": {k: sample_schema(v) for k, v in value.items()}}
    assert isinstance(value, list) and value, f"an empty sample says nothing: {value!r}"
    first = value[0]
    if isinstance(first, list):  # a pair such as [timestamp, hashrate]: a fixed tuple
        pair = {"type": "array", "prefixItems": [sample_schema(x) for x in first]}
        return {"type": "array", "items": pair}
    return {"type": "array", "items": sample_schema(first)}


def parse_siamining(text: str | None = None) -> dict[str, Any]:
    """OpenAPI path -> the sample response (parsed JSON)."""
    body = text if text is not None else SIAMINING.read_text("utf-8")
    out: dict[str, Any] = {}
    decoder = json.JSONDecoder()
    lines = body.splitlines(keepends=True)
    offset = 0
    for line in lines:
        found = _GET.match(line.strip())
        offset += len(line)
        if not found:
            continue
        path = re.sub(r":(\w+)", r"{\1}", found.group(1))
        rest = body[offset:]
        marker = rest.index("Sample Response")
        start = min(i for i in (rest.find("{", marker), rest.find("[", marker)) if i >= 0)
        out[path], _ = decoder.raw_decode(rest, start)
    return out
