"""`fastkd demo` (the README's main job), shortened to one epoch: both runs, the table and a real PNG plot."""

from PIL import Image

from fastkd.demo import run_demo


def test_demo_one_epoch_writes_table_inputs_and_plot(tmp_path, capsys):
    rows = run_demo(tmp_path / "demo", epochs=1, quiet=True)
    assert [label for label, _ in rows] == ["spaced online KD (s=1)", "online KD (s=0)"]
    for _, summary in rows:
        assert summary["finished"] and 0.0 <= summary["student_final_top1"] <= 1.0
    with Image.open(tmp_path / "demo" / "demo.png") as img:
        assert img.size[0] > 300 and img.size[1] > 200
    out = capsys.readouterr().out
    assert "test top-1 accuracy" in out and "demo finished in" in out
