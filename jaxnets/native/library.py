"""Building and loading jaxnets' oneDNN kernels, and choosing them over the pure JAX path.

Issue 20 (CPU speed): XLA:CPU generates its own loops for convolutions and runs an LSTM as a
``while`` loop of small matmuls; PyTorch on the same CPU calls oneDNN's primitives. The C++ in
``jaxnets/native/src/`` calls the same primitives from inside a jitted program, as XLA FFI custom
calls (``jax.ffi``). This module compiles it (g++ against the XLA FFI headers that ship in
jaxlib and the oneDNN headers of the ``onednn-devel-cpu-gomp`` wheel), loads the library and
registers its handlers with XLA.

The library is built by ``make install`` (``python -m jaxnets.native build``), never on import.
When it is not built, cannot be built (no compiler, no oneDNN wheel, not x86-64 Linux) or is
switched off (``JAXNETS_NATIVE=0``, :func:`pure_jax`), every model runs its pure JAX path.
Even when it is on, the kernels run only where XLA compiles for the CPU
(``jax.lax.platform_dependent``): a program lowered for a GPU takes the pure path.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import jax
import jaxlib

__all__ = [
    "BuildError",
    "NotBuildable",
    "build",
    "cpu_or_pure",
    "enabled",
    "library_path",
    "loaded",
    "pure_jax",
    "register",
    "status",
]

SOURCES = Path(__file__).parent / "src"
BUILD_DIR = Path(__file__).parent / "_build"
ENV_SWITCH = "JAXNETS_NATIVE"  # "0" switches the kernels off
# -fopenmp: the kernels size oneDNN's OpenMP team per call (libgomp, as oneDNN's wheel)
_FLAGS = ("-O2", "-std=c++17", "-fPIC", "-shared", "-w", "-fopenmp")


class BuildError(RuntimeError):
    """The compiler failed on the kernels' sources; the message has its output."""


class NotBuildable(BuildError):
    """What the build needs is missing here (platform, compiler, oneDNN wheels); the message
    says what."""


def _prefixes() -> list[Path]:
    # pip installs the oneDNN wheels' data files (lib/, include/) under the environment's root
    return [Path(sys.prefix), Path(sysconfig.get_paths()["data"])]


def _find(relative: str) -> Path | None:
    return next((p / relative for p in _prefixes() if (p / relative).exists()), None)


def _sources() -> list[Path]:
    return sorted([*SOURCES.glob("*.cc"), *SOURCES.glob("*.h")])


def library_path() -> Path:
    """Where the library for these sources, flags and jaxlib lives (its name carries a hash of
    them, so an edited kernel or another jaxlib needs a new build)."""
    digest = hashlib.sha256(f"jax {jax.__version__} jaxlib {jaxlib.__version__} {_FLAGS}".encode())
    for source in _sources():
        digest.update(source.name.encode() + source.read_bytes())
    return BUILD_DIR / f"libjaxnets_dnnl-{digest.hexdigest()[:12]}.so"


def _build_command(output: Path) -> list[str]:
    if sys.platform != "linux" or platform.machine() != "x86_64":
        raise BuildError(
            f"the oneDNN kernels are built for x86-64 Linux; this is "
            f"{sys.platform}/{platform.machine()}"
        )
    compiler = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
    if compiler is None:
        raise NotBuildable("no C++ compiler (g++ or $CXX) on PATH")
    header = _find("include/oneapi/dnnl/dnnl.hpp")
    library = _find("lib/libdnnl.so")
    if header is None or library is None:
        raise NotBuildable(
            "oneDNN's headers or library are missing: pip install onednn-cpu-gomp==2023.2.0 "
            "onednn-devel-cpu-gomp==2023.2.0 (jaxnets' dependencies on x86-64 Linux)"
        )
    include = header.parent.parent.parent
    return [
        compiler, *_FLAGS,
        f"-I{jax.ffi.include_dir()}", f"-I{include}",
        *map(str, sorted(SOURCES.glob("*.cc"))),
        f"-L{library.parent}", "-ldnnl", f"-Wl,-rpath,{library.parent}",
        "-o", str(output),
    ]  # fmt: skip


