"""README.md's snippets work as written.

- The ```python blocks run, in order, in one fresh interpreter (they build on each other,
  as a reader pastes them) from an empty temporary folder, the project on PYTHONPATH,
  each within SNIPPET_SECONDS. A block whose first line is PARSE_ONLY (it trains for
  hours) is only compiled. Every block, parse-only ones too, uses only names that it or
  an earlier block defines (the `splits` of a snippet that never made one).
- The ```bash blocks: every `python -m binaries.X` / `eb-x` command names an existing
  binary and passes only flags that binary defines; every `--config.field` exists in the
  config the command loads (the run config when it names none); `python -m MODULE`
  names a module that exists. Nothing of them is run.
"""
import builtins
import importlib.util
import json
import os
import re
import shlex
import subprocess
import symtable
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, "README.md")
PARSE_ONLY = "# readme-test: parse-only"
SNIPPET_SECONDS = 60
# Flags absl's app.run adds to every binary (on top of those a bare import defines).
ABSL_FLAGS = {"help", "helpshort", "helpfull", "helpxml", "flagfile", "undefok"}

with open(README, encoding="utf-8") as _f:
    TEXT = _f.read()


def _blocks(language: str):
    """[(line number of the first code line, code)] of the ```language blocks."""
    out = []
    for match in re.finditer(r"^```(\w*)\n(.*?)^```", TEXT, re.S | re.M):
        if match.group(1) == language:
            out.append((TEXT.count("\n", 0, match.start(2)) + 1, match.group(2)))
    return out


PYTHON = _blocks("python")
BASH = _blocks("bash")

# Runs in the child: execs each snippet in one namespace, under an alarm; prints one
# `SNIPPET <line> <seconds>` line per snippet, or the traceback and exits 1.
_DRIVER = r"""
import json, signal, sys, time, traceback
def alarm(signum, frame):
    raise TimeoutError(f"took more than {LIMIT} s: mark it {MARKER!r} or make it smaller")
signal.signal(signal.SIGALRM, alarm)
namespace = {"__name__": "__main__"}
for line, code in json.load(open(sys.argv[1])):
    start = time.time()
    signal.alarm(LIMIT)
    try:
        exec(compile(code, f"README.md:{line}", "exec"), namespace)
    except BaseException:
        print(f"FAILED README.md snippet at line {line}:", flush=True)
        traceback.print_exc(file=sys.stdout)
        sys.exit(1)
    finally:
        signal.alarm(0)
    print(f"SNIPPET {line} {time.time() - start:.1f}", flush=True)
"""


def test_readme_has_python_snippets_that_run_and_one_parse_only():
    assert len([c for _, c in PYTHON if not c.startswith(PARSE_ONLY)]) >= 4
    assert any(c.startswith(PARSE_ONLY) for _, c in PYTHON)


def test_python_snippets_run_in_order_as_written(tmp_path):
    runnable = [(line, code) for line, code in PYTHON if not code.startswith(PARSE_ONLY)]
    snippets = tmp_path / "snippets.json"
    snippets.write_text(json.dumps(runnable))
    driver = _DRIVER.replace("LIMIT", str(SNIPPET_SECONDS)).replace("MARKER", repr(PARSE_ONLY))
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]),
           "TF_CPP_MIN_LOG_LEVEL": "3", "MPLBACKEND": "Agg"}
    proc = subprocess.run([sys.executable, "-c", driver, str(snippets)], cwd=workdir, env=env,
                          capture_output=True, text=True,
                          timeout=SNIPPET_SECONDS * len(runnable) + 60, check=False)
    done = [l for l in proc.stdout.splitlines() if l.startswith("SNIPPET ")]
    assert proc.returncode == 0 and len(done) == len(runnable), (
        f"a README snippet failed (exit {proc.returncode}):\n{proc.stdout[-4000:]}\n"
        f"{proc.stderr[-2000:]}")


_PARSE_ONLY_BLOCKS = [b for b in PYTHON if b[1].startswith(PARSE_ONLY)]


@pytest.mark.parametrize("line, code", _PARSE_ONLY_BLOCKS,
                         ids=[f"line{line}" for line, _ in _PARSE_ONLY_BLOCKS])
def test_parse_only_snippets_compile(line, code):
    compile(code, f"README.md:{line}", "exec")


def _defined_and_used(code: str):
    """(names a snippet binds at top level, global names it reads)."""
    top = symtable.symtable(code, "<snippet>", "exec")
    defined = {s.get_name() for s in top.get_symbols()
               if s.is_assigned() or s.is_imported() or s.is_namespace()}
    used = set()

    def visit(table, is_top):
        for sym in table.get_symbols():
            if sym.is_referenced() and (sym.is_global() or is_top) and not (
                    is_top and (sym.is_assigned() or sym.is_imported())):
                used.add(sym.get_name())
        for child in table.get_children():
            visit(child, False)

    visit(top, True)
    return defined, used


def test_every_python_snippet_uses_only_names_defined_before_it():
    known, bad = set(dir(builtins)), []
    for line, code in PYTHON:
        defined, used = _defined_and_used(code)
        missing = sorted(used - defined - known)
        if missing:
            bad.append(f"README.md:{line}: {missing}")
        known |= defined
    assert not bad, ("README snippets read names no snippet before them (nor they) define; "
                     f"define them in the snippet: {bad}")


# ------------------------------------------------------------------ bash blocks
def _console_scripts() -> dict:
    with open(os.path.join(ROOT, "setup.py"), encoding="utf-8") as f:
        return dict(re.findall(r'"([\w-]+) = binaries\.(\w+):run"', f.read()))


