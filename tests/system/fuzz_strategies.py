"""Hypothesis strategies built from protobuf descriptors: any message of any schema, with edge values, and raw bytes
that are (or are close to) not protobuf at all."""
from __future__ import annotations

import math
import struct
from typing import Mapping, Optional

from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from hypothesis import strategies as st

I32 = (-(1 << 31), (1 << 31) - 1)
I64 = (-(1 << 63), (1 << 63) - 1)
U32 = (0, (1 << 32) - 1)
U64 = (0, (1 << 64) - 1)
FLOAT32_MAX = struct.unpack("<f", b"\xff\xff\x7f\x7f")[0]
HUGE_TEXT = 300_000        # characters: past every length limit, inside the 4 MiB message limit
HUGE_BYTES = 1 << 20       # bytes: the largest inline clip and clip chunk, and one more
MAX_TEXT = 80              # ordinary generated strings and bytes stay short, so examples are cheap
MAX_REPEATED = 4
MAX_DEPTH = 4              # nested messages below this are left unset (the schema has no recursion today)

Hints = Mapping[str, st.SearchStrategy]  # "edgert.v1.Event.event_id" -> values that pass the field's validation


def _ints(lo: int, hi: int) -> st.SearchStrategy[int]:
    edges = sorted({lo, hi, 0, 1, -1 if lo < 0 else 2, hi - 1, lo + 1, (hi >> 1) + 1})
    return st.one_of(st.sampled_from(edges), st.integers(lo, hi))


def _floats(width: int) -> st.SearchStrategy[float]:
    biggest = FLOAT32_MAX if width == 32 else 1.7976931348623157e308
    edges = [math.nan, math.inf, -math.inf, -0.0, 0.0, 1.0, 1.0000001, -1.0, biggest, -biggest, 5e-324 if width == 64
             else 1e-45, 90.0, 180.0, 1e-3]
    return st.one_of(st.sampled_from(edges), st.floats(width=width))




def _weighted(*choices: tuple[int, st.SearchStrategy]) -> st.SearchStrategy:
    """One of `choices` by weight; it shrinks towards the first."""
    total = sum(w for w, _ in choices)

    def pick(i: int) -> st.SearchStrategy:
        for w, s in choices:
            if i < w:
                return s
            i -= w
        raise AssertionError(i)

    return st.integers(0, total - 1).flatmap(pick)


def _filled(kind: type, n: int, fill: int = 0) -> st.SearchStrategy:
    """A long value made when drawn (a constant in the strategy would make its repr as long)."""
    return st.just(n).map(lambda k: kind(k * ("x" if kind is str else bytes([fill]))))


# Common values 70 in 100, edge values 29 in 100, huge ones (a megabyte on the wire each) 1 in 100: four of them in
# one request are over the server's message limit, which ends the stream they travel on.
_TEXT = _weighted((70, st.text(max_size=MAX_TEXT)),
                  (29, st.sampled_from(["", " ", "\x00", "\n", "a" * 64, "a" * 65, "a" * 129, "é" * 200,
                                        "\u202e\ufeff", "../../etc/passwd", "' OR 1=1 --", "%s%n", "\U0010ffff"])),
                  (1, _filled(str, HUGE_TEXT)))
_BYTES = _weighted((70, st.binary(max_size=MAX_TEXT)),
                   (29, st.one_of(st.sampled_from([b"", b"\x00"]), _filled(bytes, 2048, 0xFF), _filled(bytes, 2049))),
                   (1, st.one_of(_filled(bytes, HUGE_BYTES), _filled(bytes, HUGE_BYTES + 1))))


