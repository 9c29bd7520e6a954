"""Build TTQuant: the Cython extensions and the ttquant.* packages.

The top-level folders (core/, strategies/, sidecars/) install as ttquant.core,
ttquant.strategies and ttquant.sidecars, so nothing generic like `core` lands on sys.path.

Build switches (environment variables or build_ext options):
  TTQ_CYTHON_ANNOTATE=1 / --cython-annotate   write the annotated HTML next to each .pyx
  TTQ_DEBUG=1           / --ttq-debug         -O0 -g, bounds and None checks on
  TTQ_LINETRACE=1       / --ttq-linetrace     Cython line tracing (coverage, profilers)
  TTQ_MARCH=native                             -march for hosts that build where they run
"""
import os
import pathlib

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = pathlib.Path(__file__).resolve().parent
PACKAGE_DIRS = {"ttquant.core": "core", "ttquant.strategies": "strategies", "ttquant.sidecars": "sidecars",
                "ttquant.sql": "sql"}
# Cython resolves `cimport ttquant.core.x` by directory; this tree of links gives it one.
CYTHON_TREE = ROOT / "build" / "cython_src"


def _flag(name):
    return os.environ.get(name, "") not in ("", "0", "false", "no")


def _packages():
    found = []
    for package, folder in PACKAGE_DIRS.items():
        for init in sorted((ROOT / folder).rglob("__init__.py")):
            rel = init.parent.relative_to(ROOT / folder)
            found.append(".".join([package, *rel.parts]) if rel.parts else package)
    return found


def _link_tree():
    top = CYTHON_TREE / "ttquant"
    top.mkdir(parents=True, exist_ok=True)
    (top / "__init__.pxd").touch()
    for package, folder in PACKAGE_DIRS.items():
        link = top / package.split(".")[1]
        if not link.is_symlink():
            link.symlink_to(ROOT / folder, target_is_directory=True)


def _extensions():
    exts = []
    for package, folder in PACKAGE_DIRS.items():
        for pyx in sorted((ROOT / folder).rglob("*.pyx")):
            rel = pyx.relative_to(ROOT / folder).with_suffix("")
            exts.append(Extension(
                ".".join([package, *rel.parts]),
                [str(pyx.relative_to(ROOT))],
                include_dirs=[str(ROOT / "core" / "includes")],
            ))
    return exts


class TTQBuildExt(build_ext):
    user_options = build_ext.user_options + [
        ("cython-annotate", None, "write Cython annotation HTML"),
        ("ttq-debug", None, "debug build: -O0 -g and Cython checks on"),
        ("ttq-linetrace", None, "Cython line tracing for coverage and profilers"),
    ]
    boolean_options = build_ext.boolean_options + ["cython-annotate", "ttq-debug", "ttq-linetrace"]

    def initialize_options(self):
        super().initialize_options()
        self.cython_annotate = None
        self.ttq_debug = None
        self.ttq_linetrace = None

    def finalize_options(self):
        from Cython.Build import cythonize

        annotate = bool(self.cython_annotate) or _flag("TTQ_CYTHON_ANNOTATE")
        debug = bool(self.ttq_debug) or _flag("TTQ_DEBUG")
        linetrace = bool(self.ttq_linetrace) or _flag("TTQ_LINETRACE")
        directives = {
            "language_level": 3,
            "embedsignature": True,
            "boundscheck": debug,
            "wraparound": debug,
            "initializedcheck": debug,
            "nonecheck": debug,
            "cdivision": not debug,
            "linetrace": linetrace,
            "profile": linetrace,
        }
        cflags = ["-O0", "-g3"] if debug else ["-O3"]
        cflags += ["-Wno-unused-function", "-Wno-unreachable-code"]
        if os.environ.get("TTQ_MARCH"):
            cflags.append(f"-march={os.environ['TTQ_MARCH']}")
        macros = [("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")]
        if linetrace:
            macros += [("CYTHON_TRACE", "1"), ("CYTHON_TRACE_NOGIL", "1")]
        for ext in self.distribution.ext_modules:
            ext.extra_compile_args = cflags
            ext.define_macros = macros
        _link_tree()
        # Cythonize before setuptools finalises, so it decorates the C extensions it builds.
        self.distribution.ext_modules = cythonize(
            self.distribution.ext_modules,
            include_path=[str(CYTHON_TREE), str(ROOT / "core" / "includes")],
            compiler_directives=directives,
            annotate=annotate,
            build_dir=str(ROOT / "build" / "cython"),
            nthreads=int(os.environ.get("TTQ_BUILD_JOBS", os.cpu_count() or 1)),
            force=debug or linetrace or _flag("TTQ_CYTHON_FORCE"),
        )
        super().finalize_options()


setup(
    package_dir=PACKAGE_DIRS,
    packages=_packages(),
    package_data={"": ["*.pxd", "*.pyi", "*.h", "py.typed"], "ttquant.core.daemon": ["examples/*.toml"],
                  "ttquant.sql": ["migrations/*.sql"]},
    ext_modules=_extensions(),
    cmdclass={"build_ext": TTQBuildExt},
    zip_safe=False,
)
