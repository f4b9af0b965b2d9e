"""What the store's facts mean, written once for the status page, /readyz and `probe status`."""
