"""``python -m dft <command> ...``: see :mod:`dft.cli.commands`."""

from dft.cli.commands import main

if __name__ == "__main__":
    main()
