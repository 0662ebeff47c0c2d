"""The public API changes only on purpose: a name appearing or disappearing fails here."""

import deepflow

EXPECTED = {
    "AcceleratorSpec",
    "BatchResult",
    "ConfigError",
    "DeepflowError",
    "ModelSpec",
    "Prediction",
    "Scenario",
    "StrategyBatch",
    "StrategySpec",
    "SystemSpec",
    "TraceError",
    "TrainingSpec",
    "UnitError",
    "default_scenario",
    "evaluate",
    "load_scenario",
    "predict",
    "scenario_from_dict",
}


def test_exported_names_are_exactly_the_public_api():
    assert set(deepflow.__all__) == EXPECTED


def test_every_exported_name_exists():
    for name in deepflow.__all__:
        assert getattr(deepflow, name) is not None
