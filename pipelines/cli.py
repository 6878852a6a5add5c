"""Strict command lines for every entry point: a mistake is refused up front, in one line.

Without this, argparse and Beam let a mistake through: Beam ignores arguments it does not know
(a misspelled option, or the other paths of an unquoted glob, which the shell expanded) with a
warning, and argparse takes `--out` for `--output` where Beam does not. Here:

- Every option may be spelled with dashes or with underscores between its words
  (`--max-event-bytes` for `--max_event_bytes`, `--out_of_order` for `--out-of-order`), Beam's
  own options too: `respelled` writes each in the spelling `--help` shows. A pipeline respells
  its command line once, up front (`Parser.respelled`), and gives the result both to `parse`
  and to Beam's `PipelineOptions`, which would otherwise drop an option it cannot read.
- `Parser` is argparse without abbreviations. `Parser.parse` refuses an unknown option (naming
  the closest known one), an abbreviation ("did you mean --output?") and a stray argument (for
  the paths of an expanded glob: "quote the glob: --input '…'"). With `beam=True`, the
  arguments our options leave over are checked against Apache Beam's own option definitions
  (every PipelineOptions subclass but ours), so any Beam option is accepted, and nothing else.
- `input_files` and `check_output` check paths before Beam starts: every --input entry
  matches a file, none is a directory, a `.gz` is gzip; the output is a folder that can be
  written.

Every refusal prints usage (for a malformed command line) and one `error: …` line to stderr,
and exits with status 2 (`CommandLineError`, a SystemExit). Beam is imported only when asked
for, so the tools that do not run a pipeline start quickly.
"""

from __future__ import annotations

import argparse
import difflib
import glob
import logging
import os
import posixpath
import re
import shlex
import sys
import tempfile
import textwrap
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, NamedTuple, NoReturn

log = logging.getLogger("pipelines.cli")

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2  # the command line was refused; nothing was started

_GLOB_CHARS = re.compile(r"[*?\[]")
# Leading bytes of the compressed formats Beam recognises by name (a .deflate has none).
_MAGIC = {"gzip": b"\x1f\x8b", "bzip2": b"BZh", "zstd": b"\x28\xb5\x2f\xfd"}
_DATA_GLOB = "*.jsonl*"


class CommandLineError(SystemExit):
    """A refused command line: exit status 2. Its text is the `error:` line (already printed
    by `fail`), so `pytest.raises(SystemExit, match=…)` sees it."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.code = EXIT_USAGE
        self.message = message

    def __str__(self) -> str:
        return self.message


def fail(message: str) -> NoReturn:
    """Refuse the command line: one `error: message` line on stderr, exit status 2."""
    print(f"error: {message}", file=sys.stderr, flush=True)
    raise CommandLineError(message)


def exit_statuses(ok: str, *others: str, error: str = "on error") -> str:
    """The `Exit status: …` sentence of an epilog: 0, 1, 2, then the command's own."""
    statuses = (
        f"0 {ok}",
        f"1 {error}",
        "2 when the command line is refused (one 'error:' line; nothing was started)",
        *others,
    )
    return "Exit status: " + ", ".join(statuses) + "."


class _BeamOptionError(Exception):
    pass


def _beam_parser() -> argparse.ArgumentParser:
    """Beam's own parser of every registered pipeline option, ours left out (the pipelines
    import each other, and one pipeline's options are not another's). Built like
    `PipelineOptions.get_all_options` builds it, but its errors are raised, not printed with
    a usage of several hundred lines."""
    from apache_beam.options.pipeline_options import PipelineOptions, _BeamArgumentParser

    class BeamParser(_BeamArgumentParser):  # type: ignore[misc]
        def error(self, message: str) -> NoReturn:
            raise _BeamOptionError(message)

    parser = BeamParser(allow_abbrev=False, add_help=False)
    classes: dict[str, Any] = {}
    for cls in PipelineOptions.__subclasses__():
        if not cls.__module__.startswith(f"{__package__}."):
            classes.setdefault(str(cls), cls)  # Beam's rule for a class seen twice
    for cls in classes.values():
        cls._add_argparse_args(parser)
    return parser


def _option_strings(parser: argparse.ArgumentParser) -> list[str]:
    return [s for action in parser._actions for s in action.option_strings]


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def _normal(option: str) -> str:
    return option.lstrip("-").replace("-", "_").lower()