def scalar(field: FieldDescriptor) -> st.SearchStrategy:
    """Values of one non-message field, edge values included (the Python API cannot hold invalid UTF-8 in a string
    field, so the raw strategies below are where that reaches the server)."""
    t = field.type
    if t in (FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_SINT32, FieldDescriptor.TYPE_SFIXED32):
        return _ints(*I32)
    if t in (FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_SINT64, FieldDescriptor.TYPE_SFIXED64):
        return _ints(*I64)
    if t in (FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_FIXED32):
        return _ints(*U32)
    if t in (FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_FIXED64):
        return _ints(*U64)
    if t == FieldDescriptor.TYPE_FLOAT:
        return _floats(32)
    if t == FieldDescriptor.TYPE_DOUBLE:
        return _floats(64)
    if t == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if t == FieldDescriptor.TYPE_STRING:
        return _TEXT
    if t == FieldDescriptor.TYPE_BYTES:
        return _BYTES
    if t == FieldDescriptor.TYPE_ENUM:  # proto3 enums are open: numbers the schema does not name travel too
        known = [v.number for v in field.enum_type.values]
        return st.one_of(st.sampled_from(known), st.sampled_from([max(known) + 1, -1]), st.integers(*I32))
    raise TypeError(f"{field.full_name}: no strategy for field type {t}")


class MessageStrategies:
    """`of(descriptor)` is a strategy of messages of that type. Every field is set or left unset, repeated fields and
    maps hold up to `max_repeated` entries, a oneof has one member set or none. A field named in `hints` draws from
    its hint three times in four, so that most of a message passes validation and the rest reaches deeper code."""

    def __init__(self, hints: Optional[Hints] = None, *, max_repeated: int = MAX_REPEATED,
                 max_depth: int = MAX_DEPTH):
        self.hints = dict(hints or {})
        self.max_repeated, self.max_depth = max_repeated, max_depth
        self._cache: dict[tuple[str, int], st.SearchStrategy] = {}

    def of(self, desc: Descriptor, depth: int = 0) -> st.SearchStrategy:
        key = (desc.full_name, depth)
        if key not in self._cache:
            self._cache[key] = self._build(desc, depth)
        return self._cache[key]

    def _value(self, field: FieldDescriptor, depth: int) -> st.SearchStrategy:
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            base = self.of(field.message_type, depth + 1)
        else:
            base = scalar(field)
        hint = self.hints.get(field.full_name)
        return base if hint is None else st.one_of(hint, hint, hint, base)

    def field(self, field: FieldDescriptor, depth: int = 1) -> st.SearchStrategy:
        """Values of one field: a list for a repeated one, a dict for a map, a message or a scalar otherwise."""
        return self._field(field, depth)

    def _field(self, field: FieldDescriptor, depth: int) -> st.SearchStrategy:
        if field.type == FieldDescriptor.TYPE_MESSAGE and field.message_type.GetOptions().map_entry:
            k, v = field.message_type.fields_by_name["key"], field.message_type.fields_by_name["value"]
            return st.dictionaries(self._value(k, depth), self._value(v, depth), max_size=self.max_repeated)
        if field.is_repeated:
            return st.lists(self._value(field, depth), max_size=self.max_repeated)
        return self._value(field, depth)

    def _build(self, desc: Descriptor, depth: int) -> st.SearchStrategy:
        cls = message_factory.GetMessageClass(desc)
        if depth >= self.max_depth:
            return st.builds(cls)
        plain = {f.name: st.none() | self._field(f, depth) for f in desc.fields if f.containing_oneof is None}
        oneofs = [st.none() | st.one_of([st.tuples(st.just(f.name), self._field(f, depth)) for f in o.fields])
                  for o in desc.oneofs]
        return st.builds(_assemble, st.just(cls), st.fixed_dictionaries(plain), st.tuples(*oneofs))


def _assemble(cls, plain: dict, chosen: tuple):
    msg = cls()
    for name, value in [*plain.items(), *(c for c in chosen if c is not None)]:
        if value is not None:
            _set(msg, msg.DESCRIPTOR.fields_by_name[name], value)
    return msg


