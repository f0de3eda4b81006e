"""The parameters class of the toy method (tests/_toy_method.py): tests/test_adding_a_method.py adds
what follows the marker to the ``gacd_core/method_params.py`` of a copy of the package, and names the
class in its ``MethodParams``. (The imports above the marker are that module's own.)"""

from __future__ import annotations

from pydantic import Field

from gacd_core.method_params import MethodParamsBase

# --- added to gacd_core/method_params.py ---


class LogitMatchingParams(MethodParamsBase):
    """Ba & Caruana 2014: mean squared difference of teacher and student logits + ce_weight * CE."""

    name = "logit_matching"
    label = "Logit matching"
    description = "regression of the student's logits on the teacher's (Ba & Caruana 2014), on clean data"
    needs_teacher = True
    ce_weight: float = Field(0.0, ge=0, le=10)
