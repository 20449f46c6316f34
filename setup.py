"""Build hook: compile ``protos/`` into ``extproc._proto`` with grpcio-tools.

Everything else about the package is declared in pyproject.toml; this file
only adds the ``build_protos`` step, so generated code is never committed and
always matches the .proto files and the grpcio-tools of the build.

Why a build sub-command, and not an override of ``build_py``: setuptools runs
every ``build`` sub-command for both wheels and editable installs, and for
editable installs it turns an error in a customised ``build_py`` into a
warning (``_safely_run``), so a broken .proto would leave an install without
its modules. A sub-command of its own fails the install instead.

Where the output goes: into ``build_lib`` for a wheel, so nothing is written
to the source tree; for an editable install (``pip install -e``, as
``make setup`` does) into ``extproc/_proto`` in the source tree, which is
where imports resolve from then (git ignores it). pyproject.toml excludes
``extproc._proto`` from the package list so that a stale in-tree copy never
reaches a wheel or sdist.

Import layout: ``protos/`` keeps the canonical proto layout
(``bedrock_gateway/admin/v1/admin.proto``), which is what clients in other
languages compile and the file name recorded in the descriptor. protoc's
Python generators write imports between our own protos as absolute imports of
that layout (``from bedrock_gateway.admin.v1 import admin_pb2``), with no
option for a prefix or relative imports. Mapping the source under a virtual
``extproc/_proto`` root (``-Iextproc/_proto=protos``) would make protoc emit
the right imports, but it changes the descriptor's file name and breaks
``import "bedrock_gateway/..."`` between our own .proto files. So the
generated files keep the canonical names and one exact rewrite prefixes those
imports with ``extproc._proto``; well-known types (``google.protobuf``) are
left alone.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from setuptools import Command, setup
from setuptools.command.build import build

ROOT = Path(__file__).resolve().parent
PROTOS = Path("protos")
"""The .proto sources, relative to the project root (setuptools wants relative source paths)."""
PACKAGE = "extproc._proto"
PACKAGE_DIR = Path(*PACKAGE.split("."))


def _sources() -> list[Path]:
    return sorted((ROOT / PROTOS).rglob("*.proto"))


def _generated_names(source: Path) -> list[Path]:
    """Files protoc writes for one .proto, relative to the output package."""
    stem = source.relative_to(ROOT / PROTOS).with_suffix("")
    return [stem.with_name(stem.name + suffix) for suffix in ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")]


def _expected_outputs() -> list[Path]:
    """Every file :func:`compile_protos` writes, relative to the output package (``__init__.py`` included)."""
    files = [name for source in _sources() for name in _generated_names(source)]
    packages = {Path()} | {parent for name in files for parent in name.parents}
    return sorted(files + [package / "__init__.py" for package in packages])


def compile_protos(out: Path) -> None:
    """Generate messages, type stubs and gRPC stubs of every .proto into the package directory ``out``.

    ``out`` is emptied first: it holds only generated code, and a module whose
    .proto was removed must not linger.
    """
    from importlib.resources import files

    from grpc_tools import protoc

    sources = _sources()
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    well_known = str(files("grpc_tools") / "_proto")
    args = ["grpc_tools.protoc", f"-I{ROOT / PROTOS}", f"-I{well_known}",
            f"--python_out={out}", f"--pyi_out={out}", f"--grpc_python_out={out}", *map(str, sources)]
    if protoc.main(args) != 0:
        raise RuntimeError(f"protoc failed on {', '.join(str(s.relative_to(ROOT)) for s in sources)} (see above)")

    roots = "|".join(sorted({re.escape(s.relative_to(ROOT / PROTOS).parts[0]) for s in sources}))
    own_import = re.compile(rf"^from ((?:{roots})(?:\.\w+)*) import ", re.MULTILINE)
    for name in _expected_outputs():
        path = out / name
        if name.name == "__init__.py":
            doc = f'"""Generated from {PROTOS}/ by setup.py (build_protos); not committed, do not edit."""\n'
            path.write_text(doc if name == Path("__init__.py") else "", encoding="utf-8")
        else:
            text = path.read_text(encoding="utf-8")
            path.write_text(own_import.sub(rf"from {PACKAGE}.\1 import ", text), encoding="utf-8")


class build_protos(Command):  # noqa: N801 - setuptools command names are lowercase
    """``build`` sub-command that runs :func:`compile_protos` (setuptools' SubCommand protocol)."""

    description = f"compile {PROTOS}/*.proto into {PACKAGE}"
    user_options: list[tuple[str, str | None, str]] = []

    def initialize_options(self) -> None:
        self.editable_mode = False
        self.build_lib: str | None = None

    def finalize_options(self) -> None:
        self.set_undefined_options("build_py", ("build_lib", "build_lib"))

    def _out(self) -> Path:
        return ROOT / PACKAGE_DIR if self.editable_mode else Path(self.build_lib) / PACKAGE_DIR

    def run(self) -> None:
        compile_protos(self._out())

    def get_source_files(self) -> list[str]:
        """The .proto files, so that an sdist carries what a wheel is built from."""
        return [str(source.relative_to(ROOT)) for source in _sources()]

    def get_outputs(self) -> list[str]:
        return [str(Path(self.build_lib) / PACKAGE_DIR / name) for name in _expected_outputs()]

    def get_output_mapping(self) -> dict[str, str]:
        """Editable installs build in place: each output maps to its in-tree copy."""
        if not self.editable_mode:
            return {}
        return {str(Path(self.build_lib) / PACKAGE_DIR / name): str(PACKAGE_DIR / name) for name in _expected_outputs()}


class build_with_protos(build):  # noqa: N801 - setuptools command names are lowercase
    """``build`` with :class:`build_protos` first."""

    sub_commands = [("build_protos", None), *build.sub_commands]


setup(cmdclass={"build": build_with_protos, "build_protos": build_protos})
