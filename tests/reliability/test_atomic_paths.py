"""Writing into a folder that does not exist names the file asked for, not the temporary
beside it (issue 21: an export named '.x.gguf.19770.6faihtux.tmp')."""

import pytest

from pyggml_train.atomic import atomic_open, atomic_path


@pytest.mark.parametrize("opener", [atomic_open, atomic_path])
def test_a_missing_folder_is_named_with_the_target(opener, tmp_path):
    target = tmp_path / "no_such_dir" / "x.gguf"
    with pytest.raises(FileNotFoundError) as err:
        with opener(target):
            pass
    message = str(err.value)
    assert message.startswith(f"cannot write {target}: the folder {target.parent} does not")
    assert ".tmp" not in message
