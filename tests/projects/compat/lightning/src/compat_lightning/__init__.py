"""A Lightning project as its users write one: data, a LightningModule, a Trainer."""
