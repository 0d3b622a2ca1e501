"""See family.py: the diffusion family behind the contract."""
