"""Concentration units: the one table of molar masses, and the molar volume of the reference
state ambient standards use (docs/domain.md §4.4).

mg/m³ = ppm × M / V_m and µg/m³ = ppb × M / V_m, with M in g/mol and V_m in L/mol.
"""

from __future__ import annotations

__all__ = [
    "GAS_CONSTANT_J_MOL_K",
    "MOLAR_MASS_G_MOL",
    "MOLAR_VOLUME_298_L",
    "REFERENCE_PRESSURE_KPA",
    "REFERENCE_TEMPERATURE_K",
]

#: The molar gas constant (SI, exact since 2019), J/(mol·K).
GAS_CONSTANT_J_MOL_K = 8.314462618
#: The reference state of GB 3095-2026 gaseous pollutants and HJ 633: 298.15 K, 101.325 kPa.
REFERENCE_TEMPERATURE_K = 298.15
REFERENCE_PRESSURE_KPA = 101.325
#: Litres per mole of an ideal gas at that state: R·T/p = 24.465 L/mol.
MOLAR_VOLUME_298_L = GAS_CONSTANT_J_MOL_K * REFERENCE_TEMPERATURE_K / REFERENCE_PRESSURE_KPA

#: Molar masses (g/mol) from standard atomic weights; the seed of table ``substances`` holds the
#: same values for the emergency substances. VOC measured by PID (isobutylene-equivalent) and
#: TVOC have no single molar mass and are deliberately absent.
MOLAR_MASS_G_MOL: dict[str, float] = {
    "h2s": 34.08,
    "nh3": 17.03,
    "cl2": 70.90,
    "hcl": 36.46,
    "so2": 64.07,
    "no2": 46.01,
    "co": 28.01,
    "o3": 48.00,
    "benzene": 78.11,
    "no": 30.01,
    "hcn": 27.03,
    "hf": 20.01,
}
