"""Emergency (应急监测) vehicles: hazardous gases around incidents, with tiered alerts."""
