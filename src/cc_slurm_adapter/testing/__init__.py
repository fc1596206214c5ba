"""Test doubles used by the tests, the benchmarks and the demo.

Product code never imports this package.
"""
