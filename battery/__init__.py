"""The reliability and security battery (issue 8): each check drives the real system and reports figures."""
