"""Infrastructure shared by both sides: configuration, logging, databases."""