def build(*, force: bool = False, log: Callable[[str], None] = print) -> Path:
    """Compile ``src/*.cc`` into :func:`library_path` unless it is there (or ``force``).

    Returns the library's path. Raises :class:`NotBuildable` naming what is missing (compiler,
    oneDNN wheels, platform), :class:`BuildError` with the compiler's output if it fails. Safe
    to run from several processes at once: each compiles to a temporary file and renames it
    into place.
    """
    target = library_path()
    if target.exists() and not force:
        return target
    BUILD_DIR.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=BUILD_DIR) as tmp:
        scratch = Path(tmp) / target.name
        command = _build_command(scratch)
        log(f"building {target.name} from {len(_sources())} sources with {Path(command[0]).name}")
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise BuildError(f"{' '.join(command)}\nfailed:\n{done.stderr[-4000:]}")
        os.replace(scratch, target)
    for stale in BUILD_DIR.glob("libjaxnets_dnnl-*.so"):
        if stale != target:
            stale.unlink(missing_ok=True)
    return target


@functools.cache
def loaded() -> ctypes.CDLL | None:
    """The loaded library (``ctypes``), or None where it is not built or is switched off."""
    if os.environ.get(ENV_SWITCH, "1") == "0":
        return None
    path = library_path()
    if not path.exists():
        return None
    return ctypes.cdll.LoadLibrary(str(path))


_registered: set[str] = set()
_lock = threading.Lock()
# Part of jax.jit's cache key: a function traced with the kernels is traced again without them
# inside pure_jax(), instead of reusing the cached program that calls them.
_pure_jax_context = jax.make_user_context(default_value=False)


def register(target: str, symbol: str) -> str:
    """Register the library's handler ``symbol`` as the CPU FFI target ``target`` (once).

    Returns ``target``. Call only when :func:`enabled` is true.
    """
    with _lock:
        if target not in _registered:
            handler = getattr(loaded(), symbol)
            jax.ffi.register_ffi_target(target, jax.ffi.pycapsule(handler), platform="cpu")
            _registered.add(target)
    return target


def enabled() -> bool:
    """Whether traced programs call the oneDNN kernels on the CPU: the library is built and
    loads, ``JAXNETS_NATIVE`` is not ``0`` and no :func:`pure_jax` block is active."""
    return not _pure_jax_context.value and loaded() is not None


@contextlib.contextmanager
def pure_jax() -> Iterator[None]:
    """Trace and run with the pure JAX path inside this block, whatever is built: for programs
    that must not call the library (``jax.export``), and to compare the two paths. The switch is
    part of ``jax.jit``'s cache key, so a jitted function called inside the block is traced
    again rather than reusing a program that calls the kernels."""
    with _pure_jax_context(True):
        yield


def cpu_or_pure(fast: Callable, pure: Callable, *args):
    """``fast(*args)`` where XLA compiles for the CPU and the kernels are :func:`enabled`,
    else ``pure(*args)``; both must return the same shapes and dtypes."""
    if not enabled():
        return pure(*args)
    return jax.lax.platform_dependent(*args, cpu=fast, default=pure)


def status() -> str:
    """One line: whether the kernels are used, and if not, why."""
    if os.environ.get(ENV_SWITCH, "1") == "0":
        return f"oneDNN kernels: off ({ENV_SWITCH}=0); the pure JAX path runs"
    path = library_path()
    if not path.exists():
        try:
            _build_command(path)
            why = "not built: run `python -m jaxnets.native build` (make install does)"
        except NotBuildable as error:
            why = f"cannot be built here: {error}"
        return f"oneDNN kernels: {why}; the pure JAX path runs"
    return f"oneDNN kernels: on ({path.name}) for float32 on the CPU"
