"""The small POSIX-ish shell an installed lab machine answers SSH with: enough grammar for what people type and
for what the control plane sends (the install check of access/checks.py wrapped by access/transport.py
``bounded``): ``;`` and newlines, ``&&``, ``||``, pipes, ``if/then/else/fi``, quotes, ``$VAR``,
``${VAR:-default}``, ``$(...)`` and the redirections ``>/dev/null``, ``2>/dev/null``, ``2>&1``.

Nothing here runs a host program: every command is a Python function over the machine's installed root
(:mod:`provisioner.lab.commands`). No field splitting, globbing or functions: a real shell script that needs them
gets a clear ``sh: ...`` error rather than a wrong answer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

# Output of one command substitution or one whole exec request beyond this is cut (a runaway `yes`-like loop
# cannot happen without loops, but `cat` of a big file can).
MAX_OUTPUT = 1 << 20
RESERVED = {"if", "then", "else", "fi"}
_OPERATORS = ("&&", "||", ";", "|", "\n")


class ShellSyntaxError(Exception):
    pass


class Result:
    """A command's exit status and what it wrote, in order: (1, text) for stdout, (2, text) for stderr; order
    matters where a client reads both on one stream (the install check does, like `ssh host cmd 2>&1`)."""

    def __init__(self, status: int = 0, out: str = "", err: str = ""):
        self.status = status
        self.chunks: list[tuple[int, str]] = [(fd, text) for fd, text in ((1, out), (2, err)) if text]

    @property
    def out(self) -> str:
        return "".join(text for fd, text in self.chunks if fd == 1)

    @property
    def err(self) -> str:
        return "".join(text for fd, text in self.chunks if fd == 2)

    def add(self, other: Result) -> None:
        self.chunks += other.chunks
        while sum(len(text) for _, text in self.chunks) > MAX_OUTPUT and len(self.chunks) > 1:
            self.chunks.pop()
        self.status = other.status


# A word is a list of parts: ("lit", text) | ("var", name, default or None) | ("cmd", source).
Word = list[tuple]


@dataclass
class Simple:
    words: list[Word]
    redirects: list[tuple[int, str]] = field(default_factory=list)  # (fd, target): target "/dev/null" or "&1"


@dataclass
class If:
    condition: list
    then: list
    otherwise: list


# -- tokens -------------------------------------------------------------------------------------------------------


def _read_dollar(text: str, i: int) -> tuple[tuple, int]:
    """The expansion starting at text[i] == '$'; returns (part, index after it)."""
    if text.startswith("$(", i):
        depth, j, quote = 1, i + 2, ""
        while j < len(text):
            c = text[j]
            if quote:
                if c == quote:
                    quote = ""
            elif c in "'\"":
                quote = c
            elif c == "(":
                depth += 1
            elif c == ")":
                depth -= 1
                if depth == 0:
                    return ("cmd", text[i + 2 : j]), j + 1
            j += 1
        raise ShellSyntaxError("unterminated $(")
    if text.startswith("${", i):
        end = text.find("}", i)
        if end < 0:
            raise ShellSyntaxError("bad substitution: missing }")
        name, sep, default = text[i + 2 : end].partition(":-")
        return ("var", name, default if sep else None), end + 1
    j = i + 1
    while j < len(text) and (text[j].isalnum() or text[j] == "_"):
        j += 1
    if j == i + 1 and j < len(text) and text[j] == "?":
        j += 1
    if j == i + 1:
        return ("lit", "$"), j
    return ("var", text[i + 1 : j], None), j


def tokenize(text: str) -> list:
    """Words (lists of parts), operators (strings in _OPERATORS) and redirections (("redir", fd, target))."""
    tokens: list = []
    i, n = 0, len(text)
    word: Word = []
    in_word = False

    def end_word():
        nonlocal word, in_word
        if in_word:
            tokens.append(word)
        word, in_word = [], False

    while i < n:
        c = text[i]
        if c in " \t":
            end_word()
            i += 1
        elif c == "#" and not in_word:
            while i < n and text[i] != "\n":
                i += 1
        elif c == "\\" and i + 1 < n:
            if text[i + 1] != "\n":
                word.append(("lit", text[i + 1]))
                in_word = True
            i += 2
        elif c == "'":
            end = text.find("'", i + 1)
            if end < 0:
                raise ShellSyntaxError("unterminated quoted string")
            word.append(("lit", text[i + 1 : end]))
            in_word, i = True, end + 1
        elif c == '"':
            i += 1
            in_word = True
            while True:
                if i >= n:
                    raise ShellSyntaxError("unterminated quoted string")
                c = text[i]
                if c == '"':
                    i += 1
                    break
                if c == "\\" and i + 1 < n and text[i + 1] in '"\\$`':
                    word.append(("lit", text[i + 1]))
                    i += 2
                elif c == "$":
                    part, i = _read_dollar(text, i)
                    word.append(part)
                else:
                    word.append(("lit", c))
                    i += 1
        elif c == "$":
            part, i = _read_dollar(text, i)
            word.append(part)
            in_word = True
        elif c == ">" or (c.isdigit() and not in_word and text[i + 1 : i + 2] == ">"):
            end_word()
            fd = 1
            if c.isdigit():
                fd, i = int(c), i + 1
            i += 1
            if text.startswith(">", i):
                i += 1  # >> appends; every target here is /dev/null or another fd anyway
            while i < n and text[i] in " \t":
                i += 1
            j = i + 1 if text.startswith("&", i) else i  # 2>&1: the target is another descriptor
            while j < n and text[j] not in " \t;&|\n":
                j += 1
            target = text[i:j]
            if not target:
                raise ShellSyntaxError("syntax error: redirection without a target")
            tokens.append(("redir", fd, target))
            i = j
        elif c == "<":
            raise ShellSyntaxError("input redirection is not supported here")
        elif any(text.startswith(op, i) for op in _OPERATORS):
            end_word()
            op = next(op for op in _OPERATORS if text.startswith(op, i))
            tokens.append(op)
            i += len(op)
        elif c in "&()`":
            raise ShellSyntaxError(f"syntax error near unexpected token `{c}'")
        else:
            word.append(("lit", c))
            in_word = True
            i += 1
    end_word()
    return tokens


# -- grammar ------------------------------------------------------------------------------------------------------


def _literal(token) -> str | None:
    if isinstance(token, list) and all(p[0] == "lit" for p in token):
        return "".join(p[1] for p in token)
    return None


class _Parser:
    def __init__(self, tokens: list):
        self.tokens, self.i = tokens, 0

    def peek(self):
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self):
        token = self.peek()
        self.i += 1
        return token

    def at_reserved(self, *names: str) -> bool:
        return _literal(self.peek()) in names

    def expect(self, name: str) -> None:
        if not self.at_reserved(name):
            raise ShellSyntaxError(f"syntax error: expected `{name}'")
        self.i += 1

    def skip_separators(self) -> None:
        while self.peek() in (";", "\n"):
            self.i += 1

    def command_list(self, *, until: tuple[str, ...] = ()) -> list:
        """[(and_or, ...)] where and_or is [(op, pipeline), ...] with op None for the first."""
        items = []
        self.skip_separators()
        while self.peek() is not None and not self.at_reserved(*until):
            items.append(self.and_or())
            if self.peek() not in (";", "\n", None) and not self.at_reserved(*until):
                raise ShellSyntaxError("syntax error near unexpected token")
            self.skip_separators()
        return items

    def and_or(self) -> list:
        chain = [(None, self.pipeline())]
        while self.peek() in ("&&", "||"):
            op = self.take()
            self.skip_separators()
            chain.append((op, self.pipeline()))
        return chain

    def pipeline(self) -> list:
        commands = [self.command()]
        while self.peek() == "|":
            self.take()
            self.skip_separators()
            commands.append(self.command())
        return commands

    def command(self):
        if self.at_reserved("if"):
            self.take()
            condition = self.command_list(until=("then",))
            self.expect("then")
            then = self.command_list(until=("else", "fi"))
            otherwise = []
            if self.at_reserved("else"):
                self.take()
                otherwise = self.command_list(until=("fi",))
            self.expect("fi")
            if not condition or not then:
                raise ShellSyntaxError("syntax error: empty if or then")
            return If(condition, then, otherwise)
        simple = Simple([])
        while True:
            token = self.peek()
            if isinstance(token, list):
                simple.words.append(self.take())
            elif isinstance(token, tuple) and token[0] == "redir":
                self.take()
                simple.redirects.append((token[1], token[2]))
            else:
                break
        if not simple.words:
            raise ShellSyntaxError(f"syntax error near unexpected token `{self.peek() or 'end of input'}'")
        if _literal(simple.words[0]) in RESERVED:
            raise ShellSyntaxError(f"syntax error near unexpected token `{_literal(simple.words[0])}'")
        return simple


def parse(text: str) -> list:
    parser = _Parser(tokenize(text))
    items = parser.command_list()
    if parser.peek() is not None:
        raise ShellSyntaxError(f"syntax error near unexpected token `{_literal(parser.peek()) or parser.peek()}'")
    return items


# -- running ------------------------------------------------------------------------------------------------------

# A command: (shell, argv, stdin) -> Result.
Command = Callable[["Shell", list[str], str], Result]


class Shell:
    """Runs command lines against a table of commands; ``env`` holds the variables ($HOME, $PWD, $SHELL, $?),
    ``context`` whatever the commands read (the machine). ``exited`` is set by `exit`: nothing more runs."""

    def __init__(self, commands: dict[str, Command], env: dict[str, str], context=None):
        self.commands = commands
        self.env = env
        self.context = context
        self.status = 0
        self.exited: int | None = None

    def subshell(self) -> Shell:
        """$(...) and sh -c: their own variables and their own `exit`."""
        return Shell(self.commands, dict(self.env), self.context)

    def run(self, text: str, stdin: str = "") -> Result:
        try:
            items = parse(text)
        except ShellSyntaxError as exc:
            self.status = 2
            return Result(2, "", f"sh: {exc}\n")
        return self._list(items, stdin)

    def _list(self, items: list, stdin: str) -> Result:
        total = Result()
        for chain in items:
            if self.exited is not None:
                break
            total.add(self._and_or(chain, stdin))
        return total

    def _and_or(self, chain: list, stdin: str) -> Result:
        total = Result()
        for op, pipeline in chain:
            if self.exited is not None:
                break
            if (op == "&&" and total.status != 0) or (op == "||" and total.status == 0):
                continue
            total.add(self._pipeline(pipeline, stdin))
        return total

    def _pipeline(self, commands: list, stdin: str) -> Result:
        total, data = Result(), stdin
        for i, command in enumerate(commands):
            result = self._if(command, data) if isinstance(command, If) else self._simple(command, data)
            if i < len(commands) - 1:  # stdout feeds the next command; stderr goes out as it comes
                data = result.out
                result.chunks = [(fd, text) for fd, text in result.chunks if fd != 1]
            total.add(result)
        self.status = total.status
        self.env["?"] = str(total.status)
        return total

    def _if(self, node: If, stdin: str) -> Result:
        total = self._list(node.condition, stdin)
        branch = node.then if total.status == 0 else node.otherwise
        if branch:
            total.add(self._list(branch, stdin))
        else:
            total.status = 0
        return total

    def expand(self, word: Word) -> str:
        out = []
        for part in word:
            if part[0] == "lit":
                out.append(part[1])
            elif part[0] == "var":
                value = self.env.get(part[1], "")
                out.append(value if value or part[2] is None else part[2])
            else:
                out.append(self.subshell().run(part[1]).out.rstrip("\n"))
        return "".join(out)

    def _simple(self, node: Simple, stdin: str) -> Result:
        argv = [self.expand(word) for word in node.words]
        result = self.call(argv, stdin)
        for fd, target in node.redirects:
            if target in ("&1", "&2"):
                to = int(target[1])
                result.chunks = [(to if f == fd else f, text) for f, text in result.chunks]
            elif target == "/dev/null":
                result.chunks = [(f, text) for f, text in result.chunks if f != fd]
            else:
                return Result(1, "", f"sh: cannot create {target}: Read-only file system\n")
        return result

    def call(self, argv: list[str], stdin: str = "") -> Result:
        """Run one command by name (what `exec`, `timeout` and `sh -c` use too)."""
        if not argv:
            return Result(0)
        name = argv[0].rsplit("/", 1)[-1] if argv[0].startswith("/") else argv[0]
        command = self.commands.get(name)
        if command is None:
            return Result(127, "", f"sh: {argv[0]}: command not found\n")
        return command(self, argv, stdin)
