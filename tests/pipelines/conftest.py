from __future__ import annotations

import pytest

from tests.pipelines.components import save_diffusers_pipeline


@pytest.fixture(scope="session")
def t2v_dir(tmp_path_factory):
    return save_diffusers_pipeline(tmp_path_factory.mktemp("t2v"), "t2v")


@pytest.fixture(scope="session")
def i2v_dir(tmp_path_factory):
    return save_diffusers_pipeline(tmp_path_factory.mktemp("i2v"), "i2v")
