"""Byte formats the simulator produces: XVA (tar) and dynamic/differencing VHD.

IO-free: writers are generators of ``bytes`` over a disk-like object with
``virtual_size``, ``read(offset, length)`` and ``allocated_units(unit)``.
"""
