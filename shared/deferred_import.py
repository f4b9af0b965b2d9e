"""Import a library while leaving some of its dependencies unloaded until first touched.

python-keycloak's token client imports jwcrypto (and with it cryptography's compiled
core, about 10 MB) and aiofiles at module level, for token decoding and the async API,
neither of which the probe calls. Under `deferred(...)` those modules are created by
the standard library's LazyLoader: the module object exists, and its code runs only
when an attribute of it is first read. Nothing changes for a caller that does use them.
Only defer what is rarely or never touched: Python 3.11's LazyLoader does not guard a
module's first touch against a second thread touching it at the same moment.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from types import ModuleType


class _DeferringFinder(importlib.abc.MetaPathFinder):
    """Finds modules of the named top-level packages as the other finders would, lazily."""

    def __init__(self, names: frozenset[str]) -> None:
        self._names = names

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname.partition(".")[0] not in self._names:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                # Only loaders that run code in a module object can be deferred (not builtins).
                if isinstance(spec.loader, importlib.abc.Loader) and hasattr(spec.loader, "exec_module"):
                    spec.loader = importlib.util.LazyLoader(spec.loader)
                return spec
        return None


@contextmanager
def deferred(*names: str) -> Iterator[None]:
    """Within the block, modules of the top-level packages `names` not yet imported load lazily."""
    finder = _DeferringFinder(frozenset(names))
    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        sys.meta_path.remove(finder)
