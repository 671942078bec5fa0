"""People: accounts with a role, their passwords, the API tokens they log in for, and the
login throttle. ``model`` holds the roles and the principal a request acts as, ``passwords``
the hashing, ``repository`` the SQL and ``service`` the rules (docs/adr/0008)."""
