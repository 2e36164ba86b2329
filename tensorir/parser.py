"""Read the text form back into a Graph: the exact inverse of :mod:`tensorir.printer`.

Every problem, lexical, syntactic or semantic (an unknown op, a shape the type rule rejects, a
printed type that disagrees with the inferred one), is a :class:`ParseError` with the line and
column where it was found.
"""

from __future__ import annotations

import json
import re
from typing import Any, Callable

import numpy as np

from . import dims as _dims
from .dtypes import DType
from .errors import ParseError, TensorIRError
from .ir import Graph, Value
from .types import TensorType

_TOKEN = re.compile(r"""
    (?P<ws>[ \t\r]+)
  | (?P<nl>\n)
  | (?P<comment>\#[^\n]*)
  | (?P<string>"(?:[^"\\\n]|\\.)*")
  | (?P<value>%(?:[A-Za-z0-9_.]+|"(?:[^"\\\n]|\\.)*"))
  | (?P<digest>sha1:[0-9a-zA-Z]*)
  | (?P<number>-?(?:[0-9]+\.?[0-9]*(?:[eE][-+]?[0-9]+)?|\.[0-9]+(?:[eE][-+]?[0-9]+)?)|-inf\b)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_.]*)
  | (?P<arrow>->)
  | (?P<punct>[()\[\]{},:=*])
""", re.VERBOSE)


class Token:
    __slots__ = ("kind", "text", "line", "col")

    def __init__(self, kind: str, text: str, line: int, col: int) -> None:
        self.kind, self.text, self.line, self.col = kind, text, line, col

    def __repr__(self) -> str:
        return f"{self.kind}:{self.text!r}@{self.line}:{self.col}"


def tokenize(text: str, source: str = "<text>") -> list[Token]:
    tokens: list[Token] = []
    pos, line, line_start = 0, 1, 0
    n = len(text)
    while pos < n:
        m = _TOKEN.match(text, pos)
        if m is None:
            raise ParseError(f"unexpected character {text[pos]!r}", line, pos - line_start + 1,
                             source)
        kind = m.lastgroup
        if kind == "nl":
            line += 1
            line_start = m.end()
        elif kind not in ("ws", "comment"):
            tokens.append(Token(kind, m.group(), line, m.start() - line_start + 1))
        pos = m.end()
    tokens.append(Token("eof", "", line, pos - line_start + 1))
    return tokens


