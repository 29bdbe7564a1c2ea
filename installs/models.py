"""Install, Step, Event and Batch live here (the install engine)."""
