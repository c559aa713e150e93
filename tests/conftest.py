"""Shared fixtures: the real CROHME corpus and reference predictions (required in CI, never skipped there)."""

from __future__ import annotations

import os

import pytest

from unimumer_lib.core import paths


def _require(path, what):
    if not path.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{what} missing at {path}: CI must run the CROHME-backed tests")
        pytest.skip(f"{what} not found at {path} (set UNIMUMER_CROHME / UNIMUMER_REFERENCE)")
    return path


@pytest.fixture(scope="session")
def crohme_root():
    return _require(paths.crohme_root(), "CROHME corpus")


@pytest.fixture(scope="session")
def reference_predictions():
    return _require(paths.reference_predictions(), "reference predictions")


@pytest.fixture(scope="session")
def normalization_sample():
    return _require(paths.normalization_sample(), "published normalisation sample")