class Parser:
    def __init__(self, text: str, source: str = "<text>") -> None:
        self.source = source
        self.tokens = tokenize(text, source)
        self.pos = 0

    # ----------------------------------------------------------------- token helpers
    @property
    def tok(self) -> Token:
        return self.tokens[self.pos]

    def error(self, message: str, tok: Token | None = None) -> ParseError:
        tok = tok or self.tok
        return ParseError(message, tok.line, tok.col, self.source)

    def describe(self, tok: Token) -> str:
        return "end of input" if tok.kind == "eof" else repr(tok.text)

    def next(self) -> Token:
        tok = self.tok
        if tok.kind != "eof":
            self.pos += 1
        return tok

    def accept(self, text: str) -> bool:
        if self.tok.text == text and self.tok.kind in ("punct", "arrow", "ident"):
            self.pos += 1
            return True
        return False

    def expect(self, text: str) -> Token:
        if not self.accept(text):
            raise self.error(f"expected {text!r}, found {self.describe(self.tok)}")
        return self.tokens[self.pos - 1]

    def expect_kind(self, kind: str, what: str) -> Token:
        if self.tok.kind != kind:
            raise self.error(f"expected {what}, found {self.describe(self.tok)}")
        return self.next()

    def comma_list(self, close: str, item: Callable[[], Any]) -> list:
        items: list = []
        if self.accept(close):
            return items
        while True:
            items.append(item())
            if self.accept(close):
                return items
            self.expect(",")

    # ----------------------------------------------------------------- pieces
    def string(self) -> str:
        tok = self.expect_kind("string", "a string")
        return self._unquote(tok.text, tok)

    def _unquote(self, text: str, tok: Token) -> str:
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise self.error(f"malformed string literal: {exc.msg}", tok) from None

    def name(self) -> str:
        if self.tok.kind == "string":
            return self.string()
        return self.expect_kind("ident", "a name").text

    def value_name(self) -> str:
        tok = self.expect_kind("value", "a %value")
        body = tok.text[1:]
        return self._unquote(body, tok) if body.startswith('"') else body

    def dtype(self) -> DType:
        tok = self.expect_kind("ident", "an element type")
        try:
            return DType.parse(tok.text)
        except TensorIRError:
            raise self.error(f"unknown element type {tok.text!r}", tok) from None

    def dim(self) -> _dims.Dim:
        tok = self.tok
        parts = [self._dim_factor()]
        while self.accept("*"):
            parts.append(self._dim_factor())
        try:
            return _dims.normalize("*".join(parts)) if len(parts) > 1 or not parts[0].isdigit() \
                else int(parts[0])
        except TensorIRError as exc:
            raise self.error(str(exc), tok) from None

    def _dim_factor(self) -> str:
        tok = self.next()
        if tok.kind == "number" and tok.text.isdigit():
            return tok.text
        if tok.kind == "ident":
            return tok.text
        raise self.error(f"expected a dimension (a size or a symbol), found {self.describe(tok)}",
                         tok)

    def tensor_type(self) -> TensorType:
        dtype = self.dtype()
        self.expect("[")
        shape = self.comma_list("]", self.dim)
        return TensorType(tuple(shape), dtype)

    def scalar(self, dtype: DType) -> Any:
        tok = self.next()
        text = tok.text
        try:
            if dtype is DType.bool:
                if text in ("true", "false"):
                    return text == "true"
                raise ValueError
            if dtype.is_float:
                if tok.kind == "number" or text in ("inf", "nan"):
                    return float(text)
                raise ValueError
            if tok.kind == "number" and re.fullmatch(r"-?[0-9]+", text):
                return int(text)
            raise ValueError
        except ValueError:
            raise self.error(f"expected a {dtype} element, found {self.describe(tok)}", tok) \
                from None

    def dense(self, ttype: TensorType, at: Token) -> np.ndarray:
        self.expect("dense")
        self.expect("[")
        elements = self.comma_list("]", lambda: self.scalar(ttype.dtype))
        if not ttype.is_static:
            raise self.error(f"a dense literal needs a static type, got {ttype}", at)
        if len(elements) != ttype.numel:
            raise self.error(f"{ttype} holds {ttype.numel} elements but {len(elements)} are "
                             f"given", at)
        try:
            if ttype.dtype.is_integer and elements:
                info = np.iinfo(np.int64 if ttype.dtype is DType.int4 else ttype.dtype.numpy)
                if not all(info.min <= e <= info.max for e in elements):
                    raise OverflowError
            array = np.array(elements, dtype=np.float64 if ttype.dtype.is_float else None)
            return array.astype(ttype.dtype.numpy).reshape(ttype.shape)
        except (OverflowError, ValueError):
            raise self.error(f"an element is out of range for {ttype.dtype}", at) from None

    def attr_value(self) -> Any:
        tok = self.tok
        if tok.kind == "number":
            self.next()
            if re.fullmatch(r"-?[0-9]+", tok.text):
                return int(tok.text)
            return float(tok.text)
        if tok.kind == "ident" and tok.text in ("inf", "nan"):
            self.next()
            return float(tok.text)
        if tok.kind == "string":
            return self.string()
        if tok.text == "[" and tok.kind == "punct":
            self.next()
            return tuple(self.comma_list("]", self.attr_value))
        if tok.kind == "ident" and tok.text == "graph":
            return self.graph()
        if tok.kind == "ident":
            ttype = self.tensor_type()
            return self.dense(ttype, tok)
        raise self.error(f"expected an attribute value, found {self.describe(tok)}")

    def attributes(self) -> dict[str, Any]:
        attrs: dict[str, Any] = {}
        if not self.accept("{"):
            return attrs

        def item() -> None:
            key_tok = self.expect_kind("ident", "an attribute name")
            if key_tok.text in attrs:
                raise self.error(f"attribute {key_tok.text!r} given twice", key_tok)
            self.expect("=")
            attrs[key_tok.text] = self.attr_value()

        self.comma_list("}", item)
        return attrs

    def loc(self) -> tuple[str, tuple[str, ...] | None]:
        self.expect("(")
        name = self.string()
        source = None
        if self.accept("from"):
            self.expect("[")
            source = tuple(self.comma_list("]", self.string))
        self.expect(")")
        return name, source

    # ----------------------------------------------------------------- graph
    def graph(self) -> Graph:
        self.expect("graph")
        g = Graph(self.name())
        self.expect("(")

        def param() -> None:
            tok = self.tok
            name = self.value_name()
            self.expect(":")
            ttype = self.tensor_type()
            self._define(g, tok, lambda: g.add_input(name, ttype))

        self.comma_list(")", param)
        self.expect("->")
        self.expect("(")
        declared_outputs: list[tuple[Token, str, TensorType]] = []

        def out_param() -> None:
            tok = self.tok
            name = self.value_name()
            self.expect(":")
            declared_outputs.append((tok, name, self.tensor_type()))

        self.comma_list(")", out_param)
        self.expect("{")
        while not (self.tok.kind == "ident" and self.tok.text == "return"):
            self.statement(g)
        ret = self.expect("return")
        outputs: list[Value] = []
        if self.tok.kind == "value":
            outputs.append(self._lookup(g))
            while self.accept(","):
                outputs.append(self._lookup(g))
        self.expect("}")
        if [v.name for v in outputs] != [name for _, name, _ in declared_outputs]:
            raise self.error("the return list does not match the outputs declared in the graph "
                             "header", ret)
        for (tok, name, ttype), v in zip(declared_outputs, outputs):
            if v.type != ttype:
                raise self.error(f"output %{name} is declared {ttype} but is {v.type}", tok)
        g.set_outputs(outputs)
        return g

    def _lookup(self, g: Graph) -> Value:
        tok = self.tok
        name = self.value_name()
        if not g.has_value(name):
            raise self.error(f"%{name} is used before it is defined", tok)
        return g.value(name)

    def _define(self, g: Graph, tok: Token, build: Callable[[], Any]) -> Any:
        """Run a graph mutation, turning its typed errors into a ParseError at ``tok``."""
        try:
            return build()
        except TensorIRError as exc:
            raise self.error(str(exc), tok) from None

    def statement(self, g: Graph) -> None:
        first = self.tok
        results: list[tuple[Token, str]] = [(self.tok, self.value_name())]
        while self.accept(","):
            results.append((self.tok, self.value_name()))
        self.expect("=")
        for tok, name in results:
            if g.has_value(name):
                raise self.error(f"%{name} is defined twice", tok)
        if len({name for _, name in results}) != len(results):
            raise self.error("an op defines the same value twice", first)
        if self.tok.kind == "ident" and self.tok.text == "const":
            self.constant(g, first, results)
        else:
            self.op(g, first, results)

    def constant(self, g: Graph, first: Token, results: list[tuple[Token, str]]) -> None:
        self.expect("const")
        if len(results) != 1:
            raise self.error("a constant defines one value", first)
        name = results[0][1]
        type_tok = self.tok
        ttype = self.tensor_type()
        if self.tok.kind == "ident" and self.tok.text == "dense":
            data = self.dense(ttype, type_tok)
            self._define(g, first, lambda: g.add_constant(name, data))
        elif self.accept("opaque"):
            self._define(g, first, lambda: g.add_constant(name, type=ttype))
        else:
            tok = self.expect_kind("digest", "'dense', 'opaque' or a sha1: digest")
            digest = tok.text[len("sha1:"):]
            if not re.fullmatch(r"[0-9a-f]{12}", digest):
                raise self.error("expected a 12-digit hexadecimal digest after sha1:", tok)
            self._define(g, first, lambda: g.add_constant(name, type=ttype, digest=digest))

    def op(self, g: Graph, first: Token, results: list[tuple[Token, str]]) -> None:
        type_tok = self.expect_kind("ident", "an op type")
        self.expect("(")

        def operand() -> Value | None:
            if self.accept("none"):
                return None
            return self._lookup(g)

        operands = self.comma_list(")", operand)
        attrs = self.attributes()
        self.expect(":")
        types_tok = self.tok
        types = [self.tensor_type()]
        while self.accept(","):
            types.append(self.tensor_type())
        name, source = "", None
        if self.accept("loc"):
            name, source = self.loc()
        if len(types) != len(results):
            raise self.error(f"{len(results)} results but {len(types)} types", types_tok)
        op = self._define(g, type_tok, lambda: g.add_op(
            type_tok.text, operands, attrs, name=name,
            result_names=[n for _, n in results], source=source))
        for (tok, rname), declared, value in zip(results, types, op.results):
            if declared != value.type:
                raise self.error(f"%{rname} is declared {declared} but {type_tok.text} gives "
                                 f"{value.type}", tok)


def parse(text: str, source: str = "<text>") -> Graph:
    """Read a graph from its text form; every problem is a ParseError with line and column."""
    p = Parser(text, source)
    g = p.graph()
    if p.tok.kind == "ident" and p.tok.text == "schedule":
        from .schedule_text import parse_schedule
        g.schedule = parse_schedule(p, g)
    if p.tok.kind != "eof":
        raise p.error(f"unexpected {p.describe(p.tok)} after the graph")
    return g


def parse_file(path: str) -> Graph:
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as exc:
        raise TensorIRError(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ParseError(f"not UTF-8 text ({exc.reason})", 1, 1, path) from None
    return parse(text, source=path)
