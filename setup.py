"""Builds fstore's compiled kernels.

Only the extensions live here; everything else is in pyproject.toml.
Set FSTORE_DEBUG=1 for bounds checks, line tracing and an annotated build.
"""
import os

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup

DEBUG = os.environ.get("FSTORE_DEBUG") == "1"

directives = {
    "language_level": "3",
    "boundscheck": DEBUG,
    "wraparound": DEBUG,
    "initializedcheck": DEBUG,
    "cdivision": True,
    "linetrace": DEBUG,
}
macros = [("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")]
if DEBUG:
    macros.append(("CYTHON_TRACE_NOGIL", "1"))

compile_args = ["-O0", "-g"] if DEBUG else ["-O3"]

extensions = [
    Extension(
        f"fstore._ext.{name}",
        [f"fstore/_ext/{name}.pyx"],
        include_dirs=[np.get_include()],
        define_macros=macros,
        extra_compile_args=compile_args,
    )
    for name in ["_constants", "_counters", "_response", "_record", "_asof", "_online", "_wire", "_protocol", "_serve",
                 "_request", "_conn", "_hdr",
                 "_replies", "_loadgen", "_drift", "_logbuf", "_window"]
]

setup(ext_modules=cythonize(extensions, compiler_directives=directives, annotate=DEBUG))
