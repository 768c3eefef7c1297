"""The four categories of an index-exclusion JSON (REFERENCE "Detection, segmentation,
index exclusion"), shared by the stage that writes the lists and the stages that read them.

A light module on purpose: the metrics jobs read exclusion lists without importing the
detection and segmentation stack.
"""

DETECTED = "Detected Person Exclusion"
UNDETECTED = "Undetected Instance Exclusion"
MISCLASSIFIED_EXCLUSION = "Misclassified Instance Exclusion"
MISCLASSIFIED_INCLUSION = "Misclassified Instance Inclusion"
CATEGORIES = (DETECTED, UNDETECTED, MISCLASSIFIED_EXCLUSION, MISCLASSIFIED_INCLUSION)
# Removed from the search index; the inclusion (a person the detector called something
# else) stays in it: that is the leak the study measures.
EXCLUDED_CATEGORIES = (DETECTED, UNDETECTED, MISCLASSIFIED_EXCLUSION)
