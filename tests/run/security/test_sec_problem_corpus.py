"""A fuzz corpus of hostile problem files: each is refused with one ``file:line`` error, nothing runs.

Covers what the older fuzz tests miss: YAML tags, alias bombs, encodings, depth, complex keys, huge
integers and non-finite numbers. Every case is refused before anything is built.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from constrained_eq.run.cli import main
from constrained_eq.run.problem_file import load_problem_file
from constrained_eq.run.problem_yaml import MAX_BYTES, MAX_DEPTH, ProblemFileError

BASE = "task:\n  name: toy_rotation\nmodel:\n  name: vector_net\n"  # lines 1-4
FIELD_BOMB = ", ".join(f"&{c} [{', '.join([f'*{p}'] * 9) if p else ', '.join(['x'] * 9)}]"  # one line, 9^7 values
                       for p, c in zip(["", "a", "b", "c", "d", "e", "f"], "abcdefg", strict=True))
BOMB = "".join(f"{c}: &{c} [{', '.join([f'*{p}'] * 9) if p else ', '.join(['x'] * 9)}]\n"
               for p, c in zip(["", "a", "b", "c", "d", "e", "f"], "abcdefg", strict=True))

# Refused with file:line here; each one was a traceback, an unclear message, a silent accept or a hang
# before these limits (name -> (file bytes, line of the error or None, part of the message)).
CORPUS: dict[str, tuple[bytes, int | None, str]] = {
    "alias_bomb_in_options": (b"task:\n  name: nbody\n  options:\n    field: [" + FIELD_BOMB.encode() + b"]\n"
                              b"model: {name: egnn}\n", None, "once its aliases"),
    "date_in_free_option": (b"task: {name: nbody, options: {root: 2001-12-14}}\nmodel: {name: egnn}\n", 1,
                            "plain value"),
    "binary_in_free_option": (b"task: {name: nbody, options: {root: !!binary aGVsbG8=}}\nmodel: {name: egnn}\n", 1,
                              "plain value"),
    "set_in_free_option": (b"task: {name: nbody, options: {root: !!set {a, b}}}\nmodel: {name: egnn}\n", 1,
                           "plain value"),
    "int_key_in_free_option": (b"task: {name: nbody, options: {field: {1: 2}}}\nmodel: {name: egnn}\n", 1,
                               "every key to be a string"),
    "deep_flow": ((BASE + "x: " + "[" * 20_000 + "]" * 20_000 + "\n").encode(), 5, f"deeper than {MAX_DEPTH}"),
    "nul_byte": ((BASE + "x: a\0b\n").encode(), 5, "NUL byte"),
    "latin1": ((BASE + "x: caf").encode() + b"\xe9\n", 5, "not UTF-8 (byte 0xe9)"),
    "utf16": ("task: {name: toy_rotation}\n".encode("utf-16"), 1, "NUL byte"),
    "control_char": ((BASE + "x: a\x07b\n").encode(), 5, "invalid YAML"),
    "complex_key_seq": ((BASE + "? [a, b]\n: 1\n").encode(), 5, "every key to be a string"),
    "complex_key_map": ((BASE + "? {a: 1}\n: 1\n").encode(), 5, "every key to be a string"),
    "huge_epochs": ((BASE + "training: {epochs: 100000000000000000000}\n").encode(), 5, "in [1, 100000]"),
    "huge_batch": ((BASE + "training: {batch_size: 1000000000000}\n").encode(), 5, "'training.batch_size'"),
    "huge_log_every": ((BASE + f"training: {{log_every: {2**70}}}\n").encode(), 5, "'training.log_every'"),
    "huge_seed": ((BASE + "training: {seed: 100000000000000000000000}\n").encode(), 5, "'training.seed'"),
    "negative_seed": ((BASE + "training: {seed: -1}\n").encode(), 5, "'training.seed' to be an integer in [0,"),
    "huge_hidden": (b"task: {name: toy_rotation}\nmodel:\n  name: vector_net\n  options: {hidden: 100000}\n", 4,
                    "'model.options.hidden' to be an integer in [1, 4096]"),
    "huge_layers": (b"task: {name: toy_rotation}\nmodel:\n  name: vector_net\n  options: {n_layers: 100000}\n", 4,
                    "'model.options.n_layers'"),
    "huge_n_train": (b"task:\n  name: toy_rotation\n  options: {n_train: 100000000000}\nmodel: {name: vector_net}\n",
                     3, "'task.options.n_train' to be an integer in [1, 1000000]"),
    "huge_data_seed": (b"task:\n  name: toy_rotation\n  options: {data_seed: 99999999999999}\nmodel: {name: "
                       b"vector_net}\n", 3, "'task.options.data_seed'"),
}
# Already refused clearly before; kept so that the limits above never let them through.
GUARDS: dict[str, tuple[bytes, int | None, str]] = {
    "tag_timestamp_option": (b"task: {name: toy_rotation, options: {data_seed: 2001-12-14}}\nmodel: {name: "
                             b"vector_net}\n", 1, "plain value"),
    "tag_timestamp": ((BASE + "strategy: 2001-12-14\n").encode(), 5, "plain value"),
    "tag_binary": ((BASE + "training: {seed: !!binary aGVsbG8=}\n").encode(), 5, "plain value"),
    "null_key": ((BASE + "~: 2\n").encode(), 5, "every key to be a string"),
    "int_key": ((BASE + "1: 2\n").encode(), 5, "every key to be a string"),
    "deep_block": ((BASE + "".join("  " * i + f"k{i}:\n" for i in range(200))).encode(), None,
                   f"deeper than {MAX_DEPTH}"),
    "tag_python_apply": ((BASE + "x: !!python/object/apply:os.system ['touch /tmp/ceq_pwned']\n").encode(), 5,
                         "invalid YAML: could not determine a constructor"),
    "tag_python_name": ((BASE + "x: !!python/name:os.system\n").encode(), 5, "invalid YAML"),
    "tag_custom": ((BASE + "x: !include other.yaml\n").encode(), 5, "invalid YAML"),
    "tag_set": ((BASE + "evaluation: {select: !!set {a, b}}\n").encode(), 5, "plain value"),
    "alias_bomb": ((BASE + "task_copy:\n" + "".join("  " + line + "\n" for line in BOMB.splitlines())).encode(),
                   None, "once its aliases"),
    "alias_undefined": ((BASE + "x: *nowhere\n").encode(), 5, "invalid YAML: found undefined alias"),
    "alias_merge_not_mapping": ((BASE + "a: &a [1]\nb: {<<: *a}\n").encode(), None, "invalid YAML"),
    "nan_variable_lr": ((BASE + "variable_lr: .nan\n").encode(), 5, "'variable_lr'"),
    "inf_dual_lr": ((BASE + "dual_lr: .inf\n").encode(), 5, "'dual_lr'"),
    "bool_epochs": ((BASE + "training: {epochs: true}\n").encode(), 5, "'training.epochs'"),
    "float_epochs": ((BASE + "training: {epochs: 2.5}\n").encode(), 5, "'training.epochs'"),
    "document_list": (b"- 1\n- 2\n", 1, "Expected the file to be a mapping"),
    "two_documents": ((BASE + "---\n" + BASE).encode(), 5, "invalid YAML"),
}


@pytest.mark.parametrize("name", sorted(CORPUS) + [f"guard:{name}" for name in sorted(GUARDS)])
def test_a_hostile_problem_file_is_one_clear_error(tmp_path, name):
    data, line, needle = CORPUS[name] if name in CORPUS else GUARDS[name.removeprefix("guard:")]
    path = tmp_path / f"{name.removeprefix('guard:')}.yaml"
    path.write_bytes(data)
    with pytest.raises(ProblemFileError) as info:
        load_problem_file(path)
    error = info.value
    assert error.file == str(path), str(error)
    if name in CORPUS:  # a guard only needs to stay a one-line file:line error, whatever its wording
        assert needle in error.message, str(error)
    if line is not None:
        assert error.line == line, str(error)
    else:
        assert error.line is not None, str(error)
    assert "\n" not in str(error)
    assert not Path("/tmp/ceq_pwned").exists()


def test_a_file_beyond_the_size_limit_is_refused_before_parsing(tmp_path):
    path = tmp_path / "big.yaml"
    path.write_bytes((BASE + "x: [" + "1," * (MAX_BYTES // 2) + "1]\n").encode())
    with pytest.raises(ProblemFileError, match=rf"big\.yaml: the file has \d+ bytes, more than the {MAX_BYTES}"):
        load_problem_file(path)


def test_a_folder_or_a_missing_file_is_named(tmp_path):
    with pytest.raises(ProblemFileError, match="not a file"):
        load_problem_file(tmp_path)
    with pytest.raises(ProblemFileError, match="no such file"):
        load_problem_file(tmp_path / "missing.yaml")


@pytest.mark.parametrize("name", ["alias_bomb_in_options", "deep_flow", "latin1", "complex_key_seq",
                                  "date_in_free_option", "huge_hidden"])
def test_the_cli_prints_one_line_and_writes_nothing(tmp_path, capsys, name):
    path = tmp_path / f"{name}.yaml"
    path.write_bytes(CORPUS[name][0])
    assert main(["run", str(path), "--out", str(tmp_path / "runs"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"ceq: error: {path}:") and err.count("\n") == 1, err
    assert not (tmp_path / "runs").exists()


def test_anchors_within_the_limits_still_work(tmp_path):
    path = tmp_path / "anchors.yaml"
    path.write_text("task:\n  name: toy_rotation\n  options: &opt {n_train: 32, n_val: 16}\n"
                    "model: {name: vector_net}\nevaluation: {select: auto}\n")
    assert load_problem_file(path)["task"]["options"] == {"n_train": 32, "n_val": 16}
