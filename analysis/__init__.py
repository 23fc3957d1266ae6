"""Reading run folders and drawing figures."""
