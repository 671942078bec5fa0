"""Walk-through detection, pure numpy: quality mask, passes, thresholds, background, exceedances.

Arrays (and ``now_us`` where time matters) in, arrays or records out; no I/O and no clock.
"""

from telemetry.detect.exceedance import DetectParams, Exceedance, detect_walkthrough
from telemetry.detect.hotspot import BackgroundWindow, background_level
from telemetry.detect.passes import Passes, find_passes
from telemetry.detect.quality import quality_mask
from telemetry.detect.thresholds import ThresholdTable

__all__ = [
    "BackgroundWindow",
    "DetectParams",
    "Exceedance",
    "Passes",
    "ThresholdTable",
    "background_level",
    "detect_walkthrough",
    "find_passes",
    "quality_mask",
]
