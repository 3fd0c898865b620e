"""phasewatch.trainer"""
