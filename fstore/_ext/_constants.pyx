# cython: language_level=3
"""The shared constants of _constants.pxd as Python IntEnums: Status, Kind and Op."""
