"""The console script: every subcommand and option says what it is for."""

from __future__ import annotations

from unimumer_lib.cli import build_parser


def test_every_option_has_help_text():
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    assert {"prepare", "tasks", "train", "infer", "eval", "compare", "pretrain", "reproduce"} <= set(commands)
    missing = [(name, action.option_strings or action.dest) for name, sub in commands.items()
               for action in sub._actions if action.dest != "help" and not action.help]
    assert missing == []
