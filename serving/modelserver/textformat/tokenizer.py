"""protobuf's io::Tokenizer (io/tokenizer.cc) as TextFormat configures it, with its errors."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ParseProblem:
    """One error as the C++ parser reports it: zero-based line and column, and its message."""

    line: int
    column: int
    message: str

    def log_line(self, type_name: str) -> str:
        return f"Error parsing text-format {type_name}: {self.line + 1}:{self.column + 1}: {self.message}"


TAB_WIDTH = 8

_WHITESPACE = frozenset(b" \t\n\v\f\r")
_UNPRINTABLE = frozenset(range(1, 32))
_DIGIT = frozenset(b"0123456789")
_OCTAL = frozenset(b"01234567")
_HEX = frozenset(b"0123456789abcdefABCDEF")
_LETTER = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_")
_ALPHANUMERIC = _LETTER | _DIGIT
_ESCAPE = frozenset(b"abfnrtv\\?'\"")

START, END, IDENTIFIER, INTEGER, FLOAT, STRING, SYMBOL, WHITESPACE = range(8)


@dataclass
class Token:
    type: int = START
    text: str = ""
    line: int = 0
    column: int = 0
    end_column: int = 0


class Tokenizer:
    """io::Tokenizer with TextFormat's settings, over the whole file held in memory."""

    def __init__(self, data: bytes, problems: list[ParseProblem]) -> None:
        self._data = data
        self._problems = problems
        self._position = 0
        self._line = 0
        self._column = 0
        self._token_start = 0
        self.report_whitespace = False
        self.current = Token()
        self.previous = Token()

    # characters -----------------------------------------------------------------------------

    @property
    def _at_end(self) -> bool:
        return self._position >= len(self._data)

    @property
    def _char(self) -> int:
        return self._data[self._position] if self._position < len(self._data) else 0

    def _next_char(self) -> None:
        char = self._char
        if char == 0x0A:
            self._line += 1
            self._column = 0
        elif char == 0x09:
            self._column += TAB_WIDTH - self._column % TAB_WIDTH
        else:
            self._column += 1
        if not self._at_end:
            self._position += 1

    def _looking_at(self, chars: frozenset[int]) -> bool:
        return not self._at_end and self._char in chars

    def _try_one(self, chars: frozenset[int]) -> bool:
        if self._looking_at(chars):
            self._next_char()
            return True
        return False

    def _try(self, char: str) -> bool:
        if not self._at_end and self._char == ord(char):
            self._next_char()
            return True
        return False

    def _zero_or_more(self, chars: frozenset[int]) -> None:
        while self._looking_at(chars):
            self._next_char()

    def _error(self, message: str) -> None:
        self._problems.append(ParseProblem(self._line, self._column, message))

    # tokens ---------------------------------------------------------------------------------

    def _start_token(self) -> None:
        self.current = Token(START, "", self._line, self._column)
        self._token_start = self._position

    def _end_token(self) -> None:
        self.current.text = self._data[self._token_start : self._position].decode("latin-1")
        self.current.end_column = self._column

    def next(self) -> None:
        self.previous = self.current
        while not self._at_end:
            self._start_token()
            reported = False
            if self._try_one(_WHITESPACE):
                self._zero_or_more(_WHITESPACE)
                self.current.type = WHITESPACE
                reported = self.report_whitespace
            self._end_token()
            if reported:
                return
            if self._try("#"):
                while not self._at_end and self._char not in (0x00, 0x0A):
                    self._next_char()
                self._try("\n")
                continue
            if self._at_end:
                break
            if self._char in _UNPRINTABLE or self._char == 0:
                self._error("Invalid control characters encountered in text.")
                self._next_char()
                while self._try_one(_UNPRINTABLE) or (not self._at_end and self._try("\0")):
                    pass
                continue
            self._start_token()
            self.current.type = self._read_token()
            self._end_token()
            return
        self.current = Token(END, "", self._line, self._column, self._column)

    def _read_token(self) -> int:
        if self._try_one(_LETTER):
            self._zero_or_more(_ALPHANUMERIC)
            return IDENTIFIER
        if self._try("0"):
            return self._number(started_with_zero=True, started_with_dot=False)
        if self._try("."):
            if self._try_one(_DIGIT):
                previous, current = self.previous, self.current
                if (
                    previous.type == IDENTIFIER
                    and current.line == previous.line
                    and current.column == previous.end_column
                ):
                    self._problems.append(
                        ParseProblem(self._line, self._column - 2, "Need space between identifier and decimal point.")
                    )
                return self._number(started_with_zero=False, started_with_dot=True)
            return SYMBOL
        if self._try_one(_DIGIT):
            return self._number(started_with_zero=False, started_with_dot=False)
        for quote in "\"'":
            if self._try(quote):
                self._string(ord(quote))
                return STRING
        self._symbol()
        return SYMBOL

    def _symbol(self) -> None:
        if self._char & 0x80:
            self._error(f"Interpreting non ascii codepoint {self._char}.")
        self._next_char()

    def _number(self, started_with_zero: bool, started_with_dot: bool) -> int:
        is_float = False
        if started_with_zero and (self._try("x") or self._try("X")):
            if not self._looking_at(_HEX):
                self._error('"0x" must be followed by hex digits.')
            self._zero_or_more(_HEX)
        elif started_with_zero and self._looking_at(_DIGIT):
            self._zero_or_more(_OCTAL)
            if self._looking_at(_DIGIT):
                self._error("Numbers starting with leading zero must be in octal.")
                self._zero_or_more(_DIGIT)
        else:
            if started_with_dot:
                is_float = True
                self._zero_or_more(_DIGIT)
            else:
                self._zero_or_more(_DIGIT)
                if self._try("."):
                    is_float = True
                    self._zero_or_more(_DIGIT)
            if self._try("e") or self._try("E"):
                is_float = True
                if not self._try("-"):
                    self._try("+")
                if not self._looking_at(_DIGIT):
                    self._error('"e" must be followed by exponent.')
                self._zero_or_more(_DIGIT)
            if self._try("f") or self._try("F"):  # TextFormat allows a float suffix
                is_float = True
        if self._looking_at(_LETTER):
            self._error("Need space between number and identifier.")
        elif not self._at_end and self._char == ord("."):
            if is_float:
                self._error("Already saw decimal point or exponent; can't have another one.")
            else:
                self._error("Hex and octal numbers must be integers.")
        return FLOAT if is_float else INTEGER

    def _string(self, delimiter: int) -> None:
        while True:
            if self._at_end or self._char == 0:
                self._error("Unexpected end of string.")
                return
            char = self._char
            if char == 0x0A:
                self._error('Multiline strings are not allowed. Did you miss a "?.')
                return
            if char == ord("\\"):
                self._next_char()
                if self._try_one(_ESCAPE) or self._try_one(_OCTAL):
                    pass
                elif self._try("x") or self._try("X"):
                    if not self._try_one(_HEX):
                        self._error("Expected hex digits for escape sequence.")
                elif self._try("u"):
                    if not all(self._try_one(_HEX) for _ in range(4)):
                        self._error("Expected four hex digits for \\u escape sequence.")
                elif self._try("U"):
                    ok = self._try("0") and self._try("0") and (self._try("0") or self._try("1"))
                    if not (ok and all(self._try_one(_HEX) for _ in range(5))):
                        self._error("Expected eight hex digits up to 10ffff for \\U escape sequence")
                else:
                    self._error("Invalid escape sequence in string literal.")
                continue
            self._next_char()
            if char == delimiter:
                return