BINARIES = sorted(os.path.splitext(name)[0] for name in os.listdir(os.path.join(ROOT, "binaries"))
                  if name.endswith(".py") and name not in ("__init__.py", "cli.py"))
SCRIPTS = _console_scripts()


def _commands():
    """[(README line, tokens)] of every command of the bash blocks (env assignments dropped)."""
    out = []
    for first, code in BASH:
        lines, number = code.split("\n"), first
        i = 0
        while i < len(lines):
            start, text = number + i, lines[i]
            while text.endswith("\\") and i + 1 < len(lines):
                i += 1
                text = text[:-1] + " " + lines[i]
            i += 1
            command = []
            for token in shlex.split(text, comments=True) + [";"]:
                if token in ("&&", "||", ";", "|"):
                    while command and re.match(r"^\w+=", command[0]):
                        command.pop(0)
                    if command:
                        out.append((start, command))
                    command = []
                else:
                    command.append(token)
    return out


def _binary_commands():
    """[(line, binary, args)] of the commands that run a binary."""
    out = []
    for line, cmd in _commands():
        if cmd[:2] == ["python", "-m"] and cmd[2].startswith("binaries."):
            out.append((line, cmd[2].split(".", 1)[1], cmd[3:]))
        elif cmd[0] in SCRIPTS or cmd[0].startswith("eb-"):
            out.append((line, SCRIPTS.get(cmd[0], cmd[0]), cmd[1:]))
    return out


def test_readme_bash_blocks_run_binaries():
    names = {b for _, b, _ in _binary_commands()}
    assert {"eb_train", "eb_export", "eb_bench", "eb_tune"} <= names, names


def test_every_binary_named_in_the_readme_exists():
    named = set(re.findall(r"python -m binaries\.(\w+)", TEXT))
    scripts = set(re.findall(r"(?<![\w/.-])(eb-[a-z]+)\b", TEXT))
    assert not named - set(BINARIES), f"README names missing binaries: {named - set(BINARIES)}"
    assert not scripts - set(SCRIPTS), (f"README names console scripts setup.py does not "
                                        f"define: {scripts - set(SCRIPTS)}")
    assert all(SCRIPTS[s] in BINARIES for s in scripts)


def _flags_of(binaries):
    """{binary: the flag names it defines} (one small child each, absl only: no TF)."""
    code = ("import json, sys; from absl import flags; import importlib; "
            "importlib.import_module('binaries.' + sys.argv[1]); print(json.dumps(sorted(flags.FLAGS)))")
    procs = {b: subprocess.Popen([sys.executable, "-c", code, b], cwd=ROOT, text=True,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for b in binaries}
    out = {}
    for binary, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 0, f"importing binaries.{binary} failed:\n{stderr[-2000:]}"
        out[binary] = set(json.loads(stdout.strip().splitlines()[-1])) | ABSL_FLAGS
    return out


def _config_field_exists(cfg, path: str) -> bool:
    for part in path.split("."):
        try:
            if part not in cfg:
                return False
        except TypeError:
            return False
        cfg = cfg[part]
    return True


def _load_config(spec: str):
    path, _, arg = spec.partition(":")
    module_spec = importlib.util.spec_from_file_location(
        "readme_config_" + re.sub(r"\W", "_", path), os.path.join(ROOT, path))
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.get_config(arg) if arg else module.get_config()


def test_binary_commands_pass_only_flags_their_binary_defines():
    commands = [c for c in _binary_commands() if c[1] in BINARIES]
    flags_of = _flags_of(sorted({b for _, b, _ in commands}))
    bad, overrides = [], []
    for line, binary, args in commands:
        config = next((a.split("=", 1)[1] for a in args if a.startswith("--config=")), None)
        for arg in args:
            if not arg.startswith("-"):
                bad.append(f"README.md:{line} {binary}: positional argument {arg!r}")
                continue
            name = arg.lstrip("-").split("=", 1)[0]
            if name.startswith("config."):
                overrides.append((line, binary, config, name[len("config."):]))
            elif name not in flags_of[binary] and not (
                    name.startswith("no") and name[2:] in flags_of[binary]):
                bad.append(f"README.md:{line} {binary}: unknown flag --{name}")
    configs = {}
    for line, binary, config, field in overrides:
        if config is None:  # the phase binaries read the run folder's config
            config = "configs/quickstart.py" if binary != "eb_bench" else None
        if config is None or not os.path.isfile(os.path.join(ROOT, config.split(":")[0])):
            continue  # a config the README makes at run time (chosen_config.py)
        if config not in configs:
            configs[config] = _load_config(config)
        if not _config_field_exists(configs[config], field):
            bad.append(f"README.md:{line} {binary}: {config} has no field {field!r}")
    assert not bad, "README commands that would fail on their flags: " + "; ".join(bad)


def test_python_m_commands_name_existing_modules():
    bad = []
    for line, cmd in _commands():
        if cmd[:2] == ["python", "-m"] and len(cmd) > 2:
            module = cmd[2]
            local = os.path.join(ROOT, *module.split("."))
            if module.split(".")[0] in ("binaries", "eb_tf", "tests", "configs"):
                found = os.path.isfile(local + ".py") or os.path.isfile(
                    os.path.join(local, "__main__.py"))
            else:
                found = importlib.util.find_spec(module) is not None
            if not found:
                bad.append(f"README.md:{line}: python -m {module}")
    assert not bad, f"README runs modules that do not exist: {bad}"
