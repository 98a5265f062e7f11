"""zoo/web/posezoo.js `found` (which keypoints the page draws) is zoo/decoders.py's `found`: the
"below min_score is not found" rule, checked in headless Chromium (skipped as tests/test_web.py is)."""
import pytest

from test_web import MISSING, empty_page  # noqa: F401 (empty_page: the page over a manifest without models)
from posezoo.decoders import found

pytestmark = pytest.mark.skipif(bool(MISSING), reason=f"browser test: {MISSING}")


@pytest.mark.parametrize("decoder", [{"type": "heatmap", "min_score": 0.3}, {"type": "heatmap"},
                                     {"type": "regression", "min_score": 0}])
def test_found_in_the_page_is_the_decoders_rule(empty_page, decoder):  # noqa: F811
    scores = [0.1, 0.29, 0.3, 0.9, -1.0]
    assert empty_page.call("found", scores, decoder) == found(scores, decoder).tolist()
