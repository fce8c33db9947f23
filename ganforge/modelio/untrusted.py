"""Limits on what an untrusted pickle can make ganforge do, enforced before CPython acts on it.

A pickle is a program for a stack machine, and CPython's unpickler runs it with few limits of its own: a
tuple nested a million levels deep overflows the C stack when it is hashed as a dict key, int keys chosen to
share a hash make one dict take minutes, a list of two references to a list of two references … is tiny in
the file and 2^40 values to anything that walks it. `prescan` interprets the opcode stream abstractly first
(kinds, nesting depth, element counts; no value is built or hashed) and refuses such files; `key_class`
and `json_value` are the same rules for values the real load has already built. The error types live here
because every layer of the importer raises them.

The bounds come from the official snapshots (`sg2ada-64px-cond5-fp16.pkl`, 2.6 MB, 26,031 opcodes): nesting
depth 32 (5 levels of modules, ~6 pickle levels each, independent of resolution), at most 94 elements in
one container, 15,887 elements in all, 5,799 memo entries, a stack of at most 266 values, only string dict
keys, no container changed after it was placed in another, no cycles. Larger networks add blocks, not depth:
the counts follow the number of modules, not the bytes (a 72 MB 256px snapshot: 22,279 opcodes).
"""

from __future__ import annotations

import contextlib
import math
import pickle
import pickletools
import reprlib
import struct
from collections.abc import Iterator, Sequence
from typing import Any, BinaryIO, NoReturn

from ganforge.errors import GanforgeError


class OfficialPickleError(GanforgeError, ValueError):
    """An official pickle that ganforge cannot read or map; the message says why and what to do."""


class UnsafePickleError(OfficialPickleError):
    """The pickle asks for something outside the allow-list (a global, a class, a state change)."""


FIX = "the file is damaged or was crafted: use the original snapshot"
MAX_DEPTH = 100  # Nesting levels; official snapshots need 32, CPython's C stack holds thousands.
MAX_CONTAINER_ITEMS = 100_000  # Elements of one list/dict/set/tuple; official: 94.
MAX_TOTAL_ITEMS = 500_000  # Elements of all containers plus memo entries; official: ~22,000. Bounds memory too.
MAX_OPCODES = 1_000_000  # Per pickle; official: 26,031 (they follow the module count, not the file size).
MAX_STACK = 100_000  # Values on the stack at once; official: 266.
MAX_NUMERIC_KEYS = 1024  # Int-like dict keys / set elements in a file; official: none (see key_class).
MAX_KEY_DEPTH = 4  # Tuples as dict keys: nesting levels; official: no tuple keys at all.
MAX_HASH_INT = 2**61 - 1  # CPython hashes an int as itself below this (sys.hash_info.modulus).
MAX_META_NODES = 10_000  # Values in snapshot metadata copied to JSON; official training_set_kwargs: 7.
MAX_META_TEXT = 4096  # Characters of one metadata string (a dataset path).
# Every exception type that a damaged or crafted file can raise out of pickle, torch, numpy or our own checks.
DATA_ERRORS = (
    ArithmeticError,
    AttributeError,
    EOFError,
    LookupError,
    MemoryError,
    RuntimeError,
    TypeError,
    ValueError,
    struct.error,
    pickle.UnpicklingError,
)

_brief = reprlib.Repr()
_brief.maxlevel, _brief.maxstring, _brief.maxother, _brief.maxlong = 3, 60, 60, 40


def brief(value: object) -> str:
    """A short repr of an untrusted value for an error message: bounded in length and depth."""
    try:
        return _brief.repr(value)
    except DATA_ERRORS:  # A stand-in object without a usable repr.
        return f"<{type(value).__name__}>"


@contextlib.contextmanager
def refusing_damage(stage: str) -> Iterator[None]:
    """Turn any failure while `stage` handles untrusted data into one OfficialPickleError sentence."""
    try:
        yield
    except OfficialPickleError:
        raise
    except GanforgeError as e:  # A PlanError or similar: its sentence already says what is wrong.
        raise OfficialPickleError(f"{stage}: {e}") from None
    except MemoryError:
        raise OfficialPickleError(f"{stage} ran out of memory: {FIX}") from None
    except RecursionError:
        raise OfficialPickleError(f"{stage} met data nested too deeply: {FIX}") from None
    except DATA_ERRORS as e:
        raise OfficialPickleError(f"{stage} failed ({type(e).__name__}: {brief(str(e))}): {FIX}") from None


