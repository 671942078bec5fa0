"""Remote-sensing (移动遥感) vehicles: the exhaust of each passing vehicle, and high emitters."""
