"""Classical methods the papers compare against.

* :mod:`mrenhance.baselines.interpolate` -- nearest, linear, cubic and sinc interpolation
  (the SR baselines) and :func:`~mrenhance.baselines.interpolate.interpolate_volume`.

Import from the modules; this package imports nothing.
"""
