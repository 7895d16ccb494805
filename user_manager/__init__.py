"""User Manager: the authority on users, with at-most-once create and delete."""
