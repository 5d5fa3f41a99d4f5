"""python /opt/project/run_notebook.py NOTEBOOK OUTPUT: executes NOTEBOOK headless with a
real kernel (nbclient) and writes the executed copy to OUTPUT; a failing cell fails it."""

from __future__ import annotations

import sys

import nbclient
import nbformat


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: run_notebook.py NOTEBOOK OUTPUT", file=sys.stderr)
        return 2
    notebook = nbformat.read(argv[0], as_version=4)
    nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3").execute()
    nbformat.write(notebook, argv[1])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
