"""The tools' one rule for option names: `--help` shows them with dashes (`--invalid-rate`,
`--out-of-order`), and the underscore spelling the Beam pipelines use (`--max_event_bytes`)
is accepted too, so nobody has to remember which command spells which way.

Every tool builds its parser as `ToolParser` (the strict `pipelines.cli.Parser`: no
abbreviations, one `error:` line, exit status 2) and reads it with `parse`.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from collections.abc import Iterable, Sequence

from pipelines import cli


def respelled(argv: Sequence[str], known: Iterable[str]) -> list[str]:
    """`argv` with every option written in the other spelling of a known option (`--out_of_order`
    or `--out_of_order=0.2` for `--out-of-order`) written as the known one. Values, unknown
    options and everything after `--` are left as they are."""
    by_underscores = {option.replace("-", "_"): option for option in known}
    out: list[str] = []
    for n, token in enumerate(argv):
        if token == "--":
            return [*out, *argv[n:]]
        name, equals, value = token.partition("=")
        if name.startswith("--") and name not in by_underscores.values():
            name = by_underscores.get(name.replace("-", "_"), name)
        out.append(name + equals + value)
    return out


class ToolParser(cli.Parser):
    """`pipelines.cli.Parser` that also takes each option spelled with underscores for dashes
    (and says so at the end of its help)."""

    def _options(self) -> list[str]:
        return [s for action in self._actions for s in action.option_strings]

    def format_help(self) -> str:
        dashed = next((s for s in self._options() if "-" in s[2:]), None)
        if dashed is None:
            return super().format_help()
        note = (
            "Options may also be spelled with underscores for dashes, as the pipelines "
            f"spell theirs: --{dashed[2:].replace('-', '_')} for {dashed}."
        )
        width = self._get_formatter()._width
        return f"{super().format_help().rstrip()}\n\n{textwrap.fill(note, width)}\n"

    def parse(self, argv: Sequence[str] | None = None) -> argparse.Namespace:
        args = list(sys.argv[1:] if argv is None else argv)
        return super().parse(respelled(args, self._options()))
