"""phasewatch.analysis"""
