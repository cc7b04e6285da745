"""Training: the LightningModule, optimizer groups, the run driver and its outputs."""
