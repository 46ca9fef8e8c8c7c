"""The use cases: what the product does, written against the ports (``shared.ports``).
No SDK or framework imports (``tests/unit/test_layers.py`` checks it).
"""
