"""The package imports cheaply and exposes its public namespaces."""

import subprocess
import sys

import contractive_keras


def test_import_does_not_load_tensorflow():
    code = (
        "import sys, contractive_keras\n"
        "assert 'tensorflow' not in sys.modules, 'tensorflow imported eagerly'\n"
        "assert 'keras' not in sys.modules, 'keras imported eagerly'\n"
        "print(contractive_keras.__version__)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == contractive_keras.__version__


def test_version_is_pep440_like():
    parts = contractive_keras.__version__.split(".")
    assert len(parts) == 3 and all(p.isdigit() for p in parts)


def test_submodules_resolve_lazily():
    assert contractive_keras.data.DATASETS == ("mnist", "fashion_mnist")
    assert "layers" in dir(contractive_keras)


def test_unknown_attribute_raises_attribute_error():
    try:
        contractive_keras.not_a_module
    except AttributeError as e:
        assert "not_a_module" in str(e)
    else:
        raise AssertionError("expected AttributeError")
