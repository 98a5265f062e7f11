"""Bad command-line input and OS errors: a message naming the value or file, exit 2, nothing written."""
import errno

import pytest

from posezoo.scripts.cli import EXIT_BAD_INPUT, main


def _build(tmp_path, shared, *args):
    return ["build", "efficientpose-rt-lite", "--calibration-images", str(shared / "images"), "--mirror",
            str(shared / "checkpoints"), "--cache", str(tmp_path / "cache"), "--offline", *args]


@pytest.mark.parametrize("value", ["-1", "0", "two"])
def test_max_samples_and_jobs_must_be_positive(tmp_path, shared, capsys, value):
    for flag in ("--max-samples", "-j"):
        with pytest.raises(SystemExit) as exit_:
            main(_build(tmp_path, shared, "--out", str(tmp_path / "out"), flag, value))
        assert exit_.value.code == EXIT_BAD_INPUT
        assert f"expected a whole number >= 1, got '{value}'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_an_out_folder_that_cannot_be_written_is_refused_before_any_work(tmp_path, shared, capsys):
    (tmp_path / "a-file").write_text("x")
    assert main(_build(tmp_path, shared, "--out", str(tmp_path / "a-file" / "zoo"))) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "a-file/zoo is not a writable folder" in err and "choose another folder" in err
    assert not (tmp_path / "cache").exists()  # nothing was fetched


def test_a_cache_that_cannot_be_written_names_the_path(tmp_path, shared, capsys):
    (tmp_path / "a-file").write_text("x")
    code = main(["fetch", "efficientpose-rt-lite", "--mirror", str(shared / "checkpoints"), "--cache",
                 str(tmp_path / "a-file" / "cache"), "--offline"])
    assert code == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "a-file/cache" in err and "choose a writable folder" in err


@pytest.mark.slow
def test_a_disk_that_fills_up_mid_build_leaves_the_published_folder_as_it_was(tmp_path, shared, capsys,
                                                                               monkeypatch):
    import posezoo.converters.pipeline as pipeline

    out = tmp_path / "out"
    assert main(_build(tmp_path, shared, "--out", str(out), "--formats", "onnx", "--precisions", "fp32",
                       "--max-samples", "2")) == 0
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}

    def disk_full(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device", str(dst))

    monkeypatch.setattr(pipeline, "simplify", disk_full)
    capsys.readouterr()
    code = main(_build(tmp_path, shared, "--out", str(out), "--formats", "onnx", "--precisions", "fp32,fp16",
                       "--max-samples", "2", "--force"))
    assert code == EXIT_BAD_INPUT
    assert "No space left on device" in capsys.readouterr().err
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before
