"""--sample_method names <-> scheduler objects, and which scheduler a command samples with."""

from __future__ import annotations

import pytest

from soraplan.schedulers import SAMPLE_METHODS, build_scheduler, method_name, scheduler_for


@pytest.mark.parametrize("name", list(SAMPLE_METHODS))
def test_every_method_name_comes_back_from_its_scheduler(name):
    assert method_name(build_scheduler(name)) == name


def test_a_folder_scheduler_is_kept_unless_another_is_asked_for():
    from diffusers import LCMScheduler

    own = LCMScheduler(prediction_type="v_prediction", rescale_betas_zero_snr=True, original_inference_steps=40)
    assert scheduler_for(own, None) is own  # a student's grid (40) survives
    assert scheduler_for(own, "LCM") is own
    other = scheduler_for(own, "DDIM")
    assert method_name(other) == "DDIM" and other.config.prediction_type == "v_prediction"
    with pytest.raises(ValueError, match="unknown --sample_method 'Nope'"):
        scheduler_for(own, "Nope")
