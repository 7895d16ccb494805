"""Code shared by the User Manager and the Data Collector."""
