"""Evaluation of the detector on labelled clips and generated streams: matching, calibration, reports."""
