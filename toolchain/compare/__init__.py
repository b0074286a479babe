"""The judge: how a candidate's detections are compared with the reference's (metrics)."""
