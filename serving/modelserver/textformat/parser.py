"""protobuf's TextFormat ParserImpl (text_format.cc) with FORBID_SINGULAR_OVERWRITES: records errors."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor

from serving.modelserver.textformat.tokenizer import (
    END,
    FLOAT,
    IDENTIFIER,
    INTEGER,
    STRING,
    WHITESPACE,
    ParseProblem,
    Token,
    Tokenizer,
)

INT32_MAX, UINT32_MAX = 2**31 - 1, 2**32 - 1
INT64_MAX, UINT64_MAX = 2**63 - 1, 2**64 - 1
ANY_TYPE_URL_PREFIXES = ("type.googleapis.com/", "type.googleprod.com/")


def parse_integer(text: str, max_value: int) -> int | None:
    """io::Tokenizer::ParseInteger: decimal, ``0x`` hex or leading-zero octal, None when out of range."""
    base, digits = 10, text
    if text.startswith(("0x", "0X")):
        base, digits = 16, text[2:]
    elif text.startswith("0"):
        base = 8
    try:
        value = int(digits, base) if digits else 0
    except ValueError:
        return None
    return value if value <= max_value else None


def _float(text: str) -> float:
    """The value of a number token, as leniently as io::Tokenizer::ParseFloat (``1e`` is 1.0)."""
    text = text.rstrip("fF").rstrip("+-").rstrip("eE")
    try:
        return float(text)
    except (ValueError, OverflowError):
        return float("inf")


def _decode_string(text: str) -> bytes:
    """The bytes a string token stands for (io::Tokenizer::ParseStringAppend), enough to tell empty
    from not."""
    body = text[1:-1] if len(text) >= 2 and text[-1] == text[0] else text[1:]
    return body.encode("latin-1")


@dataclass
class _Presence:
    """What ``Reflection::HasField`` would say while one message is being parsed."""

    fields: set[str] = field(default_factory=set)
    oneofs: dict[str, str] = field(default_factory=dict)


class _Parser:
    """text_format.cc ParserImpl with FORBID_SINGULAR_OVERWRITES; records problems instead of logging."""

    def __init__(self, data: bytes, root: Descriptor, skip_unknown_any: bool = False) -> None:
        self.problems: list[ParseProblem] = []
        self._skip_unknown_any = skip_unknown_any
        self._tokenizer = Tokenizer(data, self.problems)
        self._root = root
        self._tokenizer.next()

    @property
    def _current(self) -> Token:
        return self._tokenizer.current

    def parse(self) -> list[ParseProblem]:
        presence = _Presence()
        while self._current.type != END:
            if not self._field(self._root, presence):
                break
        return self.problems

    # primitives -------------------------------------------------------------------------------

    def _report(self, message: str) -> bool:
        self.problems.append(ParseProblem(self._current.line, self._current.column, message))
        return False

    def _looking_at(self, text: str) -> bool:
        return self._current.text == text

    def _try(self, text: str) -> bool:
        if self._current.text == text:
            self._tokenizer.next()
            return True
        return False

    def _consume(self, text: str) -> bool:
        if self._current.text != text:
            return self._report(f'Expected "{text}", found "{self._current.text}".')
        self._tokenizer.next()
        return True

    def _before_whitespace(self, action: Any, *args: Any) -> Any:
        self._tokenizer.report_whitespace = True
        try:
            return action(*args)
        finally:
            self._tokenizer.report_whitespace = False

    def _try_whitespace(self) -> None:
        if self._current.type == WHITESPACE:
            self._tokenizer.next()

    def _identifier(self) -> str | None:
        if self._current.type == IDENTIFIER:
            text = self._current.text
            self._tokenizer.next()
            return text
        self._report(f"Expected identifier, got: {self._current.text}")
        return None

    # fields -----------------------------------------------------------------------------------

    def _field(self, descriptor: Descriptor, presence: _Presence) -> bool:
        if descriptor.full_name == "google.protobuf.Any" and self._try("["):
            return self._any_field(descriptor, presence)
        if self._try("["):
            return self._extension(descriptor)
        name = self._before_whitespace(self._identifier)
        if name is None:
            return False
        self._try_whitespace()
        found = descriptor.fields_by_name.get(name)
        if found is None:
            if name in _reserved_names(descriptor):
                return self._skip_reserved()
            return self._report(f'Message type "{descriptor.full_name}" has no field named "{name}".')
        return self._field_value(found, name, presence)

    def _field_value(self, found: FieldDescriptor, name: str, presence: _Presence) -> bool:
        repeated = found.is_repeated
        if not repeated and found.name in presence.fields:
            return self._report(f'Non-repeated field "{name}" is specified multiple times.')
        oneof = found.containing_oneof
        if oneof is not None and oneof.name in presence.oneofs:
            other = presence.oneofs[oneof.name]
            return self._report(
                f'Field "{name}" is specified along with field "{other}", another member of oneof "{oneof.name}".'
            )
        is_message = found.cpp_type == FieldDescriptor.CPPTYPE_MESSAGE
        if is_message:
            if self._before_whitespace(self._try, ":"):
                self._try_whitespace()
        else:
            if not self._before_whitespace(self._consume, ":"):
                return False
            self._try_whitespace()
        if repeated and self._try("["):
            if not self._try("]"):
                while True:
                    if not (self._message_value(found) if is_message else self._scalar_value(found)[0]):
                        return False
                    if self._try("]"):
                        break
                    if not self._consume(","):
                        return False
        elif is_message:
            if not self._message_value(found):
                return False
            presence.fields.add(found.name)
        else:
            ok, is_set = self._scalar_value(found)
            if not ok:
                return False
            if is_set or found.has_presence:
                presence.fields.add(found.name)
        if oneof is not None and (found.name in presence.fields or is_message):
            presence.oneofs[oneof.name] = found.name
        if not self._try(";"):
            self._try(",")
        return True

    def _message_value(self, found: FieldDescriptor) -> bool:
        delimiter = self._delimiter()
        assert found.message_type is not None
        return delimiter is not None and self._message_body(found.message_type, delimiter)

    def _delimiter(self) -> str | None:
        if self._try("<"):
            return ">"
        return "}" if self._consume("{") else None

    def _message_body(self, descriptor: Descriptor, delimiter: str) -> bool:
        presence = _Presence()
        while not self._looking_at(">") and not self._looking_at("}"):
            if not self._field(descriptor, presence):
                return False
        return self._consume(delimiter)

    def _scalar_value(self, found: FieldDescriptor) -> tuple[bool, bool]:
        """(parsed, set to a value other than the default)."""
        cpp = found.cpp_type
        if cpp in (FieldDescriptor.CPPTYPE_INT32, FieldDescriptor.CPPTYPE_INT64):
            value = self._signed(INT32_MAX if cpp == FieldDescriptor.CPPTYPE_INT32 else INT64_MAX)
            return value is not None, bool(value)
        if cpp in (FieldDescriptor.CPPTYPE_UINT32, FieldDescriptor.CPPTYPE_UINT64):
            value = self._unsigned(UINT32_MAX if cpp == FieldDescriptor.CPPTYPE_UINT32 else UINT64_MAX)
            return value is not None, bool(value)
        if cpp in (FieldDescriptor.CPPTYPE_FLOAT, FieldDescriptor.CPPTYPE_DOUBLE):
            number = self._double()
            return number is not None, number != 0.0 if number is not None else False
        if cpp == FieldDescriptor.CPPTYPE_STRING:
            if self._current.type != STRING:
                return self._report(f"Expected string, got: {self._current.text}"), False
            value_bytes = b""
            while self._current.type == STRING:
                value_bytes += _decode_string(self._current.text)
                self._tokenizer.next()
            return True, bool(value_bytes)
        if cpp == FieldDescriptor.CPPTYPE_BOOL:
            return self._bool(found)
        return self._enum(found)

    def _unsigned(self, max_value: int) -> int | None:
        if self._current.type != INTEGER:
            self._report(f"Expected integer, got: {self._current.text}")
            return None
        value = parse_integer(self._current.text, max_value)
        if value is None:
            self._report(f"Integer out of range ({self._current.text})")
            return None
        self._tokenizer.next()
        return value

    def _signed(self, max_value: int) -> int | None:
        negative = self._try("-")
        value = self._unsigned(max_value + 1 if negative else max_value)
        return None if value is None else (-value if negative else value)

    def _double(self) -> float | None:
        negative = self._try("-")
        token = self._current
        if token.type == INTEGER:
            text = token.text
            if text.startswith(("0x", "0X")) or (len(text) >= 2 and text[0] == "0" and text[1] in "01234567"):
                self._report(f"Expect a decimal number, got: {text}")
                return None
            value = _float(text)
        elif token.type == FLOAT:
            value = _float(token.text)
        elif token.type == IDENTIFIER:
            lowered = token.text.lower()
            if lowered not in ("inf", "infinity", "nan"):
                self._report(f"Expected double, got: {lowered}")
                return None
            value = float(lowered)
        else:
            self._report(f"Expected double, got: {token.text}")
            return None
        self._tokenizer.next()
        return -value if negative else value

    def _bool(self, found: FieldDescriptor) -> tuple[bool, bool]:
        if self._current.type == INTEGER:
            value = self._unsigned(1)
            return value is not None, bool(value)
        text = self._identifier()
        if text is None:
            return False, False
        if text in ("true", "True", "t"):
            return True, True
        if text in ("false", "False", "f"):
            return True, False
        return self._report(f'Invalid value for boolean field "{found.name}". Value: "{text}".'), False

    def _enum(self, found: FieldDescriptor) -> tuple[bool, bool]:
        enum_type = found.enum_type
        assert enum_type is not None
        if self._current.type == IDENTIFIER:
            text = self._identifier() or ""
            value = enum_type.values_by_name.get(text)
            if value is None:
                return self._report(f'Unknown enumeration value of "{text}" for field "{found.name}".'), False
            return True, value.number != 0
        if self._looking_at("-") or self._current.type == INTEGER:
            number = self._signed(INT32_MAX)
            if number is None:
                return False, False
            if number not in enum_type.values_by_number and getattr(enum_type, "is_closed", False):
                return self._report(f'Unknown enumeration value of "{number}" for field "{found.name}".'), False
            return True, number != 0
        return self._report(f"Expected integer or identifier, got: {self._current.text}"), False

    # google.protobuf.Any, extensions and reserved fields -------------------------------------

    def _dotted_name(self, separators: str = ".") -> str | None:
        """ConsumeFullTypeName (separators ".") or ConsumeTypeUrlOrFullTypeName (separators "./")."""
        name = self._identifier()
        if name is None:
            return None
        while True:
            connector = next((s for s in separators if self._try(s)), None)
            if connector is None:
                return name
            part = self._identifier()
            if part is None:
                return None
            name += connector + part

    def _any_field(self, descriptor: Descriptor, presence: _Presence) -> bool:
        prefix = self._dotted_name()  # ConsumeAnyTypeUrl: host name, "/", then the type name
        if prefix is None or not self._consume("/"):
            return False
        name = self._dotted_name()
        if name is None or not self._before_whitespace(self._consume, "]"):
            return False
        self._try_whitespace()
        if self._before_whitespace(self._try, ":"):
            self._try_whitespace()
        value_type = None
        if f"{prefix}/" in ANY_TYPE_URL_PREFIXES:  # DefaultFinderFindAnyType knows only these hosts
            with contextlib.suppress(KeyError):
                value_type = descriptor.file.pool.FindMessageTypeByName(name)
        if value_type is None and self._skip_unknown_any and f"{prefix}/" in ANY_TYPE_URL_PREFIXES:
            if not self._skip_message():
                return False
        elif value_type is None:
            return self._report(f'Could not find type "{prefix}/{name}" stored in google.protobuf.Any.')
        else:
            delimiter = self._delimiter()
            if delimiter is None or not self._message_body(value_type, delimiter):
                return False
        if presence.fields & {"type_url", "value"}:
            return self._report("Non-repeated Any specified multiple times.")
        presence.fields |= {"type_url", "value"}
        return True

    def _extension(self, descriptor: Descriptor) -> bool:
        name = self._dotted_name()
        if name is None or not self._before_whitespace(self._consume, "]"):
            return False
        self._try_whitespace()
        return self._report(f'Extension "{name}" is not defined or is not an extension of "{descriptor.full_name}".')

    def _skip_reserved(self) -> bool:
        if self._before_whitespace(self._try, ":"):
            self._try_whitespace()
            if not self._looking_at("{") and not self._looking_at("<"):
                return self._skip_value()
        return self._skip_message()

    def _skip_message(self) -> bool:
        delimiter = self._delimiter()
        if delimiter is None:
            return False
        while not self._looking_at(">") and not self._looking_at("}"):
            if self._try("["):
                if self._dotted_name("./") is None or not self._before_whitespace(self._consume, "]"):
                    return False
            elif self._before_whitespace(self._identifier) is None:
                return False
            self._try_whitespace()
            if self._before_whitespace(self._try, ":"):
                self._try_whitespace()
                at_message = self._looking_at("{") or self._looking_at("<")
                ok = self._skip_message() if at_message else self._skip_value()
            else:
                ok = self._skip_message()
            if not ok:
                return False
            if not self._try(";"):
                self._try(",")
        return self._consume(delimiter)

    def _skip_value(self) -> bool:
        if self._current.type == STRING:
            while self._current.type == STRING:
                self._tokenizer.next()
            return True
        if self._try("["):
            if not self._try("]"):
                while True:
                    ok = self._skip_message() if self._looking_at("{") or self._looking_at("<") else self._skip_value()
                    if not ok:
                        return False
                    if self._try("]"):
                        break
                    if not self._consume(","):
                        return False
            return True
        has_minus = self._try("-")
        if self._current.type not in (INTEGER, FLOAT, IDENTIFIER):
            return self._report(f"Cannot skip field value, unexpected token: {self._current.text}")
        if has_minus and self._current.type == IDENTIFIER:
            lowered = self._current.text.lower()
            if lowered not in ("inf", "infinity", "nan"):
                return self._report(f"Invalid float number: {lowered}")
        self._tokenizer.next()
        return True


_RESERVED: dict[str, frozenset[str]] = {}


def _reserved_names(descriptor: Descriptor) -> frozenset[str]:
    names = _RESERVED.get(descriptor.full_name)
    if names is None:
        proto = descriptor_pb2.DescriptorProto()
        descriptor.CopyToProto(proto)
        names = _RESERVED[descriptor.full_name] = frozenset(proto.reserved_name)
    return names


def check_text(data: bytes, descriptor: Descriptor, skip_unknown_any: bool = False) -> list[ParseProblem]:
    """The errors protobuf's C++ TextFormat parser reports for ``data`` as a ``descriptor`` message,
    in order; empty when it would accept it."""
    try:
        return _Parser(data, descriptor, skip_unknown_any).parse()
    except RecursionError:
        return [ParseProblem(0, 0, "Message is too deep to parse")]
