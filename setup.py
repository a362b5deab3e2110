"""Builds recjax's optional native CPU code: an XLA FFI embedding bag and the machine probes.

Metadata and dependencies live in setup.cfg; this file only adds the extension, which needs the
XLA FFI headers that jaxlib ships (hence jaxlib in pyproject.toml's build requirements). The
extension is optional: if it fails to build, recjax installs without it and falls back to its
best pure-JAX embedding-bag lowering, saying so in the benchmark output.
"""

import os

import setuptools
from setuptools.command.build_ext import build_ext


class BuildWithXlaHeaders(build_ext):
    def build_extensions(self):
        import jaxlib

        include = os.path.join(os.path.dirname(jaxlib.__file__), "include")
        for extension in self.extensions:
            extension.include_dirs.append(include)
        super().build_extensions()


native = setuptools.Extension(
    "recjax.native._kernels",
    sources=[
        "recjax/native/embedding_bag.cc",
        "recjax/native/bfloat16_matmul.cc",
        "recjax/native/probes.cc",
        "recjax/native/sparse_update.cc",
    ],
    language="c++",
    # -march=native: the library is built on the machine that runs it, by its own install step.
    extra_compile_args=["-std=c++17", "-O3", "-march=native", "-Wno-attributes"],
    optional=True,
)

setuptools.setup(ext_modules=[native], cmdclass={"build_ext": BuildWithXlaHeaders})
