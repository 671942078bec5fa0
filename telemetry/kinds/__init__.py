"""Vehicle kinds: the contract every kind plugs into, and one package per kind."""
