"""nvdsosd's own property code (gst_nvds_osd_set_property, PROP_BLUR_GIE_CLASS_IDS, compiled from the
DeepStream 9.1 sources) reads fbtool's blur-on-gie-class-ids as (gie, class) pairs.
gst_nvds_osd_transform_ip reads index 0 as the gie and index 1 as the class, and copies the objects'
masks only in that branch. (The emitted blur app blurs with fbtool's own library since issue 15,
tests/test_deepstream_tracker.py; this helper stays for an nvdsosd blur-bbox=2 pipeline.)"""

from __future__ import annotations

import pytest

from toolchain.nvinfer import conformance

pytestmark = pytest.mark.skipif(conformance.missing_reason() is not None,
                                reason=f"NVIDIA's DeepStream code cannot be built here: {conformance.missing_reason()}")


def test_blur_id_helper_matches_nvdsosd():
    from toolchain.deepstream.app import blur_gie_class_ids

    assert conformance.parse_blur_ids(blur_gie_class_ids(1, 2)) == [[1, 0], [1, 1]]
    assert conformance.parse_blur_ids("1:0") == [[1]]  # the old value: one element, no class
