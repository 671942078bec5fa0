"""Alerts: what detection found (exceedances) and the alert episodes they open or extend."""
