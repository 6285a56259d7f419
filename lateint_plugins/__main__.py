"""``python -m lateint_plugins``: the ``lateint`` command line."""

from lateint_plugins.core.cli import main

if __name__ == "__main__":
    main(prog_name="lateint")
