"""Staff actions the pages call on clicks: each checks the role, writes through a unit of work, and audits."""
