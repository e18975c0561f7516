"""Generated sensor readings: six float64 columns, a string sensor_type and the true label.

An alert is a hot, vibrating machine (pumps also alert on high pressure); readings are normal
around the means in pipeline.yaml.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

TYPES = ("motor", "pump", "compressor")


def readings(n: int, seed: int = 0) -> pd.DataFrame:
    """``n`` rows: reading_id, the six readings (float64), sensor_type (str) and ``truth``
    ("ok"/"alert")."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "reading_id": np.arange(n, dtype=np.int64),
            "temperature": rng.normal(70.0, 8.0, n),
            "vibration": rng.normal(0.5, 0.2, n),
            "pressure": rng.normal(101.3, 2.5, n),
            "current": rng.normal(12.0, 3.0, n),
            "rpm": rng.normal(1500.0, 200.0, n).clip(0, 10000),
            "humidity": rng.uniform(20.0, 60.0, n),
            "sensor_type": rng.choice(TYPES, n),
        }
    )
    heat = (frame["temperature"] - 70.0) / 8.0 + (frame["vibration"] - 0.5) / 0.2
    heat = heat + np.where(frame["sensor_type"] == "pump", (frame["pressure"] - 101.3) / 2.5, 0.0)
    frame["truth"] = np.where(heat > 1.5, "alert", "ok")
    return frame
