"""See family.py: this family behind the contract."""
