"""``mnist-jax gradcheck``: prints its table and exits 0 on pass, 1 on fail."""

import jax
import pytest

from mnist_jax import backprop, cli
from mnist_jax.commands import gradcheck as command

SMALL = ["--sizes", "20,16,8,10", "--batch", "16"]


@pytest.fixture
def gradcheck_only(monkeypatch):
    # Only this subcommand: the test needs neither the others nor their imports.
    monkeypatch.setattr(cli, "COMMANDS", ("gradcheck",))


def test_float64_passes_and_prints_a_row_per_leaf(gradcheck_only, capsys):
    status = cli.main(["gradcheck", *SMALL])
    out = capsys.readouterr().out
    assert status == 0
    assert out.splitlines()[-1].startswith("PASS (float64)")
    assert len(out.splitlines()) == 2 + 6 + 1  # header, 3 layers of w and b, verdict


def test_float32_passes_at_its_tolerance(gradcheck_only, capsys):
    status = cli.main(["gradcheck", "--dtype", "float32", "--init", "small", *SMALL])
    assert status == 0
    assert "PASS (float32)" in capsys.readouterr().out


def test_the_command_leaves_x64_as_it_found_it(gradcheck_only, capsys):
    before = jax.config.jax_enable_x64
    cli.main(["gradcheck", *SMALL, "--keep-prob", "1"])
    assert jax.config.jax_enable_x64 == before


def test_a_wrong_backward_pass_exits_1(gradcheck_only, monkeypatch, capsys):
    wrong = backprop.RULES._replace(activation_grad=lambda z, a: 1.0 - a**2)
    real = command.run_gradcheck
    monkeypatch.setattr(
        command, "run_gradcheck", lambda **kwargs: real(**kwargs, rules=wrong)
    )
    assert cli.main(["gradcheck", *SMALL]) == 1
    assert capsys.readouterr().out.splitlines()[-1].startswith("FAIL")


@pytest.mark.parametrize(
    "argv",
    [["--sizes", "784"], ["--sizes", "784,x,10"], ["--dtype", "float16"]],
)
def test_bad_flags_exit_2(gradcheck_only, argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["gradcheck", *argv])
    assert exit_info.value.code == 2


def test_a_bad_keep_prob_is_one_sentence_and_exit_2(gradcheck_only, capsys):
    assert cli.main(["gradcheck", *SMALL, "--keep-prob", "0"]) == 2
    assert "keep-prob must be in (0, 1]" in capsys.readouterr().err


@pytest.mark.slow
def test_default_network_passes_in_float64(gradcheck_only, capsys):
    assert cli.main(["gradcheck"]) == 0
