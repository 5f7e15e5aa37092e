import random

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci", max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
settings.load_profile("ci")

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(autouse=True)
def _seed_everything():
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    yield


@pytest.fixture(params=["cpu", "cuda"])
def device(request):
    if request.param == "cuda" and not torch.cuda.is_available():
        pytest.skip("CUDA is not available")
    return torch.device(request.param)


@pytest.fixture
def registries():
    """Restore every name registry (formulations, strategies, targets, tasks, groups, relaxable layers) afterwards."""
    from constrained_eq import tasks
    from constrained_eq.core import formulations
    from constrained_eq.core.problem import target as constraints
    from constrained_eq.homotopy.relax import _RELAXABLE
    from constrained_eq.run import strategies
    from constrained_eq.symmetry import groups

    saved = [(registry, dict(registry)) for registry in (formulations.FORMULATIONS, strategies._STRATEGIES,
                                                         constraints._TARGETS, tasks._TASKS, groups._GROUPS,
                                                         _RELAXABLE)]
    yield
    for registry, content in saved:
        registry.clear()
        registry.update(content)
