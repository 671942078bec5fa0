"""Walk-through (走航) vehicles: 1 Hz air-quality readings along city roads."""
