"""Plugin manifests: parsing (pure), discovery of the shipped three and of extra folders."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from kernels.manager import run_limits, start_spec
from kernels.plugins import (BuildRecipe, Plugin, PluginError, discover, kernelspec_json,
                             parse_manifest)

MINIMAL = """
name = "ruby"
display_name = "Ruby"
language = "ruby"
argv = ["ruby-kernel", "-f", "{connection_file}"]
"""


def test_minimal_manifest_gets_defaults():
    plugin = parse_manifest(MINIMAL, "/plugins/ruby/manifest.toml")
    assert plugin.name == "ruby" and plugin.argv == ("ruby-kernel", "-f", "{connection_file}")
    assert plugin.image == "lessonserver-kernel-ruby:latest"
    assert plugin.local_argv == () and dict(plugin.limits) == {} and plugin.build is None
    assert plugin.codemirror_mode == "ruby" and plugin.file_extension == ""
    assert plugin.directory == Path("/plugins/ruby")


def test_full_manifest():
    plugin = parse_manifest(MINIMAL + """
image = "example/ruby:3"
local_argv = ["{python}", "-m", "rubyk", "-f", "{connection_file}"]
file_extension = ".rb"
codemirror_mode = "text/x-ruby"
[limits]
timeout = 30
output_bytes = 100000
[build]
files = ["kernel.rb"]
""", "r/manifest.toml")
    assert plugin.image == "example/ruby:3" and plugin.file_extension == ".rb"
    assert dict(plugin.limits) == {"timeout": 30.0, "output_bytes": 100000}
    assert isinstance(plugin.limits["timeout"], float)
    assert plugin.build == BuildRecipe("Dockerfile", "requirements.txt", ("kernel.rb",))
    with pytest.raises(TypeError):
        plugin.limits["timeout"] = 1  # frozen all the way down


@pytest.mark.parametrize("extra, key", [
    ('colour = "red"', "colour"),
    ('image = 3', "image"),
    ('file_extension = "rb"', "file_extension"),
    ('[limits]\ntimeout = "long"', "limits.timeout"),
    ('[limits]\noutput_bytes = 1.5', "limits.output_bytes"),
    ('[limits]\nmemory_mb = true', "limits.memory_mb"),
    ('[limits]\ncpu_seconds = 3', "limits.cpu_seconds"),
    ('[limits]\ntimeout = 0', "limits.timeout"),
    ('[build]\ndockerfile = 1', "build.dockerfile"),
    ('[build]\nbase = "x"', "build.base"),
    ('[build]\nfiles = ["../../etc/passwd"]', "../../etc/passwd"),
    ('limits = 3', "limits"),
])
def test_wrong_keys_and_types_name_the_key_and_file(extra, key):
    with pytest.raises(PluginError) as caught:
        parse_manifest(MINIMAL + extra, "/somewhere/ruby/manifest.toml")
    assert "/somewhere/ruby/manifest.toml" in str(caught.value) and key in str(caught.value)


@pytest.mark.parametrize("text, key", [
    (MINIMAL.replace('display_name = "Ruby"\n', ""), "display_name"),
    (MINIMAL.replace('language = "ruby"\n', ""), "language"),
    (MINIMAL.replace('argv = ["ruby-kernel", "-f", "{connection_file}"]\n', ""), "argv"),
    (MINIMAL.replace('"{connection_file}"', '"conn.json"'), "{connection_file}"),
    (MINIMAL.replace('argv = ["ruby-kernel", "-f", "{connection_file}"]', 'argv = "ruby"'), "argv"),
    (MINIMAL.replace('argv = ["ruby-kernel", "-f", "{connection_file}"]', "argv = []"), "argv"),
    (MINIMAL.replace('"ruby"\ndisplay', '"Ruby Kernel"\ndisplay'), "name"),
    (MINIMAL + "[limits\n", "TOML"),
])
def test_missing_or_malformed_required_keys(text, key):
    with pytest.raises(PluginError) as caught:
        parse_manifest(text, "ruby/manifest.toml")
    assert "ruby/manifest.toml" in str(caught.value) and key in str(caught.value)


def test_plugin_error_is_a_value_error():
    assert issubclass(PluginError, ValueError)


def test_discover_finds_the_three_shipped_kernels():
    plugins = discover()
    assert [p.name for p in plugins] == ["bash", "python", "sql"]
    by_name = {p.name: p for p in plugins}
    for plugin in plugins:
        assert plugin.argv[0] == "/opt/venv/bin/python" and "{connection_file}" in plugin.argv
        assert plugin.local_argv[0] == "{python}" and "{connection_file}" in plugin.local_argv
        assert plugin.image == f"lessonserver-kernel-{plugin.name}:latest"
        assert plugin.build is not None
        assert (plugin.directory / plugin.build.dockerfile).is_file()
        assert (plugin.directory / plugin.build.requirements).is_file()
        for name in plugin.build.files:
            assert (plugin.directory / name).is_file()
    assert by_name["python"].argv[1:3] == ("-m", "ipykernel_launcher")
    assert by_name["bash"].local_argv[1:3] == ("-m", "bash_kernel")
    assert by_name["sql"].local_argv[1:3] == ("-m", "kernels.sql")
    assert by_name["sql"].file_extension == ".sql"


def test_the_shipped_local_argv_runs_with_this_python():
    # the modules named by local_argv exist for the local backend
    import importlib.util
    for plugin in discover():
        module = plugin.local_argv[plugin.local_argv.index("-m") + 1]
        assert importlib.util.find_spec(module) is not None, module


def _write_plugin(folder: Path, name: str) -> Path:
    folder.mkdir(parents=True)
    (folder / "manifest.toml").write_text(MINIMAL.replace('"ruby"\ndisplay', f'"{name}"\ndisplay'))
    return folder


def test_extra_dirs_add_plugins_either_as_folder_or_parent(tmp_path):
    _write_plugin(tmp_path / "many" / "ruby", "ruby")
    _write_plugin(tmp_path / "many" / "lua", "lua")
    single = _write_plugin(tmp_path / "one" / "r", "rlang")
    names = [p.name for p in discover(extra_dirs=[tmp_path / "many", str(single)])]
    assert names == ["bash", "lua", "python", "rlang", "ruby", "sql"]
    assert {p.name: p.directory for p in discover([single])}["rlang"] == single


def test_duplicate_names_are_an_error_naming_both_files(tmp_path):
    folder = _write_plugin(tmp_path / "py", "python")
    with pytest.raises(PluginError) as caught:
        discover([folder])
    assert str(folder / "manifest.toml") in str(caught.value)
    assert str(Path("kernels/python/manifest.toml")) in str(caught.value)


def test_a_broken_extra_manifest_names_its_file(tmp_path):
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "manifest.toml").write_text(MINIMAL + "oops = 1\n")
    with pytest.raises(PluginError, match=r"bad/manifest.toml.*oops"):
        discover([folder])
    with pytest.raises(PluginError, match="no such plugin folder"):
        discover([tmp_path / "missing"])


def test_entry_points_load_a_folder_or_a_plugin(tmp_path, monkeypatch):
    # a real installed distribution: a .dist-info with entry_points.txt on sys.path
    folder = _write_plugin(tmp_path / "lua", "lua")
    module = tmp_path / "site" / "ls_extra_kernels.py"
    module.parent.mkdir()
    module.write_text(
        "from kernels.plugins import parse_manifest\n"
        f"FOLDER = {str(folder)!r}\n"
        "ruby = parse_manifest(" + repr(MINIMAL) + ", 'ls_extra_kernels')\n")
    info = tmp_path / "site" / "ls_extra_kernels-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: ls-extra-kernels\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[lessonserver.kernels]\nlua = ls_extra_kernels:FOLDER\nruby = ls_extra_kernels:ruby\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    names = [p.name for p in discover()]
    assert names == ["bash", "lua", "python", "ruby", "sql"]

    (info / "entry_points.txt").write_text("[lessonserver.kernels]\nbad = ls_extra_kernels:nothing\n")
    with pytest.raises(PluginError, match="entry point bad"):
        discover()


def test_kernelspec_json():
    python = next(p for p in discover() if p.name == "python")
    launcher = [sys.executable, "-m", "lessonserver_launch", "python", "{connection_file}"]
    spec = kernelspec_json(python, launcher)
    assert spec["argv"] == launcher and spec["display_name"] == "Python 3"
    assert spec["language"] == "python"
    assert spec["metadata"]["lessonserver"] == {"plugin": "python",
                                                "image": "lessonserver-kernel-python:latest"}
    assert json.loads(json.dumps(spec)) == spec


def test_plugin_limits_reach_the_run_and_the_start_spec(make_settings):
    settings = make_settings(LS_RUN_TIMEOUT="3")
    slow = parse_manifest(MINIMAL + "[limits]\ntimeout = 20\n", "slow/manifest.toml")
    assert run_limits(settings, slow).timeout == 20.0
    spec = start_spec(settings, slow)
    assert spec.image == slow.image and spec.argv == slow.argv and spec.plugin == "ruby"
    assert isinstance(slow, Plugin)