def respelled(argv: Sequence[str], known: Iterable[str]) -> list[str]:
    """`argv` with every option written in the other spelling of a known option (`--out_of_order`
    or `--out_of_order=0.2` for `--out-of-order`, `--max-event-bytes` for `--max_event_bytes`)
    written as the known one. Values, unknown options and everything after `--` are left as
    they are, and so is an option spelled as known (Beam knows `--job-server-timeout` and
    `--job_server_timeout`)."""
    known = list(known)
    spelled = set(known)
    by_underscores = {option.replace("-", "_"): option for option in known}
    out: list[str] = []
    for n, token in enumerate(argv):
        if token == "--":
            return [*out, *argv[n:]]
        name, equals, value = token.partition("=")
        if name.startswith("--") and name not in spelled:
            name = by_underscores.get(name.replace("-", "_"), name)
        out.append(name + equals + value)
    return out


def _abbreviates(name: str, option: str) -> bool:
    """Whether `name` is the start of `option`, in either spelling (`--max-event`)."""
    short, full = _normal(name), _normal(option)
    return name.startswith("--") and len(short) < len(full) and full.startswith(short)


def closest_options(name: str, known: Iterable[str]) -> list[str]:
    """Known options the user probably meant by `name`: those it abbreviates, else the one it
    spells with - for _ (or the other way round), else the closest by difflib."""
    known = sorted(set(known))
    if name.startswith("--") and len(name) > 2:
        longer = [option for option in known if _abbreviates(name, option)]
        if longer:
            return longer[:3]
    same = [option for option in known if _normal(option) == _normal(name)]
    if same:
        return same[:1]
    extended = [o for o in known if len(_normal(o)) >= 3 and _normal(name).startswith(_normal(o))]
    if extended:  # --output for --out
        return [max(extended, key=len)]
    by_normal = {_normal(option): option for option in known if option.startswith("--")}
    close = difflib.get_close_matches(_normal(name), list(by_normal), n=1, cutoff=0.7)
    return [by_normal[c] for c in close]


def glob_for(paths: Sequence[str]) -> str:
    """A glob matching paths the shell expanded from one: the parts they share, `*` for the
    ones that differ, and the common extension (`landing/*/*.jsonl`)."""
    split = [p.split("/") for p in paths]
    same_depth = [parts for parts in split if len(parts) == len(split[0])]
    pattern = []
    for depth, part in enumerate(same_depth[0]):
        names = {parts[depth] for parts in same_depth}
        if len(names) == 1:
            pattern.append(part)
        elif depth < len(same_depth[0]) - 1:
            pattern.append("*")
        else:
            pattern.append("*" + _common_extension(names))
    return "/".join(pattern)


def _common_extension(names: Iterable[str]) -> str:
    extensions = {name[name.find(".") :] if "." in name else "" for name in names}
    if len(extensions) == 1:
        return extensions.pop()
    first, last = min(extensions), max(extensions)  # what these two share, all of them do
    shared = ""
    for a, b in zip(first, last, strict=False):
        if a != b:
            break
        shared += a
    return f"{shared}*" if shared.startswith(".") else ""


def _stray_message(strays: list[str], namespace: argparse.Namespace, missing: list[str]) -> str:
    if len(strays) == 1 and len(missing) == 1:
        return f"unexpected argument {strays[0]!r}: did you mean {missing[0]} {strays[0]}?"
    given = getattr(namespace, "input", None)
    shown = ", ".join(strays[:3]) + (", …" if len(strays) > 3 else "")
    if isinstance(given, str) and all(os.path.lexists(s) or "/" in s for s in strays):
        paths = 1 + len(strays)
        quoted = shlex.quote(glob_for([given, *strays]))
        return (
            f"unexpected argument{'s' if len(strays) > 1 else ''} after --input {given}: "
            f"{shown}: the shell expanded an unquoted glob into {paths} paths and only the "
            f"first would be read; quote the glob: --input {quoted}"
        )
    what = f"argument {strays[0]!r}" if len(strays) == 1 else f"arguments {shown}"
    return (
        f"unexpected {what}: every value belongs to an option (see --help); quote a value "
        "that holds spaces or a glob"
    )


def _leftover_message(
    rest: list[str], namespace: argparse.Namespace, known: list[list[str]], missing: list[str]
) -> str:
    """Why the leftover arguments are refused. `known`: option strings, ours first, then
    Beam's: the closest of ours is the likelier meaning. `missing`: required options not
    given (a stray value may be meant for one)."""
    for token in rest:
        if token.startswith("-") and token != "--" and not _is_number(token):
            name = token.split("=", 1)[0]
            meant = next((m for options in known if (m := closest_options(name, options))), [])
            abbreviated = bool(meant) and _abbreviates(name, meant[0])
            message = f"unknown option {name}"
            if abbreviated:
                message += " (options cannot be abbreviated)"
            if meant:
                return f"{message}: did you mean {' or '.join(meant)}?"
            return f"{message} (see --help)"
    return _stray_message([t for t in rest if t != "--"], namespace, missing)


