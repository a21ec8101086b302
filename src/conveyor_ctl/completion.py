"""Shell completion scripts for bash, zsh and fish, generated from conveyorctl's argparse tree.

`commands(parser)` flattens the tree into one `Command` per command path ("conveyorctl",
"conveyorctl pipelines", "conveyorctl pipelines create", ...) with its sub-commands (or the
choices of its positional argument) and its options. Each script embeds these tables as shell
functions and finds the command path of the words typed so far the same way: skip options
(and the value of an option that takes one), follow words that name a sub-command.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

SHELLS = ("bash", "zsh", "fish")


@dataclass(frozen=True)
class Option:
    strings: tuple[str, ...]
    help: str
    takes_value: bool
    words: tuple[str, ...]  # the values it accepts, when they are a fixed set
    files: bool  # its value is a path


@dataclass(frozen=True)
class Command:
    key: str  # the command path, "conveyorctl pipelines create"
    words: tuple[tuple[str, str], ...]  # (sub-command or positional choice, help)
    options: tuple[Option, ...]

    def value_options(self) -> list[str]:
        return [s for o in self.options if o.takes_value for s in o.strings]


def commands(parser: argparse.ArgumentParser, key: str = "") -> Iterator[Command]:
    key = key or parser.prog
    words: list[tuple[str, str]] = []
    options: list[Option] = []
    children: list[tuple[str, argparse.ArgumentParser]] = []
    for action in parser._actions:
        if action.help == argparse.SUPPRESS:
            continue
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            for name, child in action.choices.items():
                words.append((name, helps.get(name, "")))
                children.append((name, child))
        elif action.option_strings:
            options.append(
                Option(
                    strings=tuple(action.option_strings),
                    help=_one_line(action.help or ""),
                    takes_value=action.nargs != 0,
                    words=_words(action),
                    files=action.dest == "file",
                )
            )
        elif action.choices and not words:
            words.extend((str(choice), "") for choice in action.choices)
    yield Command(key, tuple(words), tuple(options))
    for name, child in children:
        yield from commands(child, f"{key} {name}")


def _words(action: argparse.Action) -> tuple[str, ...]:
    if action.choices:
        return tuple(str(c) for c in action.choices)
    return tuple(getattr(action.type, "words", ()))


def _one_line(text: str) -> str:
    return " ".join(text.split())


def script(shell: str, parser: argparse.ArgumentParser) -> str:
    tree = list(commands(parser))
    return {"bash": _bash, "zsh": _zsh, "fish": _fish}[shell](parser.prog, tree)


# ---------------------------------------------------------------- tables as shell functions


def _sh_quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def _case_function(name: str, rows: Sequence[tuple[str, Sequence[str]]]) -> list[str]:
    """A bash/zsh function printing, one a line, the values for its first argument (a command path)."""
    lines = [f"{name}() {{", '    case "$1" in']
    for key, values in rows:
        if values:
            lines.append(f"        {_sh_quote(key)}) printf '%s\\n' {' '.join(_sh_quote(v) for v in values)} ;;")
    lines += ["    esac", "}"]
    return lines


def _choice_rows(tree: Sequence[Command], pick: Callable[[Option], bool]) -> list[tuple[str, Sequence[str]]]:
    return [(f"{c.key} {s}", o.words) for c in tree for o in c.options if pick(o) for s in o.strings]


def _shared_functions(prog: str, tree: Sequence[Command], *, described: bool) -> list[str]:
    fn = f"__{prog}"
    lines = _case_function(f"{fn}_names", [(c.key, [w for w, _ in c.words]) for c in tree])
    lines += _case_function(f"{fn}_value_options", [(c.key, c.value_options()) for c in tree])
    lines += _case_function(
        f"{fn}_file_options", [(c.key, [s for o in c.options if o.files for s in o.strings]) for c in tree]
    )
    lines += _case_function(f"{fn}_choices", _choice_rows(tree, lambda o: bool(o.words)))
    if described:
        lines += _case_function(f"{fn}_described_names", [(c.key, [_zsh_item(w, h) for w, h in c.words]) for c in tree])
        lines += _case_function(
            f"{fn}_described_options",
            [(c.key, [_zsh_item(s, o.help) for o in c.options for s in o.strings]) for c in tree],
        )
    return lines


# The command path of the words before the cursor; $1.. are those words without the program name.
_SH_KEY = """\
{fn}_key() {{
    local key={prog} word skip=0
    for word in "$@"; do
        if ((skip)); then
            skip=0
        elif [[ $word == -* ]]; then
            {fn}_value_options "$key" | grep -qxF -- "$word" && skip=1
        elif {fn}_names "$key" | grep -qxF -- "$word"; then
            key="$key $word"
        fi
    done
    printf '%s\\n' "$key"
}}"""


def _bash(prog: str, tree: Sequence[Command]) -> str:
    fn = f"__{prog}"
    lines = [
        f"# bash completion for {prog}, generated from its argument parser by `{prog} completion bash`.",
        f"# Load it with: source <({prog} completion bash)",
        *_shared_functions(prog, tree, described=False),
        _SH_KEY.format(fn=fn, prog=prog),
        f"_{prog}() {{",
        '    local cur="${COMP_WORDS[COMP_CWORD]}" prev="" key',
        '    ((COMP_CWORD > 1)) && prev="${COMP_WORDS[COMP_CWORD-1]}"',
        f'    key=$({fn}_key "${{COMP_WORDS[@]:1:COMP_CWORD-1}}")',
        f'    if [[ $prev == -* ]] && {fn}_value_options "$key" | grep -qxF -- "$prev"; then',
        f'        if {fn}_file_options "$key" | grep -qxF -- "$prev"; then',
        '            mapfile -t COMPREPLY < <(compgen -f -- "$cur")',
        "        else",
        f'            mapfile -t COMPREPLY < <(compgen -W "$({fn}_choices "$key $prev")" -- "$cur")',
        "        fi",
        "    elif [[ $cur == -* ]]; then",
        f'        mapfile -t COMPREPLY < <(compgen -W "$({fn}_options "$key")" -- "$cur")',
        "    else",
        f'        mapfile -t COMPREPLY < <(compgen -W "$({fn}_names "$key")" -- "$cur")',
        "    fi",
        "}",
        *_case_function(f"{fn}_options", [(c.key, [s for o in c.options for s in o.strings]) for c in tree]),
        f"complete -F _{prog} {prog}",
    ]
    return "\n".join(lines) + "\n"


def _zsh_item(word: str, help_text: str) -> str:
    """`word:description` for _describe (a colon in the word is escaped)."""
    word = word.replace(":", "\\:")
    return f"{word}:{help_text}" if help_text else word


def _zsh(prog: str, tree: Sequence[Command]) -> str:
    fn = f"__{prog}"
    lines = [
        f"#compdef {prog}",
        f"# zsh completion for {prog}, generated from its argument parser by `{prog} completion zsh`.",
        f"# Load it with: source <({prog} completion zsh)  (after compinit), or save it as _{prog} in $fpath.",
        f"compdef _{prog} {prog}",
        *_shared_functions(prog, tree, described=True),
        _SH_KEY.format(fn=fn, prog=prog),
        f"_{prog}() {{",
        "    local key prev=${words[CURRENT-1]}",
        "    local -a items",
        f'    key=$({fn}_key "${{(@)words[2,CURRENT-1]}}")',
        f'    if [[ $prev == -* ]] && {fn}_value_options "$key" | grep -qxF -- "$prev"; then',
        f'        if {fn}_file_options "$key" | grep -qxF -- "$prev"; then',
        "            _files",
        "        else",
        f'            items=(${{(f)"$({fn}_choices "$key $prev")"}})',
        "            ((${#items})) && compadd -a items",
        "        fi",
        "    elif [[ $PREFIX == -* ]]; then",
        f'        items=(${{(f)"$({fn}_described_options "$key")"}})',
        "        _describe -t options option items",
        "    else",
        f'        items=(${{(f)"$({fn}_described_names "$key")"}})',
        "        ((${#items})) && _describe -t commands command items",
        "    fi",
        "}",
        "# Run only when zsh autoloads this file, not when it is sourced.",
        f'if [[ "${{funcstack[1]}}" == "_{prog}" ]]; then',
        f'    _{prog} "$@"',
        "fi",
    ]
    return "\n".join(lines) + "\n"


def _fish_quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _fish_switch(name: str, rows: Sequence[tuple[str, Sequence[str]]]) -> list[str]:
    lines = [f"function {name}", '    switch "$argv[1]"']
    for key, values in rows:
        if values:
            lines += [
                f"        case {_fish_quote(key)}",
                f"            printf '%s\\n' {' '.join(map(_fish_quote, values))}",
            ]
    lines += ["    end", "end"]
    return lines


def _fish(prog: str, tree: Sequence[Command]) -> str:
    fn = f"__{prog}"
    lines = [
        f"# fish completion for {prog}, generated from its argument parser by `{prog} completion fish`.",
        f"# Load it with: {prog} completion fish | source",
        f"complete -c {prog} -f",
        *_fish_switch(f"{fn}_names", [(c.key, [w for w, _ in c.words]) for c in tree]),
        *_fish_switch(f"{fn}_value_options", [(c.key, c.value_options()) for c in tree]),
        f"function {fn}_key",
        "    set -l tokens (commandline -opc)",
        "    set -e tokens[1]",
        f"    set -l key {prog}",
        "    set -l skip 0",
        "    for token in $tokens",
        "        if test $skip = 1",
        "            set skip 0",
        "        else if string match -q -- '-*' $token",
        f'            contains -- $token ({fn}_value_options "$key"); and set skip 1',
        f'        else if contains -- $token ({fn}_names "$key")',
        '            set key "$key $token"',
        "        end",
        "    end",
        '    echo "$key"',
        "end",
    ]
    for command in tree:
        # Unquoted, the substitution is still one argument: fish splits it on newlines only.
        when = _fish_quote(f"test ({fn}_key) = {_fish_quote(command.key)}")
        for word, help_text in command.words:
            lines.append(f"complete -c {prog} -n {when} -a {_fish_quote(word)} -d {_fish_quote(help_text)}")
        for option in command.options:
            parts = [f"complete -c {prog} -n {when}"]
            for string in option.strings:
                parts.append(f"-l {string[2:]}" if string.startswith("--") else f"-s {string[1:]}")
            if option.takes_value:
                parts.append("-r -F" if option.files else "-x")
                if option.words:
                    parts.append(f"-a {_fish_quote(' '.join(option.words))}")
            parts.append(f"-d {_fish_quote(option.help)}")
            lines.append(" ".join(parts))
    return "\n".join(lines) + "\n"
