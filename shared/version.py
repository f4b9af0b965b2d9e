"""The probe's version: the one place to bump it (pyproject.toml reads it from here).

A constant, because asking the installed package's metadata would cost every process
importlib.metadata (zipfile, csv, email: about 3 MB each). A module of its own, not the
package's __init__: a `shared` directory in the working directory can stand in for the
package object under `python -m`, and then only submodules are found.
"""

VERSION = "0.1.0"