# ----------------------------------------------------------------------------
# Dict keys and set elements that cannot be made to collide.
#
# str and bytes hash with SipHash under a per-process random key, so a file cannot choose collisions; None and
# bools are three values. An int below 2**61 - 1 hashes as itself: distinct ints never share a full hash, but a
# file can still choose ints whose probe sequences crowd one region of a table (quadratic in the keys of one
# dict), and tuples of ints can be solved for equal hashes; so those are counted and capped file-wide.
# Floats, big ints, frozensets and objects are refused outright.

SAFE, NUMERIC, BAD = 0, 1, 2


def key_class(value: object, depth: int = 0) -> int:
    """SAFE, NUMERIC or BAD for a real value about to be hashed (the runtime twin of the prescan's rule)."""
    if value is None or isinstance(value, (str, bytes, bool)):
        return SAFE
    if isinstance(value, int):
        return NUMERIC if -MAX_HASH_INT < value < MAX_HASH_INT else BAD
    if type(value) is tuple and depth < MAX_KEY_DEPTH:
        return max((key_class(v, depth + 1) for v in value), default=SAFE)
    return BAD


def bad_key_message(kind: str) -> str:
    article = "an" if kind[0] in "aeiou" else "a"
    return (
        f"the pickle uses {article} {kind} as a dict key or set element; an official snapshot uses strings, and "
        f"such keys can be crafted to collide or nest until hashing them stalls or crashes: {FIX}"
    )


def describe_key(value: object) -> str:
    """What a refused key is, for bad_key_message."""
    if isinstance(value, int):
        return "big int"
    if type(value) is tuple:
        return "tuple holding values other than strings and small integers, or nested too deeply"
    return type(value).__name__


def numeric_keys_message() -> str:
    return (
        f"the pickle uses more than {MAX_NUMERIC_KEYS} integer dict keys or set elements; an official snapshot "
        f"uses none, and integers can be chosen to collide: {FIX}"
    )


# ----------------------------------------------------------------------------
# The abstract interpretation of the opcode stream.


class _Node:
    """What the prescan knows of one value: its kind, nesting depth, element count and key class."""

    __slots__ = ("kind", "depth", "size", "nested", "key")

    def __init__(self, kind: str, depth: int = 0, key: int = BAD):
        self.kind, self.depth, self.size, self.nested, self.key = kind, depth, 0, False, key


# Leaves are shared (they are never changed); containers get a node each.
_STR, _BYTES, _CONST = _Node("str", key=SAFE), _Node("bytes", key=SAFE), _Node("constant", key=SAFE)
_INT, _BIG_INT, _FLOAT = _Node("int", key=NUMERIC), _Node("big int"), _Node("float")
_BYTEARRAY = _Node("bytearray")
_LEAVES = {
    "NONE": _CONST,
    "NEWTRUE": _CONST,
    "NEWFALSE": _CONST,
    "FLOAT": _FLOAT,
    "BINFLOAT": _FLOAT,
    "STRING": _STR,
    "BINSTRING": _STR,
    "SHORT_BINSTRING": _STR,
    "UNICODE": _STR,
    "BINUNICODE": _STR,
    "SHORT_BINUNICODE": _STR,
    "BINUNICODE8": _STR,
    "BINBYTES": _BYTES,
    "SHORT_BINBYTES": _BYTES,
    "BINBYTES8": _BYTES,
    "BYTEARRAY8": _BYTEARRAY,
}
_INTS = ("INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4")
# Opcodes that official snapshots never use and that only reach code or out-of-band data.
_NEVER = {
    "INST": "INST",
    "OBJ": "OBJ",
    "EXT1": "an extension code",
    "EXT2": "an extension code",
    "EXT4": "an extension code",
    "NEXT_BUFFER": "an out-of-band buffer",
    "READONLY_BUFFER": "a buffer",
    "PERSID": "a persistent id",
    "BINPERSID": "a persistent id",
}


