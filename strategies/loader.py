"""One way to name a strategy class, for `ttquant strategy run`, the demo and backtests:

    market_maker                            an example's short name (strategies/examples)
    package.module:Class                    importable from sys.path
    path/to/file.py:Class                   a file (relative paths from `base_dir`, e.g. the
                                            config file's directory); its directory goes on
                                            sys.path so it can import its neighbours

A name that cannot be loaded raises StrategyLoadError in one line: what was asked and why.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import traceback

from ttquant.strategies.base import BaseStrategy
from ttquant.strategies.examples import EXAMPLES

__all__ = ["load_strategy_class", "StrategyLoadError", "EXAMPLES"]


class StrategyLoadError(ValueError):
    """A strategy name that does not give a BaseStrategy subclass; says why."""


def _where(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    return f" (at {frames[-1].filename}:{frames[-1].lineno})" if frames else ""


def _module_from_file(path: str):
    if not os.path.isfile(path):
        raise StrategyLoadError(f"{path}: no such file")
    directory = os.path.dirname(path)
    if directory not in sys.path:
        sys.path.insert(0, directory)
    name = "ttquant_strategy_" + os.path.splitext(os.path.basename(path))[0].replace("-", "_")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        raise StrategyLoadError(f"{path}:{exc.lineno}: syntax error: {exc.msg}") from None
    except Exception as exc:
        raise StrategyLoadError(f"{path}: importing it raised {type(exc).__name__}: {exc}{_where(exc)}") from None
    return module


def _module_by_name(name: str):
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and name.startswith(exc.name):
            raise StrategyLoadError(f"no module {name!r} on the Python path (give a file instead: "
                                    f"path/to/file.py:Class)") from None
        raise StrategyLoadError(f"{name}: importing it raised ModuleNotFoundError: {exc}{_where(exc)}") from None
    except SyntaxError as exc:
        raise StrategyLoadError(f"{exc.filename}:{exc.lineno}: syntax error: {exc.msg}") from None
    except Exception as exc:
        raise StrategyLoadError(f"{name}: importing it raised {type(exc).__name__}: {exc}{_where(exc)}") from None


def load_strategy_class(spec: str, base_dir: str | None = None) -> type[BaseStrategy]:
    if spec in EXAMPLES:
        spec = EXAMPLES[spec]
    module_part, sep, attr = spec.rpartition(":")
    if not sep or not module_part or not attr:
        raise StrategyLoadError(f"{spec!r}: name it path/to/file.py:Class, package.module:Class or an "
                                f"example ({', '.join(sorted(EXAMPLES))})")
    if module_part.endswith(".py"):
        path = module_part if os.path.isabs(module_part) else os.path.join(base_dir or os.getcwd(), module_part)
        module = _module_from_file(os.path.normpath(path))
    else:
        module = _module_by_name(module_part)
    cls = getattr(module, attr, None)
    if cls is None:
        found = sorted(n for n, v in vars(module).items()
                       if isinstance(v, type) and issubclass(v, BaseStrategy) and v is not BaseStrategy)
        raise StrategyLoadError(f"{spec}: {module_part} has no {attr!r}"
                                + (f" (its strategies: {', '.join(found)})" if found else " (and no strategy class)"))
    if not (isinstance(cls, type) and issubclass(cls, BaseStrategy)):
        raise StrategyLoadError(f"{spec}: {attr} is not a BaseStrategy subclass")
    return cls
