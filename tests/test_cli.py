"""Bad input on the command line: one line naming the culprit, a non-zero exit, no traceback unless --debug."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from recbole_trsr import RandomRank
from recbole_trsr.cli import main
from recbole_trsr.registry import register_model
from tests.conftest import as_arguments

SCRIPT = str(Path(__file__).resolve().parents[1] / "run_recbole_trsr.py")


def run_cli(capsys, arguments):
    code = main(arguments)
    captured = capsys.readouterr()
    return code, captured.err.strip()


def assert_one_line_error(code, error, *fragments):
    assert code == 2
    assert len(error.splitlines()) == 1, error
    assert error.startswith("run_recbole_trsr.py: error: ")
    assert "Traceback" not in error
    for fragment in fragments:
        assert fragment in error


def test_unknown_model(capsys, tiny_overrides):
    code, error = run_cli(capsys, ["--model=SASRec,NoSuchModel", "--dataset=tiny", *as_arguments(tiny_overrides)])
    assert_one_line_error(code, error, "unknown model 'NoSuchModel'", "SASRec", "GRU4Rec", "RandomRank")


def test_unknown_dataset(capsys, tiny_overrides):
    code, error = run_cli(capsys, ["--model=SASRec", "--dataset=nosuchset", *as_arguments(tiny_overrides)])
    assert_one_line_error(code, error, "unknown dataset 'nosuchset'", "amazon", "ml-100k")


def test_missing_data_folder_names_it_and_never_downloads(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    code, error = run_cli(capsys, ["--model=SASRec", "--dataset=amazon", f"--data_path={empty}"])
    assert_one_line_error(code, error, "dataset 'amazon'", str(empty / "amazon"), "README")


def test_item_file_without_a_configured_text_field(capsys, tiny_overrides):
    arguments = as_arguments({**tiny_overrides, "item_text_fields": "['title', 'description']"})
    code, error = run_cli(capsys, ["--model=SASRec", "--dataset=tiny", *arguments])
    assert_one_line_error(code, error, "tiny.item has no column 'description'", "item_text_fields")


def test_inter_file_with_a_missing_column(capsys, tiny_overrides):
    inter = Path(tiny_overrides["data_path"]) / "tiny" / "tiny.inter"
    lines = inter.read_text().splitlines()
    inter.write_text("\n".join("\t".join(line.split("\t")[:2]) for line in lines) + "\n")
    code, error = run_cli(capsys, ["--model=SASRec", "--dataset=tiny", *as_arguments(tiny_overrides)])
    assert_one_line_error(code, error, "tiny.inter has no column 'timestamp'")


@pytest.mark.parametrize(
    ("argument", "fragment"),
    [
        ("--epochs", "expected --key=value"),
        ("epochs=3", "expected --key=value"),
        ("--epochs=", "--epochs has no value"),
        ("--=3", "is not a config key"),
        ("--eval_args={'mode': 'full'", "not a valid list or dict"),
    ],
)
def test_malformed_key_value(capsys, argument, fragment):
    code, error = run_cli(capsys, ["--model=SASRec", "--dataset=ml-100k", argument])
    assert_one_line_error(code, error, "malformed argument", fragment)


def test_missing_config_file(capsys, tmp_path):
    code, error = run_cli(capsys, ["--model=SASRec", f"--config_files={tmp_path / 'nope.yaml'}"])
    assert_one_line_error(code, error, "config file", "nope.yaml", "does not exist")


def test_exit_status_and_debug_traceback_from_the_script(tmp_path):
    command = [sys.executable, SCRIPT, "--model=NoSuchModel", "--dataset=ml-100k"]
    quiet = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert quiet.returncode == 2
    assert quiet.stderr.strip().splitlines() == [quiet.stderr.strip()]
    assert "Traceback" not in quiet.stderr
    loud = subprocess.run([*command, "--debug"], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert loud.returncode != 0
    assert "Traceback" in loud.stderr and "UserInputError" in loud.stderr


def test_ctrl_c_while_the_libraries_import(tmp_path):
    """The imports of torch and RecBole take seconds; Ctrl-C there was a bare KeyboardInterrupt traceback."""
    import signal
    import time

    # A shell's background job (nohup ... &) starts with SIGINT ignored, which its children inherit, and Python then
    # keeps it ignored: the child takes Ctrl-C's handler back as a shell's foreground command has it, before it runs
    # the script. Not with preexec_fn, which runs Python between fork and exec and, with this process's threads
    # (torch's, once an earlier test ran a model), now and then aborted the child (exit -6).
    takes_ctrl_c = (
        "import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
        "sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')"
    )
    arguments = [SCRIPT, "--model=SASRec", "--dataset=ml-100k", f"--checkpoint_dir={tmp_path}"]
    process = subprocess.Popen(
        [sys.executable, "-c", takes_ctrl_c, *arguments], stderr=subprocess.PIPE, text=True, cwd=tmp_path
    )
    time.sleep(1.0)  # past Python's own start, within the imports (or, on a fast machine, the run's start)
    process.send_signal(signal.SIGINT)
    _, error = process.communicate(timeout=300)
    assert process.returncode == 130
    assert error.strip() == "run_recbole_trsr.py: interrupted", error


def test_model_list_with_variants():
    from recbole_trsr.model_list import model_variant, split_model_list

    text = "SASRec, LLMTRSR[summary_mode=none;recent_k=5],LLMTRSR[train_neg_sample_args={'sample_num': 4}],"
    entries = split_model_list(text)
    assert entries == [
        "SASRec",
        "LLMTRSR[summary_mode=none;recent_k=5]",
        "LLMTRSR[train_neg_sample_args={'sample_num': 4}]",
    ]
    assert model_variant(entries[1]) == ("LLMTRSR", {"summary_mode": "none", "recent_k": "5"})
    assert model_variant(entries[2]) == ("LLMTRSR", {"train_neg_sample_args": "{'sample_num': 4}"})
    assert split_model_list("A[lora_target_modules=[q_proj,v_proj]],B") == [
        "A[lora_target_modules=[q_proj,v_proj]]",
        "B",
    ]
    assert model_variant("A[lora_target_modules=[q_proj,v_proj]]") == ("A", {"lora_target_modules": "[q_proj,v_proj]"})


@pytest.mark.parametrize(
    "entry", ["LLMTRSR[summary_mode]", "LLMTRSR[=none]", "LLMTRSR[a=1]x", "SASRec[n_layers=1;n_layers=2]"]
)
def test_malformed_model_variant(capsys, tiny_overrides, entry):
    assert main([f"--model={entry}", "--dataset=tiny", *as_arguments(tiny_overrides)]) == 2
    error = capsys.readouterr().err
    assert f"--model entry '{entry}'" in error
    assert ("gives n_layers twice" in error) == ("n_layers=2" in entry)  # the second was taken without a word


def test_a_key_nothing_reads_is_named_with_the_key_it_likely_meant(capsys, tiny_overrides, tmp_path):
    # RecBole ignores a key it does not know: --sumary_mode=none ran hours of summaries without a word.
    config_file = tmp_path / "mine.yaml"
    config_file.write_text("lora_rank: 8\nepochs: 2\n")
    arguments = [
        "--model=LLMTRSR[recent_K=3],SASRec",
        "--dataset=tiny",
        f"--config_files={config_file}",
        "--sumary_mode=none",
        "--Learning_rate=0.1",
        "--n_layers=1",  # SASRec's, not LLMTRSR's: read by a model of the run
        "--encoding=utf-8",  # set by no property file, read by RecBole's dataset
        "--show_user=",  # stops the run at once, after the warning
        *as_arguments(tiny_overrides),
    ]
    code, error = run_cli(capsys, arguments)
    warning, refusal = error.splitlines()
    assert warning.startswith("run_recbole_trsr.py: warning: ")
    for named in [
        "--sumary_mode (did you mean --summary_mode?)",
        "--Learning_rate (did you mean --learning_rate?)",
        f"lora_rank in {config_file} (did you mean lora_r?)",
        "recent_K in --model entry LLMTRSR[recent_K=3] (did you mean recent_k?)",
    ]:
        assert named in warning
    for read in ["n_layers", "encoding", "epochs", "data_path", "show_progress"]:
        assert read not in warning
    assert_one_line_error(code, refusal, "--show_user needs a user token")


def test_known_keys_raise_no_warning(capsys, tiny_overrides):
    code, error = run_cli(
        capsys,
        [
            "--model=LLMTRSR,SASRec,GRU4Rec",
            "--dataset=tiny",
            "--show_user=",
            "--summary_mode=none",
            "--lora_r=4",
            *as_arguments(tiny_overrides),
        ],
    )
    assert_one_line_error(code, error, "--show_user needs a user token")


class WidthReader(RandomRank):
    """A model of one's own: the key its own file reads is known."""

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.width = config["my_width"]


def test_a_key_that_a_model_of_ones_own_reads_is_known(capsys, tiny_overrides):
    register_model(WidthReader)
    code, error = run_cli(
        capsys,
        [
            "--model=WidthReader",
            "--dataset=tiny",
            "--my_width=3",
            "--my_widht=3",
            "--show_user=",
            *as_arguments(tiny_overrides),
        ],
    )
    warning = error.splitlines()[0]
    assert warning.endswith("reads --my_widht (did you mean --my_width?): ignored")  # and not --my_width
