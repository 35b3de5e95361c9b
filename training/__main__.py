import os
import sys

from training.cli import main

code = main()
# Python's own shutdown would now tear torch's module graph down object by object, a noticeable
# pause after every command, for nothing (every file is written,
# fsync'ed and closed, and no process or temporary folder is left to clean up). Errors that
# escape main (--debug, a second Ctrl-C) still exit the usual way, with their traceback.
sys.stdout.flush()
sys.stderr.flush()
os._exit(code)