class _Scan:
    """One pickle's opcodes on an abstract stack; refuses what would make the real load crash or stall."""

    def __init__(self, allow_persid: bool):
        self.stack: list[_Node] = []
        self.marks: list[int] = []
        self.memo: dict[int, _Node] = {}
        self.items = self.numeric_keys = self.count = 0
        self.allow_persid = allow_persid

    def refuse(self, why: str) -> NoReturn:
        raise OfficialPickleError(f"opcode {self.count} of the pickle {why}: {FIX}")

    def run(self, f: BinaryIO) -> None:
        handlers = _STORAGE_HANDLERS if self.allow_persid else _HANDLERS
        for self.count, (opcode, arg, _) in enumerate(pickletools.genops(f), 1):
            handler = handlers.get(opcode.name)
            if handler is None:
                self.refuse(f"is {opcode.name}, which ganforge does not know")
            handler(self, arg)
            if len(self.stack) > MAX_STACK:
                self.refuse(f"puts more than {MAX_STACK:,} values on the stack at once (official snapshots: ~300)")
            if self.count > MAX_OPCODES:
                self.refuse(f"makes the pickle longer than {MAX_OPCODES:,} opcodes (official snapshots: ~30,000)")

    # Stack discipline, as CPython's unpickler enforces it (items below the last MARK are out of reach).

    def pop(self, n: int) -> list[_Node]:
        fence = self.marks[-1] if self.marks else 0
        if len(self.stack) - n < fence:
            self.refuse("takes more values than the stack holds")
        items = self.stack[len(self.stack) - n :]
        del self.stack[len(self.stack) - n :]
        return items

    def pop_mark(self) -> list[_Node]:
        if not self.marks:
            self.refuse("needs a MARK that is not there")
        start = self.marks.pop()
        items = self.stack[start:]
        del self.stack[start:]
        return items

    def top(self) -> _Node:
        if len(self.stack) <= (self.marks[-1] if self.marks else 0):
            self.refuse("needs a value that the stack does not hold")
        return self.stack[-1]

    def memo_index(self, arg: Any) -> int:
        if not isinstance(arg, int) or arg < 0 or arg > self.count:  # A huge index makes CPython allocate first.
            self.refuse(f"uses memo index {brief(arg)}, out of range")
        return arg

    def get(self, arg: Any) -> None:
        node = self.memo.get(self.memo_index(arg))
        if node is None:
            self.refuse(f"reads memo entry {arg}, which was never stored")
        self.stack.append(node)

    def put(self, arg: Any) -> None:
        if self.memo_index(arg) not in self.memo:
            self.count_items(1)
        self.memo[arg] = self.top()

    # Bounds.

    def count_items(self, n: int) -> None:
        self.items += n
        if self.items > MAX_TOTAL_ITEMS:
            self.refuse(f"brings the values in the file past {MAX_TOTAL_ITEMS:,}; official snapshots hold ~20,000")

    def check_key(self, node: _Node) -> None:
        if node.key == BAD:
            raise OfficialPickleError(bad_key_message(_kind_text(node)))
        if node.key == NUMERIC:
            self.numeric_keys += 1
            if self.numeric_keys > MAX_NUMERIC_KEYS:
                raise OfficialPickleError(numeric_keys_message())

    def fill(
        self, target: _Node, children: list[_Node], keys: Sequence[_Node] = (), entries: int | None = None
    ) -> None:
        """Put children into target: depth and counts grow; a container is final once placed in another."""
        if target.nested:
            self.refuse(
                f"changes a {target.kind} after placing it inside another value (official snapshots never "
                f"do; it is how cycles and hidden depth are made)"
            )
        for key in keys:
            if key.key != SAFE:
                self.check_key(key)
        depth = target.depth
        for child in children:
            if child is target:
                self.refuse(f"puts a {target.kind} inside itself")
            child.nested = True
            if child.depth >= depth:
                depth = child.depth + 1
        if depth > MAX_DEPTH:
            self.refuse(f"nests values more than {MAX_DEPTH} levels deep (official snapshots: 32)")
        target.depth = depth
        target.size += len(children) if entries is None else entries
        if target.size > MAX_CONTAINER_ITEMS:
            self.refuse(f"grows a {target.kind} past {MAX_CONTAINER_ITEMS:,} elements; official snapshots need < 100")
        self.count_items(len(children))

    def push_new(
        self, kind: str, children: list[_Node], keys: Sequence[_Node] = (), entries: int | None = None
    ) -> _Node:
        node = _Node(kind)
        self.fill(node, children, keys, entries)
        self.stack.append(node)
        return node

    def fill_top(
        self, kinds: tuple[str, ...], children: list[_Node], keys: Sequence[_Node] = (), entries: int | None = None
    ) -> None:
        target = self.top()
        if target.kind not in kinds:
            self.refuse(f"adds elements to a {target.kind}, expected a {' or '.join(kinds)}")
        self.fill(target, children, keys, entries)

    # Opcodes that build values.

    def push_tuple(self, items: list[_Node]) -> None:
        node = self.push_new("tuple", items)
        keys = max((child.key for child in items), default=SAFE)
        node.key = keys if node.depth <= MAX_KEY_DEPTH else BAD

    def elements(self) -> tuple[list[_Node], list[_Node]]:
        """Set elements up to the last MARK, as (children, keys): every one of them is hashed."""
        items = self.pop_mark()
        return items, items

    def push_dict(self, items: list[_Node]) -> None:
        if len(items) % 2:
            self.refuse("builds a dict from an odd number of values")
        self.push_new("dict", items, items[::2], len(items) // 2)

    def set_items(self, items: list[_Node]) -> None:
        if len(items) % 2:
            self.refuse("sets an odd number of dict values")
        # Dict stand-ins (EasyDict, OrderedDict) are objects made by a call; their keys are checked the same way.
        self.fill_top(("dict", "object"), items, items[::2], len(items) // 2)

    def stack_global(self) -> None:
        if any(node is not _STR for node in self.pop(2)):
            self.refuse("names a global with values that are not strings")
        self.stack.append(_Node("global"))

    def build(self) -> None:
        state = self.pop(1)
        if self.top().kind not in ("object", "global"):
            raise UnsafePickleError(
                f"the pickle tries to set the state of a {self.top().kind} (BUILD opcode), "
                f"which an official snapshot never does: {FIX}"
            )
        self.fill(self.top(), state)

    def pop_one(self) -> None:
        if self.marks and len(self.stack) == self.marks[-1]:  # CPython: POP right after MARK drops the mark.
            self.marks.pop()
        else:
            self.pop(1)


_OPS = {  # Opcode name -> what it does to the abstract stack, as handler(scan, argument).
    "EMPTY_LIST": lambda s, _: s.stack.append(_Node("list")),
    "EMPTY_DICT": lambda s, _: s.stack.append(_Node("dict")),
    "EMPTY_SET": lambda s, _: s.stack.append(_Node("set")),
    "EMPTY_TUPLE": lambda s, _: s.push_tuple([]),
    "TUPLE1": lambda s, _: s.push_tuple(s.pop(1)),
    "TUPLE2": lambda s, _: s.push_tuple(s.pop(2)),
    "TUPLE3": lambda s, _: s.push_tuple(s.pop(3)),
    "TUPLE": lambda s, _: s.push_tuple(s.pop_mark()),
    "LIST": lambda s, _: s.push_new("list", s.pop_mark()),
    "DICT": lambda s, _: s.push_dict(s.pop_mark()),
    "FROZENSET": lambda s, _: s.push_new("frozenset", *s.elements()),
    "APPEND": lambda s, _: s.fill_top(("list",), s.pop(1)),
    "APPENDS": lambda s, _: s.fill_top(("list",), s.pop_mark()),
    "SETITEM": lambda s, _: s.set_items(s.pop(2)),
    "SETITEMS": lambda s, _: s.set_items(s.pop_mark()),
    "ADDITEMS": lambda s, _: s.fill_top(("set",), *s.elements()),
    "GLOBAL": lambda s, _: s.stack.append(_Node("global")),
    "STACK_GLOBAL": lambda s, _: s.stack_global(),
    # A call's result holds its arguments (a record holds its meta dict); the callable is not kept.
    "REDUCE": lambda s, _: s.push_new("object", s.pop(2)[1:]),
    "NEWOBJ": lambda s, _: s.push_new("object", s.pop(2)[1:]),
    "NEWOBJ_EX": lambda s, _: s.push_new("object", s.pop(3)[1:]),
    "BUILD": lambda s, _: s.build(),
    "MARK": lambda s, _: s.marks.append(len(s.stack)),
    "POP_MARK": lambda s, _: s.pop_mark(),
    "DUP": lambda s, _: s.stack.append(s.top()),
    "POP": lambda s, _: s.pop_one(),
    "PROTO": lambda s, _: None,
    "FRAME": lambda s, _: None,
    "STOP": lambda s, _: None,
}


def _never(name: str):
    def refuse(scan: _Scan, _arg: Any) -> None:
        raise UnsafePickleError(
            f"the pickle uses {_NEVER[name]} (opcode {name}), which official snapshots never do: refusing it"
        )

    return refuse


def _push(node: _Node):
    return lambda scan, _arg: scan.stack.append(node)


# Opcode name -> handler(scan, argument), for the outer pickle and for storage payloads (persistent ids allowed).
_HANDLERS = dict(_OPS)
_HANDLERS.update({name: _push(node) for name, node in _LEAVES.items()})
_HANDLERS.update({name: (lambda scan, arg: scan.stack.append(_int_node(arg))) for name in _INTS})
_HANDLERS.update({name: _Scan.get for name in ("GET", "BINGET", "LONG_BINGET")})
_HANDLERS.update({name: _Scan.put for name in ("PUT", "BINPUT", "LONG_BINPUT")})
_HANDLERS["MEMOIZE"] = lambda scan, _arg: scan.put(len(scan.memo))
_HANDLERS.update({name: _never(name) for name in _NEVER})
_STORAGE_HANDLERS = {**_HANDLERS, "BINPERSID": lambda scan, _arg: scan.push_new("object", scan.pop(1))}


def _int_node(value: object) -> _Node:
    if isinstance(value, bool) or value is None:  # INT spells True/False as I01/I00.
        return _CONST
    return _INT if isinstance(value, int) and -MAX_HASH_INT < value < MAX_HASH_INT else _BIG_INT


def _kind_text(node: _Node) -> str:
    if node.kind == "tuple" and node.depth > MAX_KEY_DEPTH:
        return f"tuple nested {node.depth} levels deep"
    if node.kind == "tuple":
        return "tuple holding values other than strings and small integers"
    return node.kind


def prescan(f: BinaryIO, allow_persid: bool = False) -> None:
    """Interpret one pickle's opcodes abstractly, from the current position to its STOP; raise
    OfficialPickleError for anything the real load must not attempt. Nothing is built, hashed or called."""
    try:
        _Scan(allow_persid).run(f)
    except OfficialPickleError:
        raise
    except DATA_ERRORS as e:  # pickletools: a truncated argument, a bad escape, a missing STOP.
        raise OfficialPickleError(f"not a readable pickle ({type(e).__name__}: {brief(str(e))}): {FIX}") from None


# ----------------------------------------------------------------------------
# Snapshot metadata as JSON: a budget on every value reached.


def json_value(value: object, what: str) -> Any:
    """A JSON-safe copy of untrusted metadata (dicts with string keys, lists, strings, finite numbers, bools,
    None); anything else is refused by name. Every value reached counts against MAX_META_NODES, shared or
    not, so a file of nested shared references cannot make the copy (or json.dumps) walk 2^40 values."""
    budget = [MAX_META_NODES]
    return _json(value, what, budget, 0)


def _json(value: object, path: str, budget: list[int], depth: int) -> Any:
    budget[0] -= 1
    if budget[0] < 0:
        raise OfficialPickleError(
            f"{path.split('[')[0]} holds more than {MAX_META_NODES:,} values (shared values "
            f"count each time they are reached): {FIX}"
        )
    if depth > MAX_DEPTH:
        raise OfficialPickleError(f"{path.split('[')[0]} nests values more than {MAX_DEPTH} levels deep: {FIX}")
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int) and abs(value) < 2**63:
        return value
    if isinstance(value, float) and math.isfinite(value):
        return value
    if isinstance(value, str) and len(value) <= MAX_META_TEXT:
        return value
    if isinstance(value, (list, tuple)):
        return [_json(v, f"{path}[{i}]", budget, depth + 1) for i, v in enumerate(value)]
    if isinstance(value, dict):
        bad = next((k for k in value if not isinstance(k, str) or len(k) > MAX_META_TEXT), None)
        if bad is not None:
            raise OfficialPickleError(f"{path} has the key {brief(bad)}; metadata keys are short strings: {FIX}")
        return {k: _json(v, f"{path}[{k[:40]!r}]", budget, depth + 1) for k, v in value.items()}
    raise OfficialPickleError(f"{path} is {_describe(value)}, which snapshot metadata never holds: {FIX}")


def _describe(value: object) -> str:
    if isinstance(value, str):
        return f"a string of {len(value):,} characters (at most {MAX_META_TEXT:,})"
    if isinstance(value, (int, float)):
        return f"the number {brief(value)}"
    return f"a {type(value).__name__}"
