"""The safety corpus: malformed GGUF files and images, hostile templates, odd stdin.

Every case must end in a documented exit code with at most one line on stderr:
never a traceback, never a process killed by a signal. `python benchmarks/safety.py`
runs the whole corpus through the CLI; these tests run all of it through the
validators and the part that gets past them through the CLI.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from gguf_corpus import cases as gguf_cases
from gguf_corpus import write_base
from hypothesis import given, settings
from hypothesis import strategies as st
from image_corpus import cases as image_cases

from askgpt.runtime.engine.guard import VERDICTS_FILE, ensure_loads_safely
from askgpt.runtime.errors import AskgptError, ExitCode
from askgpt.runtime.models.gguf import QUANT_SIZES, GgufFormatError, check_gguf
from askgpt.vision.images import load_image
from conftest import run_askgpt

REPO = Path(__file__).resolve().parent.parent
DOCUMENTED = {ExitCode.OK, ExitCode.RUNTIME_ERROR, ExitCode.USAGE_ERROR, ExitCode.NOT_FOUND, ExitCode.MODEL_FAILURE}


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = tmp_path_factory.mktemp("corpus") / "base.gguf"
    write_base(path)
    return path.read_bytes()


def assert_clean(result: subprocess.CompletedProcess[bytes], name: str) -> None:
    err = result.stderr.decode(errors="replace")
    assert result.returncode >= 0, f"{name}: killed by signal {-result.returncode}"
    assert result.returncode in DOCUMENTED, f"{name}: exit {result.returncode}"
    assert "Traceback" not in err, f"{name}: {err}"
    if result.returncode != 0:
        errors = [line for line in err.splitlines() if line.startswith("askgpt: error")]
        assert len(errors) == 1, f"{name}: {err}"


def test_the_base_model_is_valid_and_answers(tmp_path: Path, base: bytes) -> None:
    model = tmp_path / "base.gguf"
    model.write_bytes(base)
    assert check_gguf(model).n_tensors == 11
    result = run_askgpt(["-m", str(model), "-n", "3", "-t", "0", "hi"], env={"ASKGPT_HOME": str(tmp_path / "h")})
    assert_clean(result, "base")
    assert result.returncode == 0


def test_the_validator_s_tensor_sizes_are_the_gguf_package_s() -> None:
    from gguf import GGML_QUANT_SIZES

    assert QUANT_SIZES == {int(kind): size for kind, size in GGML_QUANT_SIZES.items()}


def test_every_malformed_gguf_is_refused_or_fails_cleanly(tmp_path: Path, base: bytes) -> None:
    refused, passed = 0, []
    corpus = list(gguf_cases(base))
    assert len(corpus) >= 200
    for name, data in corpus:
        path = tmp_path / f"{name}.gguf"
        path.write_bytes(data)
        try:
            check_gguf(path)
            passed.append(path)
        except GgufFormatError as exc:
            assert exc.exit_code == ExitCode.MODEL_FAILURE
            refused += 1
    assert refused >= 0.9 * len(corpus)
    # What the header walk lets through (bytes flipped inside values) reaches llama.cpp:
    # through the CLI, with the first load in a child process.
    env = {"ASKGPT_HOME": str(tmp_path / "home")}
    for path in passed:
        assert_clean(run_askgpt(["-m", str(path), "-n", "2", "-t", "0", "hi"], env=env, timeout=300), path.name)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_the_gguf_validator_only_ever_raises_its_own_error(tmp_path_factory: pytest.TempPathFactory,
                                                           base: bytes, data: st.DataObject) -> None:
    blob = bytearray(base[: data.draw(st.integers(0, len(base)))])
    for _ in range(data.draw(st.integers(0, 6))):
        if blob:
            blob[data.draw(st.integers(0, len(blob) - 1))] = data.draw(st.integers(0, 255))
    path = tmp_path_factory.mktemp("fuzz") / "f.gguf"
    path.write_bytes(bytes(blob))
    try:
        check_gguf(path)
    except GgufFormatError:
        pass


def test_a_crash_in_llama_cpp_becomes_one_line_and_a_good_file_is_vouched_for_once(tmp_path: Path,
                                                                                   base: bytes) -> None:
    good = tmp_path / "good.gguf"
    good.write_bytes(base)
    assert ensure_loads_safely(good, tmp_path) is True
    assert ensure_loads_safely(good, tmp_path) is False  # remembered: no second child
    assert str(good.resolve()) in (tmp_path / VERDICTS_FILE).read_text()


def test_every_odd_image_loads_or_is_one_clean_error(tmp_path: Path) -> None:
    corpus = list(image_cases())
    assert len(corpus) >= 50
    failures = 0
    for name, data in corpus:
        path = tmp_path / name
        path.write_bytes(data)
        try:
            load_image(str(path))
        except AskgptError as exc:
            assert exc.exit_code in DOCUMENTED and "\n" not in exc.message, name
            failures += 1
    assert failures >= 40
    for name in ("bomb.png", "truncated-50.jpg", "text.png"):
        result = run_askgpt(["-i", str(tmp_path / name), "--ocr", "off", "what is this?"],
                            env={"ASKGPT_HOME": str(tmp_path / "home")})
        assert_clean(result, name)
        assert result.returncode == ExitCode.RUNTIME_ERROR


@pytest.mark.model
@pytest.mark.parametrize("stdin", [
    b"\x00\x01\x02 binary \xff\xfe\x00 with NUL bytes",
    "\ufeffUTF-16 with a byte-order mark".encode("utf-16"),
    b"caf\xe9 latin-1 bytes",
    b"",
])
def test_odd_stdin_is_decoded_or_ignored_never_a_traceback(stdin: bytes, tmp_path: Path) -> None:
    result = run_askgpt(["-n", "3", "-t", "0", "what is this?"], input=stdin,
                        env={"ASKGPT_HOME": str(tmp_path / "home")})
    assert_clean(result, repr(stdin[:10]))
    assert result.returncode == 0


def test_a_model_file_s_hostile_chat_template_does_nothing(tmp_path: Path) -> None:
    import gguf

    marker = tmp_path / "pwned"
    hostile = ("{{ ''.__class__.__mro__[1].__subclasses__() }}{{ cycler.__init__.__globals__.os.system('touch "
               + str(marker) + "') }}{% for m in messages %}{{ m['content'] }}{% endfor %}")
    model = tmp_path / "hostile.gguf"
    write_base(model)
    reader = gguf.GGUFReader(str(model))
    writer = gguf.GGUFWriter(str(tmp_path / "hostile2.gguf"), "llama")
    for field in reader.fields.values():  # copy every key, and add the template
        if field.name.startswith("GGUF.") or field.name == "general.architecture":
            continue
        kind = field.types[0]
        value = field.contents()
        if kind == gguf.GGUFValueType.ARRAY:
            writer.add_array(field.name, value)
        else:
            writer.add_key_value(field.name, value, kind)
    writer.add_chat_template(hostile)
    for t in reader.tensors:
        writer.add_tensor(t.name, t.data, raw_shape=list(reversed([int(d) for d in t.shape])), raw_dtype=t.tensor_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    result = run_askgpt(["-m", str(tmp_path / "hostile2.gguf"), "-n", "2", "hi"],
                        env={"ASKGPT_HOME": str(tmp_path / "home")})
    assert_clean(result, "hostile template")
    assert result.returncode != 0 and b"template" in result.stderr
    assert not marker.exists()


def test_no_code_path_renders_templates_outside_the_sandbox() -> None:
    """Jinja is used only through runtime/prompting/template.py's sandboxed environment, and llama-cpp-python's
    own chat formatting (which renders the model's template itself) is never called."""
    offenders = []
    for path in [p for d in ("askgpt", "cli", "runtime", "vision", "convert") for p in (REPO / d).rglob("*.py")
                 if "data" not in p.relative_to(REPO).parts]:  # data/: scripts that made shipped files
        text = path.read_text()
        if re.search(r"jinja2\.(Environment|Template)\b|from jinja2 import .*\b(Environment|Template)\b", text):
            offenders.append(path.name)
        if re.search(r"create_chat_completion|chat_format|Jinja2ChatFormatter", text):
            offenders.append(path.name)
    assert offenders == []
    chat = (REPO / "runtime" / "prompting" / "template.py").read_text()
    assert "ImmutableSandboxedEnvironment(" in chat


@pytest.mark.model
def test_ctrl_c_while_a_long_prompt_is_read_stops_within_a_second(tmp_path: Path) -> None:
    import signal
    import time

    from test_longdoc import haystack

    from conftest import ASKGPT_BIN

    doc = tmp_path / "doc.txt"
    doc.write_text(haystack(90, "The code is 4417.", 0.5, seed=1))  # about 4,000 tokens, read whole
    # --debug routes llama.cpp's log to stderr; its "set_abort_callback" line comes when askgpt
    # arms Ctrl-C for reading the prompt: the interrupt is sent then, not after a fixed wait
    # (which on a fast machine could land after the prompt was read).
    proc = subprocess.Popen([ASKGPT_BIN, "--debug", "--ctx", "8192", "--read-tokens", "7000", "--strategy", "stuff",
                             "-f", str(doc), "What is the code?"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**__import__("os").environ, "ASKGPT_HOME": str(tmp_path / "home")})
    assert proc.stderr is not None
    seen = b""
    for line in proc.stderr:
        seen += line
        if b"set_abort_callback" in line:
            break
    else:
        pytest.fail(f"askgpt never started reading the prompt: {seen[-2000:]!r}")
    sent = time.perf_counter()
    proc.send_signal(signal.SIGINT)
    _, rest = proc.communicate(timeout=30)
    err = seen + rest
    took = time.perf_counter() - sent
    assert proc.returncode == 130, err[-2000:]
    assert took < 1.5, took
    assert b"Traceback" not in err and b"interrupted" in err


def _interrupt_after(seconds: float) -> list[float]:
    """Send this process SIGINT after ``seconds``; the list receives when it was sent."""
    import os
    import signal
    import threading
    import time

    sent: list[float] = []

    def fire() -> None:
        sent.append(time.perf_counter())
        os.kill(os.getpid(), signal.SIGINT)

    threading.Timer(seconds, fire).start()
    return sent


def test_ctrl_c_while_reading_a_long_page_of_text_in_an_image_stops_at_the_next_step(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import os
    import signal
    import threading

    import numpy as np
    import onnxruntime as ort
    from rendered_images import _draw

    from askgpt.vision.images import LoadedImage
    from askgpt.vision.ocr import OcrReader

    reader = OcrReader(threads=2)
    page = _draw([f"Line {i}: the quick brown fox jumps over the lazy dog {i * 7}" for i in range(60)], width=1400)
    image = LoadedImage("page.png", np.asarray(page), "PNG", "0")
    # Steps are ONNX Runtime calls (detection, then recognition in batches of lines), counted
    # instead of timed: the interrupt must be honoured at the next step, on any machine.
    run = ort.InferenceSession.run
    calls: list[int] = []

    def counted(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(1)
        if interrupt_at and len(calls) == interrupt_at:
            # Sent from another thread while this call runs in native code, as Ctrl-C would be.
            threading.Thread(target=os.kill, args=(os.getpid(), signal.SIGINT)).start()
        return run(self, *args, **kwargs)

    interrupt_at = 0
    monkeypatch.setattr(ort.InferenceSession, "run", counted)
    reader.encode(image)
    whole = len(calls)
    assert whole >= 6  # many steps: an interrupt can land mid-way
    calls.clear()
    interrupt_at = 2  # detection done, recognition started
    with pytest.raises(KeyboardInterrupt):
        reader.encode(image)
    assert len(calls) <= interrupt_at + 1 < whole


@pytest.mark.model
def test_ctrl_c_while_a_model_loads_stops_within_a_second() -> None:
    import time

    from askgpt.runtime.engine.base import EngineConfig
    from askgpt.runtime.engine.llama.engine import load_llama_engine
    from askgpt.runtime.models.registry import builtin_model

    sent = _interrupt_after(0.05)
    with pytest.raises(KeyboardInterrupt):
        engine = load_llama_engine(builtin_model(), EngineConfig(n_ctx=2048))
        engine.close()
        time.sleep(5)
    assert time.perf_counter() - sent[0] < 1.0


def test_a_full_disk_while_writing_leaves_the_previous_file_and_no_temporary(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    import askgpt.runtime.files as files

    target = tmp_path / "cache" / "fit.npz"
    files.atomic_write_bytes(target, b"old")

    def no_space(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(files.os, "fsync", no_space)
    for write in (lambda: files.atomic_write_bytes(target, b"new" * 1000),
                  lambda: files.atomic_write_with(target, lambda tmp: tmp.write_bytes(b"new"))):
        with pytest.raises(OSError, match="No space"):
            write()
        assert target.read_bytes() == b"old"
        assert [p.name for p in target.parent.iterdir()] == ["fit.npz"]


def test_every_file_askgpt_writes_goes_through_the_atomic_writer() -> None:
    """Converted models, encoder graphs, projector fits and the model verdicts all use
    runtime/files.py; the only other writer is the spool of a large stdin (a temporary
    file by design)."""
    writers = re.compile(r"\.write_(bytes|text)\(|open\([^)]*[\"'][wa]b?[\"']|os\.fdopen\(")
    found = []
    for path in [p for d in ("askgpt", "cli", "runtime", "vision", "convert") for p in (REPO / d).rglob("*.py")
                 if "data" not in p.relative_to(REPO).parts]:  # data/: scripts that made shipped files
        for line in path.read_text().splitlines():
            if writers.search(line):
                found.append(str(path.relative_to(REPO)))
    assert sorted(set(found)) == ["runtime/documents/spool.py", "runtime/files.py"], found
