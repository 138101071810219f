"""#45: a logged model carries mathtune's code and names only what its kind needs, each package one an index has;
MLflow's own tools read it (generate-dockerfile here; bench/mlflow_env.py runs `mlflow models predict --env-manager
uv` and spark_udf in the model's own environment)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mathtune.model_env import UnresolvableRequirement, _pinned, requirements


def test_a_tfidf_model_needs_scikit_learn_not_torch(tiny_topic_model):
    needs = requirements(tiny_topic_model)
    names = {r.split("==")[0].lower() for r in needs}
    assert {"scikit-learn", "numpy", "pandas"} <= names and not names & {"torch", "transformers", "mathtune"}
    assert all("==" in r and "+" not in r for r in needs)  # pinned to what it was trained with, as an index has it


def test_a_package_no_index_has_is_named_at_log_time():
    with pytest.raises(UnresolvableRequirement, match="mathtune, (installed here from file://|found here as a source checkout).*no package index"):
        _pinned("mathtune")  # this checkout's editable install
    with pytest.raises(UnresolvableRequirement, match="not-a-real-package-xyz, which is not installed"):
        _pinned("not-a-real-package-xyz")


def test_the_saved_model_carries_its_code_and_mlflow_writes_a_dockerfile_that_installs_only_index_packages(
        tiny_topic_model, tmp_path):
    from mathtune.tracking import save_pyfunc

    model = tmp_path / "pyfunc"
    save_pyfunc(Path(tiny_topic_model), model)
    assert (model / "code" / "mathtune" / "models" / "saved.py").is_file()  # the code travels with the model
    listed = (model / "requirements.txt").read_text().split()
    assert not any(r.startswith("mathtune") for r in listed) and any(r.startswith("scikit-learn==") for r in listed)
    out = tmp_path / "docker"
    subprocess.run([sys.executable, "-m", "mlflow", "models", "generate-dockerfile", "-m", str(model), "-d", str(out)],
                   check=True, capture_output=True, cwd=tmp_path)
    dockerfile = (out / "Dockerfile").read_text()
    assert "pip install mlflow==" in dockerfile and "mathtune" not in dockerfile
    copied = next(out.glob("model_dir/*/requirements.txt")).read_text()
    assert "mathtune" not in copied
