"""README.md: short, no lab-notebook residue, and its Python examples run
without a warning from the package."""

import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: Runs one example with every warning recorded; prints those the package raised.
RUNNER = """
import sys, warnings
warnings.simplefilter("always")
with warnings.catch_warnings(record=True) as caught:
    exec(compile(open(sys.argv[1]).read(), "README example", "exec"), {"__name__": "__main__"})
ours = [w for w in caught if "contractive_keras" in (w.filename or "") or w.filename == "README example"]
for w in ours:
    print(f"WARNING {w.category.__name__}: {w.message}")
"""


@pytest.fixture(scope="module")
def readme():
    with open(os.path.join(ROOT, "README.md")) as f:
        return f.read()


def test_the_readme_is_short_and_dated_by_nothing(readme):
    assert len(readme.splitlines()) < 200
    assert not re.search(r"\bissue \d+", readme, flags=re.IGNORECASE)
    assert not re.search(r"\b20\d\d-\d\d-\d\d\b", readme), "no dated run logs in the README"


def test_every_relative_link_exists(readme):
    links = re.findall(r"\]\(([^)#:]+)\)", readme)
    assert links
    assert [link for link in links if not os.path.exists(os.path.join(ROOT, link))] == []


@pytest.mark.parametrize("index", range(2))
def test_a_python_example_runs_without_a_warning_from_the_package(readme, index, tmp_path):
    examples = re.findall(r"```python\n(.*?)```", readme, flags=re.DOTALL)
    assert len(examples) == 2, "update the parametrization when the README's examples change"
    script = tmp_path / "example.py"
    script.write_text(examples[index])
    runner = tmp_path / "runner.py"
    runner.write_text(RUNNER)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=ROOT)
    done = subprocess.run([sys.executable, str(runner), str(script)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "WARNING " not in done.stdout, done.stdout
