"""Build bench/ring_kernels.pyx into build/bench/ext (never into the package or the wheel).

Run by `make bench`; needs the package built first (it cimports ttquant.core.*).
"""
import pathlib
import sys

from Cython.Build import cythonize
from setuptools import Extension
from setuptools.dist import Distribution

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "build" / "bench" / "ext"


def main():
    ext = Extension("ring_kernels", [str(ROOT / "bench" / "ring_kernels.pyx")],
                    include_dirs=[str(ROOT / "core" / "includes")], extra_compile_args=["-O3"])
    dist = Distribution({"ext_modules": cythonize(
        [ext], include_path=[str(ROOT / "build" / "cython_src"), str(ROOT / "core" / "includes")],
        build_dir=str(ROOT / "build" / "bench" / "cython"), quiet=True)})
    cmd = dist.get_command_obj("build_ext")
    cmd.build_lib = str(OUT)
    cmd.build_temp = str(ROOT / "build" / "bench" / "tmp")
    dist.run_command("build_ext")
    return 0


if __name__ == "__main__":
    sys.exit(main())
