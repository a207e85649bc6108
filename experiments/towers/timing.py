"""The timing loop of the tower throughput scripts (throughput_align.py, throughput_openclip.py)."""
from __future__ import annotations

import time

import numpy as np


def time_alternating(runs: dict, reps: int, batch: int, reference: str = "torch") -> dict:
    """Times each callable of `runs` (name -> fn, already warmed up) `reps` times, alternating between
    them, in wall and process CPU seconds. Returns per name its seconds, median images/s and median
    CPU seconds per image, and for every other name its ratios over `reference` (images/s, and CPU
    efficiency = reference's CPU s per image / its own)."""
    times, cpu = {k: [] for k in runs}, {k: [] for k in runs}
    for _ in range(reps):
        for key, fn in runs.items():
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            times[key].append(time.perf_counter() - t0)
            cpu[key].append(time.process_time() - c0)
    out = {key: {"seconds": times[key], "images_per_s_median": batch / float(np.median(times[key])),
                 "cpu_s_per_image_median": float(np.median(cpu[key])) / batch} for key in runs}
    ref = out[reference]
    for key in runs:
        if key != reference:
            out[f"ratio_{key}_over_{reference}_images_per_s"] = out[key]["images_per_s_median"] / ref["images_per_s_median"]
            out[f"ratio_{key}_over_{reference}_cpu_efficiency"] = (ref["cpu_s_per_image_median"]
                                                                   / out[key]["cpu_s_per_image_median"])
    return out