class Parser(argparse.ArgumentParser):
    """argparse without abbreviations, whose errors are one `error:` line and exit status 2.
    Parse with `parse` (strict); `beam=True` accepts Apache Beam's pipeline options too."""

    def __init__(self, *args: Any, beam: bool = False, **kwargs: Any) -> None:
        kwargs["allow_abbrev"] = False
        super().__init__(*args, **kwargs)
        self.beam = beam

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        fail(message)

    def format_help(self) -> str:
        """argparse's help, and a last paragraph saying that the other spelling of each option
        is accepted too (with an example from this command's options)."""
        text = super().format_help()
        example = next((s for s in _option_strings(self) if re.search(r"\w[-_]\w", s)), None)
        if example is None:
            return text
        dashed = "-" in example[2:]
        other = "--" + example[2:].translate(str.maketrans("-_", "_-"))
        note = (
            f"Options may also be spelled with {'underscores' if dashed else 'dashes'} "
            f"for {'dashes' if dashed else 'underscores'}: {other} for {example}"
            + (", Apache Beam's options too." if self.beam else ".")
        )
        width = self._get_formatter()._width
        return f"{text.rstrip()}\n\n{textwrap.fill(note, width)}\n"

    def respelled(self, argv: Sequence[str] | None = None) -> list[str]:
        """The command line (`sys.argv[1:]` by default) with each option in the spelling
        `--help` shows (`respelled`), Beam's too with beam=True: what `parse` and Beam's
        `PipelineOptions` are both to read."""
        args = list(sys.argv[1:] if argv is None else argv)
        known = _option_strings(self)
        if self.beam:
            known += _option_strings(_beam_parser())
        return respelled(args, known)

    def parse(self, argv: Sequence[str] | None = None) -> argparse.Namespace:
        """Our options, plus Beam's (with beam=True: as attributes of the same namespace),
        each in either spelling; refuses anything else."""
        args = self.respelled(argv)
        # A missing required option is reported after an unknown one: `--output x` for
        # `--out x` is better answered "did you mean --out?" than "--out is required".
        required = [action for action in self._actions if action.required]
        for action in required:
            action.required = False
        try:
            known, rest = self.parse_known_args(args)
        finally:
            for action in required:
                action.required = True
        options = [_option_strings(self)]
        if self.beam:
            beam = _beam_parser()
            try:
                beam_known, rest = beam.parse_known_args(rest)
            except _BeamOptionError as error:
                self.error(str(error))
            for name, value in vars(beam_known).items():
                if not hasattr(known, name):
                    setattr(known, name, value)
            options.append(_option_strings(beam))
        missing = [
            "/".join(a.option_strings) or a.dest
            for a in required
            if getattr(known, a.dest, None) in (None, [])
        ]
        if rest:
            self.error(_leftover_message(rest, known, options, missing))
        if missing:
            self.error(f"the following arguments are required: {', '.join(missing)}")
        return known

    def require(self, namespace: argparse.Namespace, *names: str) -> None:
        """Refuse the command line unless each option (by dest) is given and not empty."""
        for name in names:
            value = getattr(namespace, name, None)
            if value is None:
                missing = [f"--{n}" for n in names if getattr(namespace, n, None) is None]
                verb = "is" if len(missing) == 1 else "are"
                self.error(f"{' and '.join(missing)} {verb} required")
            if isinstance(value, str) and not value.strip():
                self.error(f"--{name} is empty (an unset shell variable?)")


def check_resource(value: str, kind: str, option: str) -> None:
    """Refuse a Pub/Sub path that is not projects/P/<kind>/NAME (kind: topics, subscriptions)."""
    if re.fullmatch(rf"projects/[^/\s]+/{kind}/[^/\s]+", value):
        return
    other = "topics" if kind == "subscriptions" else "subscriptions"
    hint = f"projects/PROJECT/{kind}/NAME"
    if f"/{other}/" in value:
        fail(f"{option} {value} is a {other[:-1]}, not a {kind[:-1]}: give {hint}")
    fail(f"{option} {value!r} is not a Pub/Sub {kind[:-1]}: give {hint}")


