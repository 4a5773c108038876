"""Training: VAE trainer (and, later, the I2V trainer), losses, checkpoint bookkeeping."""
