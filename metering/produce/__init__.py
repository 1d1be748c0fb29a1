"""What the serving layer imports: the usage producer and the provider converters."""
