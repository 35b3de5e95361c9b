"""python -m training's subcommands, a module each. Every module has add_parser(subparsers),
which builds the subcommand's parser and sets its handler, run(args) -> exit status; common.py
holds what they share. COMMANDS is their order in --help."""

from training.commands import anomaly, atlas, emoji, evaluate, patches, sampler, score, sharpen, train

COMMANDS = (train, sharpen, evaluate, atlas, sampler, patches, emoji, anomaly, score)
