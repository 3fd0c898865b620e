"""phasewatch.callbacks"""
