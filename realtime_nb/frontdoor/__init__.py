"""The front door: the ``%realtime`` magic, the ``realtime-nb`` command line and the demo. The top
layer: it may import every other one.
"""