def _set(msg, field: FieldDescriptor, value) -> None:
    target = getattr(msg, field.name)
    if field.type == FieldDescriptor.TYPE_MESSAGE and field.message_type.GetOptions().map_entry:
        vfield = field.message_type.fields_by_name["value"]
        for k, v in value.items():
            if vfield.type == FieldDescriptor.TYPE_MESSAGE:
                target[k].CopyFrom(v)
            else:
                target[k] = v
    elif field.is_repeated:
        target.extend(value)
    elif field.type == FieldDescriptor.TYPE_MESSAGE:
        target.CopyFrom(value)  # sets presence even when the sub-message is empty
        target.SetInParent()
    else:
        setattr(msg, field.name, value)


def _sites(msg):
    """(message, field) for every field of `msg` and of every sub-message it holds, set or not (maps as a whole)."""
    for f in msg.DESCRIPTOR.fields:
        yield msg, f
        if f.type != FieldDescriptor.TYPE_MESSAGE or f.message_type.GetOptions().map_entry:
            continue
        if f.is_repeated:
            for item in getattr(msg, f.name):
                yield from _sites(item)
        elif msg.HasField(f.name):
            yield from _sites(getattr(msg, f.name))


@st.composite
def one_field_changed(draw, valid: st.SearchStrategy, schema: MessageStrategies):
    """A valid message with one field, anywhere in it, cleared or set to anything its type allows: the rest passes
    validation, so the changed field is what the server has to get right (and its neighbours reach the store)."""
    msg = draw(valid)
    out = type(msg)()
    out.CopyFrom(msg)
    parent, f = draw(st.sampled_from(list(_sites(out))))
    value = draw(st.none() | schema.field(f))
    parent.ClearField(f.name)
    if value is not None:
        _set(parent, f, value)
    return out


# ------------------------------------------------------------------------------------------------ raw bytes
def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


@st.composite
def wire_soup(draw) -> bytes:
    """Bytes built from protobuf's wire pieces (tags of any field number and wire type, varints up to 10 bytes,
    length prefixes that lie, groups that never close), so a parser goes further into them than into noise."""
    parts = []
    for _ in range(draw(st.integers(1, 12))):
        fieldno = draw(st.one_of(st.integers(1, 20), st.sampled_from([0, 19000, (1 << 29) - 1])))
        wt = draw(st.sampled_from([0, 1, 2, 3, 4, 5, 6, 7]))
        parts.append(_varint((fieldno << 3) | wt))
        if wt == 0:
            parts.append(draw(st.one_of(st.integers(0, (1 << 64) - 1).map(_varint), st.just(b"\xff" * 11))))
        elif wt == 1:
            parts.append(draw(st.binary(min_size=0, max_size=8)))
        elif wt == 2:
            body = draw(st.binary(max_size=40))
            length = draw(st.sampled_from([len(body), len(body) + 1, 1 << 31, (1 << 64) - 1, 0]))
            parts.append(_varint(length) + body)
        elif wt == 5:
            parts.append(draw(st.binary(min_size=0, max_size=4)))
    return b"".join(parts)


@st.composite
def mutated(draw, messages: st.SearchStrategy) -> bytes:
    """A generated message's bytes, then truncated, bit-flipped, spliced or extended."""
    raw = bytearray(draw(messages).SerializeToString())
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["truncate", "flip", "insert", "append"]))
        if op == "truncate" and raw:
            del raw[draw(st.integers(0, len(raw) - 1)):]
        elif op == "flip" and raw:
            raw[draw(st.integers(0, len(raw) - 1))] ^= 1 << draw(st.integers(0, 7))
        elif op == "insert":
            at = draw(st.integers(0, len(raw)))
            raw[at:at] = draw(st.binary(min_size=1, max_size=8))
        else:
            raw += draw(wire_soup())
    return bytes(raw)


def raw_bytes(messages: st.SearchStrategy) -> st.SearchStrategy[bytes]:
    """Noise, wire-shaped soup, and mutated real messages: mostly not a parseable message, sometimes one."""
    return st.one_of(st.binary(min_size=1, max_size=512), wire_soup(), mutated(messages),
                     st.sampled_from([b"\x00", b"\xff" * 16, b"\x0a\xff\xff\xff\xff\x0f", b"\x08" + b"\x80" * 10]))
