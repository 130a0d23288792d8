"""Model backends behind one registry (see :mod:`depthweb.models.registry`)."""
