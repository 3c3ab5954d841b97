"""Building jaxnets.native's library (``python -m jaxnets.native build``), issue 20: a missing
prerequisite is named and leaves the pure path (``--optional`` exits 0 for it, as make install
uses it); a compiler error is never swallowed."""

import pytest

from jaxnets.native import __main__ as native_cli
from jaxnets.native import library


@pytest.fixture
def scratch_sources(tmp_path, monkeypatch):
    sources, build_dir = tmp_path / "src", tmp_path / "_build"
    sources.mkdir()
    monkeypatch.setattr(library, "SOURCES", sources)
    monkeypatch.setattr(library, "BUILD_DIR", build_dir)
    return sources


def test_a_compiler_error_fails_the_build_even_when_optional(scratch_sources, capsys):
    (scratch_sources / "broken.cc").write_text("int main( { return 0; }\n")
    assert native_cli.main(["build", "--optional"]) == 1
    err = capsys.readouterr().err
    assert "broken.cc" in err and "error" in err
    assert not library.library_path().exists()


def test_a_source_builds_into_a_library_named_by_its_contents(scratch_sources):
    (scratch_sources / "ok.cc").write_text('extern "C" int jaxnets_answer() { return 42; }\n')
    first = library.build(log=lambda _: None)
    assert first.exists() and first.parent == library.BUILD_DIR
    assert library.build(log=pytest.fail) == first  # built already: nothing to do
    (scratch_sources / "ok.cc").write_text('extern "C" int jaxnets_answer() { return 43; }\n')
    second = library.build(log=lambda _: None)
    assert second != first and second.exists() and not first.exists()  # the stale one is gone


def test_a_missing_prerequisite_is_named_and_optional_builds_exit_0(monkeypatch, capsys):
    monkeypatch.setattr(library, "_find", lambda relative: None)
    monkeypatch.setattr(library, "library_path", lambda: library.BUILD_DIR / "absent.so")
    with pytest.raises(library.NotBuildable, match="onednn-devel-cpu-gomp"):
        library.build()
    assert native_cli.main(["build", "--optional"]) == 0
    assert native_cli.main(["build"]) == 1
    out, err = capsys.readouterr()
    assert "onednn-cpu-gomp" in err
    assert "cannot be built here" in out and "the pure JAX path runs" in out


def test_status_names_the_switch(monkeypatch):
    monkeypatch.setenv(library.ENV_SWITCH, "0")
    assert library.status().startswith(f"oneDNN kernels: off ({library.ENV_SWITCH}=0)")
