"""python -m deqa COMMAND: build the tiny model, make data, train, score and evaluate.

Each command's arguments and its work live in the module of the same idea (``add_arguments(parser)``
and ``run(args)``); this file only dispatches and turns bad input into a one-line error and a
non-zero exit."""
from __future__ import annotations

import argparse
import importlib
import sys
import warnings

from .errors import first_line

# command -> (module that implements it, one-line help)
COMMANDS = {
    "build-tiny": ("deqa.tiny", "write the embedded tiny MLLM (Hugging Face format) to OUT_DIR"),
    "synth": ("deqa.synth", "write the embedded synthetic IQA data sets to OUT_DIR"),
    "train": ("deqa.train", "fine-tune an MLLM with the DeQA loss"),
    "score": ("deqa.infer", "score images with a trained model (one forward pass each)"),
    "evaluate": ("deqa.evaluate", "PLCC/SRCC/KRCC and distribution gaps of predictions against metadata"),
    "paper-table": ("deqa.paper_table", "score the published test lists and print PLCC/SRCC beside the paper's numbers"),
    "report": ("deqa.report", "an offline HTML report of predictions: the evaluate table with intervals and "
               "the distribution plots, per data set and pooled"),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; only the chosen command's module is imported (``--help`` of one command stays fast)."""
    parser = argparse.ArgumentParser(prog="python -m deqa", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == command:
            importlib.import_module(module).add_arguments(p)
        p.set_defaults(_module=module)
    return parser


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings as ``warning: MESSAGE`` on one line of stderr (no source location, no echoed code)."""
    text = " ".join(str(message).split())
    print(f"warning: {text}", file=sys.stderr if file is None else file)


def main(argv=None) -> int:
    """Run one command. Bad input (``DeqaError``, and the ``OSError``/``ValueError`` a file or a
    setting can raise) ends with one ``error: ...`` line and exit code 2; Ctrl-C with 130. Other
    exceptions are programming errors and keep their traceback."""
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    args = build_parser(command if command in COMMANDS else None).parse_args(argv)
    args._argv = argv  # the command line as given (the report writes it in its page)

    with warnings.catch_warnings():
        warnings.showwarning = _one_line_warning
        try:
            result = importlib.import_module(args._module).run(args)
        except KeyboardInterrupt as exc:  # Ctrl-C, or a stop signal the command turned into Interrupted
            print("interrupted", file=sys.stderr)
            return 128 + getattr(exc, "signum", 2)
        except (OSError, ValueError) as exc:  # DeqaError is a ValueError
            print(f"error: {first_line(exc)}", file=sys.stderr)
            return 2
    return int(result or 0)