def configure_logging() -> None:
    """What a pipeline's command prints: our INFO lines with their time, the libraries' warnings
    only. Each local worker process would also warn once that it has no semi-persistent
    directory, which only matters for cross-language transforms these pipelines do not use."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    for noisy in ("apache_beam", "google", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    logging.getLogger("apache_beam.runners.portability.local_job_service").addFilter(
        lambda record: "semi_persistent_directory" not in record.getMessage()
    )


def absolute(path: str) -> str:
    """A local path made absolute (gs:// URIs as they are): manifests name files the same
    way whichever folder a run was started from."""
    return path if "://" in path else os.path.abspath(path)


def check_output(path: str, option: str = "--output", *, network: bool = True) -> None:
    """Refuse an output root that cannot be one: an existing file, a local folder that cannot
    be created or written, a URI of another store. On gs:// one cheap lookup (is it an
    object?), skipped with network=False (a dry run); a failed lookup is only logged."""
    if "://" in path:
        _check_gcs_output(path, option, network)
        return
    target = folder = Path(path)
    try:
        if target.exists() and not target.is_dir():
            fail(f"{option} {path} is a file, not a folder: give the folder to write under")
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
        if not folder.is_dir():
            fail(f"cannot create {option} {path}: {folder} is a file, not a folder")
        probe = tempfile.mkdtemp(prefix=".write-check-", dir=folder)
        os.rmdir(probe)
    except OSError as error:
        fail(f"cannot write {option} {path}: {folder} is not writable ({error.strerror or error})")


def _check_gcs_output(path: str, option: str, network: bool) -> None:
    from transforms.storage import gcs

    if not gcs.is_gcs(path):
        fail(f"{option} {path}: only a local folder or gs://bucket/prefix can be written")
    try:
        _, name = gcs.split(path)
    except ValueError:
        fail(f"{option} {path} names no bucket: give gs://bucket/prefix")
    if not network or not name.strip("/"):
        return
    from transforms.storage import files as storage

    try:
        is_object = storage.exists(path.rstrip("/"))
    except Exception as error:  # no credentials, no access: the run will say so itself
        log.warning("could not check %s %s: %s", option, path, _first_line(error))
        return
    if is_object:
        fail(f"{option} {path} is a file (an object), not a folder: give the prefix to write under")


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return (text[0] if text else type(error).__name__)[:300]


def _directory_hint(folder: str) -> str:
    """What to give instead of a folder: its data files, or those of its subfolders."""
    folder = folder.rstrip("/") or "/"
    pattern = posixpath.join(folder, _DATA_GLOB)
    if "://" not in folder and not glob.glob(pattern):
        nested = posixpath.join(folder, "*", _DATA_GLOB)
        if glob.glob(nested):
            pattern = nested
    return f"{folder} is a directory: use --input {shlex.quote(pattern)}"


def _no_match_message(entry: str, several: bool) -> str:
    of = " (one of the comma-separated --input entries)" if several else ""
    if "://" not in entry:
        folders = [p for p in glob.glob(entry) if os.path.isdir(p)]
        if folders:
            nested = shlex.quote(posixpath.join(entry.rstrip("/"), _DATA_GLOB))
            return (
                f"--input {entry!r}{of} matches only directories ({folders[0]}, …): "
                f"use --input {nested}"
            )
    elif not _GLOB_CHARS.search(entry) and _is_gcs_folder(entry):
        return _directory_hint(entry)
    return f"no input file matches {entry!r}{of}; check the path or glob"


def _is_gcs_folder(uri: str) -> bool:
    from transforms.storage import gcs

    try:
        bucket, name = gcs.split(uri)
        prefix = name.rstrip("/") + "/"
        return any(True for _ in gcs.client().list_blobs(bucket, prefix=prefix, max_results=1))
    except Exception:  # only a hint: without it the plain message stands
        return False


class InputFile(NamedTuple):
    """A file to read: its path and size, as listed."""

    path: str
    size: int


def input_files(entry: str, several: bool = False) -> list[InputFile]:
    """The files one --input entry (a path or glob) matches, sorted by path. Refuses
    (exit 2, one line) an entry that matches no file, a directory, or a local compressed file
    whose first bytes are not of its format (a `.gz` that is not gzip)."""
    from apache_beam.io.filesystem import BeamIOError, CompressionTypes
    from apache_beam.io.filesystems import FileSystems

    local = "://" not in entry
    if local and os.path.isdir(entry):
        fail(_directory_hint(entry))
    try:
        metadata = FileSystems.match([entry])[0].metadata_list
    except BeamIOError as error:
        fail(f"cannot list --input {entry!r}: {_first_line(error)}")
    files = {m.path: InputFile(m.path, m.size_in_bytes) for m in metadata}
    if not files:
        fail(_no_match_message(entry, several))
    for path, size in sorted(files.values()):
        if not local:
            continue  # GCS may serve a gzip object decompressed: its bytes prove nothing
        if os.path.isdir(path):
            fail(_directory_hint(path))
        kind = CompressionTypes.detect_compression_type(path)
        magic = _MAGIC.get(kind)
        if magic and size:
            try:
                with open(path, "rb") as handle:
                    start = handle.read(len(magic))
            except OSError as error:
                fail(f"cannot read input {path}: {error.strerror}")
            if start != magic:
                suffix = posixpath.splitext(path)[1]
                fail(
                    f"{path} is named {suffix} but is not {kind} (it starts with bytes "
                    f"{start.hex(' ')}, not {magic.hex(' ')}): recompress it, or rename it "
                    f"without {suffix}"
                )
    return sorted(files.values())
