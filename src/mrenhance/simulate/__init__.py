"""Forward models that turn clean images into the inputs the networks see.

One module per forward model, all pure functions on numpy arrays with seeded
``numpy.random.Generator`` objects:

* :mod:`mrenhance.simulate.kspace` -- k-space truncation (mDCSRN Sec. 2.6) and thick slices.
* :mod:`mrenhance.simulate.noise` -- Gaussian and Rician noise at a chosen SNR.

Import the functions from their modules (``from mrenhance.simulate.kspace import
truncate_kspace``); this package imports nothing so that loading one forward model does not
load the others.
"""
